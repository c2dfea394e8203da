import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { Database, KYSELY } from '../../src/database/database';
import { UNSUPPORTED_IMAGE_MESSAGE } from '../../src/palette/palette.worker';
import { deepPngBomb, encode, hugeCanvasGif, onePixelPng, pixelBombPng, regionsRaw, svgDisguises, truncate } from '../support/images';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

const ALICE = 'alice-key-0123456789abcdef';
const BOB = 'bob-key-0123456789abcdef';
const UNKNOWN_ID = '01939d2a-0000-7000-8000-000000000000';
const REFS = '/api/v1/references';
const SEARCH = '/api/v1/search';

/** A 64 × 48 PNG of vertical stripes: `colors` with their shares. */
const stripes = (...colors: [string, number][]) => encode(regionsRaw(colors.map(([hex, share]) => ({ hex, share })), { width: 64, height: 48 }), 'png');

/** Every file under `dir`, relative. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

/**
 * The reference library and search through the real app (SQLite, local storage, the palette pool,
 * the emulator): upload → list → get → image → delete, hostile uploads, ownership with two keys,
 * search by text, colour, both, similarTo, kind, and every validation error.
 */
describe('References and search (e2e)', () => {
  let testGemini: TestGemini | undefined;
  let dataDir: string;
  let app: NestExpressApplication;
  let http: ReturnType<typeof request>;
  let db: Database;
  const as = (key: string) => ({
    get: (path: string) => http.get(path).set('x-api-key', key),
    post: (path: string) => http.post(path).set('x-api-key', key),
    delete: (path: string) => http.delete(path).set('x-api-key', key),
  });
  const alice = () => as(ALICE);
  const bob = () => as(BOB);
  const upload = (key: string, image: Buffer, fields: Record<string, string> = {}) => {
    let req = as(key).post(REFS).attach('image', image, 'upload.png');
    for (const [name, value] of Object.entries(fields)) req = req.field(name, value);
    return req;
  };
  const generate = async (key: string, prompt: string): Promise<Body> =>
    (await as(key).post('/api/v1/generations').set('Prefer', 'wait=60').send({ prompt }).expect(201)).body as Body;
  const referenceFiles = () => filesUnder(join(dataDir, 'references'));
  const sweepEntries = () => db.selectFrom('storage_sweep').selectAll().execute();

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-references-'));
    const config = loadConfig({
      ...(testGemini = await startTestGemini()).env,
      DATA_DIR: dataDir,
      UPLOAD_TMP_DIR: join(dataDir, 'uploads'),
      API_KEYS: `alice:${ALICE},bob:${BOB}`,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
    db = app.get<Database>(KYSELY);
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
    await testGemini?.close();
  });

  describe('the library', () => {
    it('upload → get → list → image → delete: the record, its image and its search entry come and go together', async () => {
      const png = await stripes(['#d43434', 0.6], ['#2a4d9b', 0.4]);
      const created = await upload(ALICE, png, { title: '  Autumn study  ', tags: ' Warm, studio,, warm ,PRODUCT ' }).expect(201);
      const ref = created.body as Body;
      expect(ref).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        title: 'Autumn study',
        tags: ['warm', 'studio', 'product'],
        width: 64,
        height: 48,
        mimeType: 'image/png',
        palette: expect.any(Array),
        url: `/api/v1/references/${ref.id}/image`,
        createdAt: expect.any(String),
      });
      expect(created.headers.location).toBe(`/api/v1/references/${ref.id}`);
      expect(ref.palette[0]).toMatchObject({ hex: expect.stringMatching(/^#[0-9a-f]{6}$/), proportion: expect.any(Number) });
      expect(ref.palette.reduce((s: number, c: Body) => s + c.proportion, 0)).toBeCloseTo(1, 2);

      expect((await alice().get(`${REFS}/${ref.id}`).expect(200)).body).toEqual(ref);
      expect(((await alice().get(`${REFS}?limit=100`).expect(200)).body as Body).items.map((r: Body) => r.id)).toContain(ref.id);
      const image = await alice().get(ref.url).buffer(true).expect(200).expect('content-type', 'image/png');
      expect(Buffer.compare(image.body as Buffer, png)).toBe(0);
      expect(referenceFiles()).toHaveLength(1);
      expect(((await alice().get(`${SEARCH}?q=autumn`).expect(200)).body as Body).items.map((i: Body) => i.id)).toEqual([ref.id]);
      expect(await sweepEntries()).toEqual([]);

      await alice().delete(`${REFS}/${ref.id}`).expect(204);
      await alice().get(`${REFS}/${ref.id}`).expect(404);
      await alice().get(ref.url).expect(404);
      await alice().delete(`${REFS}/${ref.id}`).expect(404);
      expect(((await alice().get(`${REFS}?limit=100`).expect(200)).body as Body).items.map((r: Body) => r.id)).not.toContain(ref.id);
      expect(((await alice().get(`${SEARCH}?q=autumn`).expect(200)).body as Body).items).toEqual([]);
      expect(referenceFiles()).toEqual([]);
      expect(await sweepEntries()).toEqual([]);
    });

    it('pages the library newest first', async () => {
      const png = await onePixelPng('#123456');
      const made: string[] = [];
      for (let i = 0; i < 3; i++) made.push(((await upload(BOB, png, { title: `page ${i}` }).expect(201)).body as Body).id);
      const p1 = (await bob().get(`${REFS}?limit=2`).expect(200)).body as Body;
      const p2 = (await bob().get(`${REFS}?limit=2&cursor=${p1.nextCursor}`).expect(200)).body as Body;
      expect([...p1.items, ...p2.items].map((r: Body) => r.id)).toEqual([...made].reverse());
      expect(p2.nextCursor).toBeNull();
      await bob().get(`${REFS}?cursor=garbage`).expect(400);
      for (const id of made) await bob().delete(`${REFS}/${id}`).expect(204);
    });

    it.each<[string, Record<string, string>]>([
      ['a 201-character title', { title: 'x'.repeat(201) }],
      ['a title with a control character', { title: 'bad\u0007title' }],
      ['21 tags', { tags: Array.from({ length: 21 }, (_, i) => `t${i}`).join(',') }],
      ['a 51-character tag', { tags: `ok, ${'y'.repeat(51)}` }],
      ['a tag with a newline', { tags: 'one, two\nthree' }],
      ['an unknown field', { size: '5' }],
    ])('refuses %s with 400 VALIDATION_FAILED, storing nothing', async (_name, fields) => {
      const res = await upload(ALICE, await onePixelPng(), fields);
      expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
      expect(referenceFiles()).toEqual([]);
    });

    it('accepts the boundaries: a 200-character title, 20 tags of 50 characters, no title (null)', async () => {
      const fields = { title: 'é'.repeat(200), tags: Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(50, 'z')).join(',') };
      const full = (await upload(ALICE, await onePixelPng(), fields).expect(201)).body as Body;
      expect(full.title).toBe(fields.title);
      expect(full.tags).toHaveLength(20);
      const bare = (await upload(ALICE, await onePixelPng(), { title: '   ' }).expect(201)).body as Body;
      expect(bare).toMatchObject({ title: null, tags: [] });
      for (const id of [full.id, bare.id]) await alice().delete(`${REFS}/${id}`).expect(204);
    });

    describe('hostile uploads get the palette route’s answers and store nothing', () => {
      it.each<[string, number, string, () => Promise<Buffer>]>([
        ['plain text named .png', 415, 'UNSUPPORTED_IMAGE', async () => Buffer.from('definitely not an image')],
        ...Object.entries(svgDisguises()).map(([name, bytes]): [string, number, string, () => Promise<Buffer>] => [name, 415, 'UNSUPPORTED_IMAGE', async () => bytes]),
        ['a PNG cut in half', 415, 'UNSUPPORTED_IMAGE', async () => truncate(await stripes(['#d43434', 1]))],
        ['a tiny PNG declaring 50 000 × 50 000 pixels', 413, 'IMAGE_TOO_LARGE', () => pixelBombPng(50_000)],
        ['an interlaced 16-bit PNG declaring 8000 × 8000 pixels', 413, 'IMAGE_TOO_LARGE', () => deepPngBomb(8000, 8000)],
        ['a GIF with a 10 000 × 10 000 canvas', 413, 'IMAGE_TOO_LARGE', () => hugeCanvasGif(10_000)],
        ['a 21 MB upload', 413, 'PAYLOAD_TOO_LARGE', async () => Buffer.alloc(21 * 1024 * 1024, 0x89)],
        ['an empty file', 400, 'IMAGE_REQUIRED', async () => Buffer.alloc(0)],
      ])('%s → %i %s', async (_name, status, code, make) => {
        const res = await upload(ALICE, await make());
        expect({ status: res.status, code: res.body.code }).toEqual({ status, code });
        if (code === 'UNSUPPORTED_IMAGE') expect(res.body.message).toBe(UNSUPPORTED_IMAGE_MESSAGE);
        expect(referenceFiles()).toEqual([]);
        expect(await sweepEntries()).toEqual([]);
      });

      it('the image under another field name → 400 INVALID_MULTIPART; no image at all → 400 IMAGE_REQUIRED', async () => {
        const wrong = await alice().post(REFS).attach('file', await onePixelPng(), 'a.png');
        expect({ status: wrong.status, code: wrong.body.code }).toEqual({ status: 400, code: 'INVALID_MULTIPART' });
        const none = await alice().post(REFS).field('title', 'no image');
        expect({ status: none.status, code: none.body.code }).toEqual({ status: 400, code: 'IMAGE_REQUIRED' });
      });
    });
  });

  describe('search', () => {
    let red: Body;
    let blue: Body;
    let redRef: Body;
    let greenRef: Body;
    let bobsRed: Body;

    beforeAll(async () => {
      red = await generate(ALICE, 'a solid red square');
      blue = await generate(ALICE, 'a solid blue square');
      redRef = (await upload(ALICE, await stripes(['#d43434', 0.8], ['#f2e8cf', 0.2]), { title: 'poppy field', tags: 'flowers, red' }).expect(201)).body as Body;
      greenRef = (await upload(ALICE, await stripes(['#2e8b3c', 1]), { title: 'moss', tags: 'forest, square' }).expect(201)).body as Body;
      bobsRed = (await upload(BOB, await stripes(['#d43434', 1]), { title: 'bob secret square', tags: 'red' }).expect(201)).body as Body;
    });

    const find = async (key: string, query: string) => ((await as(key).get(`${SEARCH}?${query}`).expect(200)).body as Body).items as Body[];
    const idsOf = (items: Body[]) => items.map((i) => i.id);

    it('by text: prompts, titles and tags, each hit with its text rank and the item as its route answers it', async () => {
      const items = await find(ALICE, 'q=square');
      expect(new Set(idsOf(items))).toEqual(new Set([red.id, blue.id, greenRef.id]));
      // The shorter text ranks first; the two prompts score alike and share the next rank.
      expect(Object.fromEntries(items.map((i) => [i.id, i.text.rank]))).toEqual({ [greenRef.id]: 1, [red.id]: 2, [blue.id]: 2 });
      expect(items.every((i) => i.color === null)).toBe(true);
      const gen = items.find((i) => i.id === red.id)!;
      expect(gen.kind).toBe('generation');
      expect(gen.item).toEqual((await alice().get(`/api/v1/generations/${red.id}`).expect(200)).body);
      const ref = (await find(ALICE, 'q=moss'))[0];
      expect(ref).toMatchObject({ kind: 'reference', id: greenRef.id, text: { rank: 1 }, color: null });
      expect(ref.item).toEqual((await alice().get(`${REFS}/${greenRef.id}`).expect(200)).body);
      expect(idsOf(await find(ALICE, 'q=square&kind=reference'))).toEqual([greenRef.id]);
      expect(idsOf(await find(ALICE, 'q=square&kind=generation')).sort()).toEqual([red.id, blue.id].sort());
    });

    it('by colour: nearest palettes first, weighted by share; a weight asks for a proportion', async () => {
      const items = await find(ALICE, 'color=%23d43434');
      expect(idsOf(items).slice(0, 2).sort()).toEqual([red.id, redRef.id].sort());
      expect(items.every((i) => i.text === null && typeof i.color.distance === 'number')).toBe(true);
      const distances = items.map((i) => i.color.distance);
      expect([...distances].sort((a, b) => a - b)).toEqual(distances);
      expect(idsOf(await find(ALICE, 'color=2e8b3c&kind=reference'))[0]).toBe(greenRef.id);
      // 80 % red, 20 % cream: the reference exactly.
      expect(idsOf(await find(ALICE, 'color=%23d43434:80&color=%23f2e8cf:20'))[0]).toBe(redRef.id);
    });

    it('hybrid: text and colour fused, items matching both first', async () => {
      const items = await find(ALICE, 'q=square&color=%232e8b3c');
      expect(items[0]).toMatchObject({ id: greenRef.id, text: { rank: expect.any(Number) }, color: { distance: expect.any(Number) } });
      expect(items[0].score).toBeGreaterThan(items[1].score);
    });

    it('similarTo: the nearest palettes to one of mine, itself left out', async () => {
      const items = await find(ALICE, `similarTo=reference:${redRef.id}`);
      expect(idsOf(items)).not.toContain(redRef.id);
      expect(items[0].id).toBe(red.id);
      expect(idsOf(await find(ALICE, `similarTo=generation:${red.id}&kind=reference`))[0]).toBe(redRef.id);
    });

    it("ownership: another key's references never appear in search, and are 404 everywhere", async () => {
      for (const query of ['q=secret', 'q=red', 'color=%23d43434', `similarTo=generation:${red.id}`]) {
        expect(idsOf(await find(ALICE, query))).not.toContain(bobsRed.id);
      }
      expect(idsOf(await find(BOB, 'color=%23d43434'))).toEqual([bobsRed.id]);
      expect(idsOf(await find(BOB, 'q=square'))).toEqual([bobsRed.id]);
      for (const [method, path] of [
        ['get', `${REFS}/${bobsRed.id}`],
        ['get', `${REFS}/${bobsRed.id}/image`],
        ['delete', `${REFS}/${bobsRed.id}`],
      ] as const) {
        const theirs = await alice()[method](path);
        const unknown = await alice()[method](path.replace(bobsRed.id, UNKNOWN_ID));
        expect({ path, status: theirs.status, code: theirs.body.code }).toEqual({ path, status: 404, code: 'REFERENCE_NOT_FOUND' });
        expect(theirs.body.message).toBe(unknown.body.message.replace(UNKNOWN_ID, bobsRed.id));
      }
      const similar = await alice().get(`${SEARCH}?similarTo=reference:${bobsRed.id}`);
      const similarUnknown = await alice().get(`${SEARCH}?similarTo=reference:${UNKNOWN_ID}`);
      expect({ status: similar.status, code: similar.body.code }).toEqual({ status: 404, code: 'REFERENCE_NOT_FOUND' });
      expect(similar.body.message).toBe(similarUnknown.body.message.replace(UNKNOWN_ID, bobsRed.id));
      const similarGen = await bob().get(`${SEARCH}?similarTo=generation:${red.id}`);
      expect({ status: similarGen.status, code: similarGen.body.code }).toEqual({ status: 404, code: 'GENERATION_NOT_FOUND' });
      // Bob's reference is untouched by all of that.
      await bob().get(`${REFS}/${bobsRed.id}`).expect(200);
    });

    it.each<[string, number, string, string]>([
      ['no criterion', 400, 'SEARCH_CRITERION_REQUIRED', ''],
      ['only a kind', 400, 'SEARCH_CRITERION_REQUIRED', 'kind=reference'],
      ['an empty q', 400, 'VALIDATION_FAILED', 'q='],
      ['a 501-character q', 400, 'VALIDATION_FAILED', `q=${'a'.repeat(501)}`],
      ['a bad colour', 400, 'VALIDATION_FAILED', 'color=red'],
      ['a short hex', 400, 'VALIDATION_FAILED', 'color=%23f00'],
      ['six colours', 400, 'VALIDATION_FAILED', Array.from({ length: 6 }, () => 'color=%23d43434').join('&')],
      ['weight 0', 400, 'VALIDATION_FAILED', 'color=%23d43434:0'],
      ['weight 101', 400, 'VALIDATION_FAILED', 'color=%23d43434:101'],
      ['a negative weight', 400, 'VALIDATION_FAILED', 'color=%23d43434:-5'],
      ['a non-numeric weight', 400, 'VALIDATION_FAILED', 'color=%23d43434:heavy'],
      ['limit 0', 400, 'VALIDATION_FAILED', 'q=square&limit=0'],
      ['limit 101', 400, 'VALIDATION_FAILED', 'q=square&limit=101'],
      ['a fractional limit', 400, 'VALIDATION_FAILED', 'q=square&limit=2.5'],
      ['an unknown kind', 400, 'VALIDATION_FAILED', 'q=square&kind=video'],
      ['color and similarTo', 400, 'VALIDATION_FAILED', `color=%23d43434&similarTo=generation:${UNKNOWN_ID}`],
      ['a similarTo of an unknown kind', 400, 'VALIDATION_FAILED', `similarTo=palette:${UNKNOWN_ID}`],
      ['a repeated q', 400, 'VALIDATION_FAILED', 'q=a&q=b'],
      ['an unknown parameter', 400, 'VALIDATION_FAILED', 'q=square&sort=asc'],
      ['a malformed similarTo id', 404, 'GENERATION_NOT_FOUND', 'similarTo=generation:..%2F..%2Fetc'],
    ])('%s → %i %s', async (_name, status, code, query) => {
      const res = await alice().get(`${SEARCH}?${query}`);
      expect({ status: res.status, code: res.body.code }).toEqual({ status, code });
      expect(Object.keys(res.body).sort()).toEqual(['code', 'message', 'statusCode']);
    });

    it('accepts the boundaries: five colours with weights, limit 1 and 100, a query of stop words (no results)', async () => {
      const five = ['d43434:1', '2a4d9b:2.5', '2e8b3c:100', 'f2e8cf', '000000:0.001'].map((c) => `color=%23${c}`).join('&');
      expect((await find(ALICE, five)).length).toBeGreaterThan(0);
      expect(await find(ALICE, 'q=square&limit=1')).toHaveLength(1);
      await alice().get(`${SEARCH}?q=square&limit=100`).expect(200);
      expect(await find(ALICE, 'q=the%20of%20and')).toEqual([]);
    });

    it('is in the OpenAPI document with exact types', async () => {
      const doc = (await http.get('/docs-json').expect(200)).body as Body;
      expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining([REFS, `${REFS}/{id}`, `${REFS}/{id}/image`, SEARCH]));
      expect(Object.keys(doc.paths[`${REFS}/{id}`])).toEqual(expect.arrayContaining(['get', 'delete']));
      const schemas = doc.components.schemas as Body;
      expect(schemas.SearchItemDto.properties.text.properties.rank.type).toBe('integer');
      expect(schemas.SearchItemDto.properties.color.properties.imageIndex.type).toBe('integer');
      expect(schemas.ReferenceDto.properties.width.type).toBe('integer');
      expect(schemas.ReferenceDto.properties.title).toMatchObject({ type: 'string', nullable: true });
      expect(JSON.stringify(schemas.SearchItemDto.properties.text)).toContain('"nullable":true');
      expect(JSON.stringify(schemas.SearchItemDto.properties.item.oneOf)).toContain('ReferenceDto');
      const params = (doc.paths[SEARCH].get.parameters as Body[]).map((p) => p.name).sort();
      expect(params).toEqual(['color', 'kind', 'limit', 'q', 'similarTo']);
      expect(Object.keys(doc.paths[SEARCH].get.responses)).toEqual(expect.arrayContaining(['200', '400', '404']));
    });
  });
});
