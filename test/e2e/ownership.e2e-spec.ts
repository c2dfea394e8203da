import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RequestMethod } from '@nestjs/common';
import { MetadataScanner, ModulesContainer, Reflector } from '@nestjs/core';
import { PATH_METADATA, METHOD_METADATA } from '@nestjs/common/constants';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { IS_PUBLIC } from '../../src/auth/public.decorator';
import { loadConfig } from '../../src/config/app-config';
import { GeminiService } from '../../src/gemini/gemini.service';
import { onePixelPng } from '../support/images';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

const ALICE = 'alice-key-0123456789abcdef';
const BOB = 'bob-key-0123456789abcdef';
/** A well-formed id no generation has. */
const UNKNOWN_ID = '01939d2a-0000-7000-8000-000000000000';

async function startApp(dataDir: string, env: Record<string, string> = {}): Promise<NestExpressApplication> {
  const config = loadConfig({ ...testGemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1', ...env });
  const app = await createApp(config, { logger: false });
  await app.init();
  return app;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Every route handler of the app with its HTTP method, full path and whether it is @Public(). */
function routesOf(app: NestExpressApplication): { method: string; path: string; isPublic: boolean }[] {
  const scanner = new MetadataScanner();
  const reflector = new Reflector();
  const routes: { method: string; path: string; isPublic: boolean }[] = [];
  const controllers = [...app.get(ModulesContainer).values()].flatMap((m) => [...m.controllers.values()]);
  for (const wrapper of controllers) {
    const { instance, metatype } = wrapper;
    if (!instance || !metatype) continue;
    const base = String(Reflect.getMetadata(PATH_METADATA, metatype) ?? '');
    const prototype = Object.getPrototypeOf(instance) as object;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const handler = (prototype as Record<string, unknown>)[name] as (...args: unknown[]) => unknown;
      const sub = Reflect.getMetadata(PATH_METADATA, handler) as string | undefined;
      if (sub === undefined) continue;
      const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod];
      const path = `/${[base, sub].filter((p) => p && p !== '/').join('/')}`.replace(/\/+/g, '/');
      const isPublic = reflector.getAllAndOverride<boolean>(IS_PUBLIC, [handler, metatype]) === true;
      routes.push({ method, path, isPublic });
    }
  }
  return routes;
}

/** The route's path with every `:param` filled in with a plausible value. */
const concrete = (path: string) => path.replace(/:id\b/g, UNKNOWN_ID).replace(/:index\b/g, '0').replace(/:\w+/g, 'x');

/** Case and spelling variants of a path that Express still routes to the same handler. */
function variants(path: string): string[] {
  return [path, path.toUpperCase().replace(UNKNOWN_ID.toUpperCase(), UNKNOWN_ID), path.replace('/api/', '/Api/'), path.replace('/api/v1/', '/aPI/V1/'), `${path}/`];
}

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

describe('Protection by route metadata, and each key sees only its own data (e2e)', () => {
  let dataDir: string;
  let app: NestExpressApplication;
  let http: ReturnType<typeof request>;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-ownership-'));
    app = await startApp(dataDir, { API_KEYS: `alice:${ALICE},bob:${BOB}`, RATE_LIMIT_PER_MINUTE: '1000' });
    http = request(app.getHttpServer());
  });

  afterAll(async () => {
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('only the health probes are public; every other route of every controller is protected', () => {
    const routes = routesOf(app);
    expect(routes.length).toBeGreaterThanOrEqual(9);
    expect(routes.filter((r) => r.isPublic).map((r) => `${r.method} ${r.path}`).sort()).toEqual(['GET /health/live', 'GET /health/ready']);
  });

  it('without a key, every protected route answers 401 whatever the case or spelling of its path', async () => {
    const protectedRoutes = routesOf(app).filter((r) => !r.isPublic);
    for (const route of protectedRoutes) {
      for (const path of variants(concrete(route.path))) {
        const method = route.method.toLowerCase() as 'get' | 'post' | 'delete';
        const res = await http[method](path).send(method === 'post' ? { prompt: 'sneaky' } : undefined);
        expect({ route: `${route.method} ${path}`, status: res.status, code: res.body?.code }).toEqual({
          route: `${route.method} ${path}`,
          status: 401,
          code: 'API_KEY_REQUIRED',
        });
      }
    }
    // Spellings Express does not route (encoded letters, double slashes) reach no handler at all.
    for (const path of ['/%61pi/v1/generations', '/api//v1/generations', '/api/v1/%67enerations']) {
      const res = await http.get(path);
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
    }
  });

  it('another key gets 404 for a generation exactly as for an unknown id: read, list, events, image, cancel', async () => {
    const created = await http.post('/api/v1/generations').set('x-api-key', ALICE).set('Prefer', 'wait=60').send({ prompt: 'alice private red square' }).expect(201);
    const id = (created.body as Body).id as string;
    await http.get(`/api/v1/generations/${id}`).set('x-api-key', ALICE).expect(200);
    await http.get(`/api/v1/generations/${id}/images/0`).set('x-api-key', ALICE).expect(200);

    for (const [method, path] of [
      ['get', `/api/v1/generations/${id}`],
      ['get', `/api/v1/generations/${id}/events`],
      ['get', `/api/v1/generations/${id}/images/0`],
      ['post', `/api/v1/generations/${id}/cancel`],
    ] as const) {
      const theirs = await http[method](path).set('x-api-key', BOB);
      const unknown = await http[method](path.replace(id, UNKNOWN_ID)).set('x-api-key', BOB);
      expect({ path, status: theirs.status }).toEqual({ path, status: 404 });
      expect(theirs.body).toEqual({ ...(unknown.body as Body), message: (unknown.body as Body).message.replace(UNKNOWN_ID, id) });
    }
    const bobsList = (await http.get('/api/v1/generations?limit=100').set('x-api-key', BOB).expect(200)).body as Body;
    expect(JSON.stringify(bobsList)).not.toContain('alice private');
    const alicesList = (await http.get('/api/v1/generations?limit=100').set('x-api-key', ALICE).expect(200)).body as Body;
    expect(alicesList.items.map((g: Body) => g.id)).toContain(id);
    // The owner is not part of the answer.
    expect(created.body).not.toHaveProperty('owner');
  });

  it("another key cannot cancel a running generation; its owner can", async () => {
    const running = (await http.post('/api/v1/generations').set('x-api-key', ALICE).send({ prompt: 'alice waits [emulator:hang]' }).expect(202)).body as Body;
    await http.post(`/api/v1/generations/${running.id}/cancel`).set('x-api-key', BOB).expect(404);
    const still = (await http.get(`/api/v1/generations/${running.id}`).set('x-api-key', ALICE).expect(200)).body as Body;
    expect(['queued', 'running']).toContain(still.status);
    const canceled = (await http.post(`/api/v1/generations/${running.id}/cancel`).set('x-api-key', ALICE).expect(200)).body as Body;
    expect(canceled).toMatchObject({ status: 'canceled', error: { code: 'CANCELED' } });
  });

  it('records created with keys off belong to no key: hidden from every key, visible again with keys off', async () => {
    const legacyDir = mkdtempSync(join(tmpdir(), 'his-ownership-legacy-'));
    try {
      let open = await startApp(legacyDir);
      const legacy = (await request(open.getHttpServer()).post('/api/v1/generations').set('Prefer', 'wait=60').send({ prompt: 'from before keys' }).expect(201))
        .body as Body;
      await open.close();

      const keyed = await startApp(legacyDir, { API_KEYS: `alice:${ALICE}` });
      try {
        const kh = request(keyed.getHttpServer());
        await kh.get(`/api/v1/generations/${legacy.id}`).set('x-api-key', ALICE).expect(404);
        expect(((await kh.get('/api/v1/generations').set('x-api-key', ALICE).expect(200)).body as Body).items).toEqual([]);
        const mine = (await kh.post('/api/v1/generations').set('x-api-key', ALICE).set('Prefer', 'wait=60').send({ prompt: 'alice after keys' }).expect(201)).body as Body;

        open = await startApp(legacyDir);
        try {
          const oh = request(open.getHttpServer());
          await oh.get(`/api/v1/generations/${legacy.id}`).expect(200);
          // A key's records stay its own when keys are turned off again.
          await oh.get(`/api/v1/generations/${mine.id}`).expect(404);
          expect(((await oh.get('/api/v1/generations').expect(200)).body as Body).items.map((g: Body) => g.id)).toEqual([legacy.id]);
        } finally {
          await open.close();
        }
      } finally {
        await keyed.close();
      }
    } finally {
      rmSync(legacyDir, { recursive: true, force: true });
    }
  });
});

describe('Rate limit and fair shares per client (e2e)', () => {
  let dataDir: string;
  let app: NestExpressApplication | undefined;

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-fairness-'));
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('with keys configured, a rate limit cannot be bypassed by the case of the path', async () => {
    app = await startApp(dataDir, { API_KEYS: `alice:${ALICE}`, RATE_LIMIT_PER_MINUTE: '3' });
    const http = request(app.getHttpServer());
    const paths = ['/api/v1/generations', '/API/v1/generations', '/Api/V1/Generations', '/api/v1/generations/'];
    const statuses: number[] = [];
    for (const path of paths) statuses.push((await http.get(path).set('x-api-key', ALICE)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    // The palettes route shares the key's allowance too.
    await http.post('/API/v1/palettes').set('x-api-key', ALICE).attach('image', await onePixelPng(), 'a.png').expect(429);
  });

  it('without keys, the limit is per client address: a fresh random key per request buys nothing', async () => {
    app = await startApp(dataDir, { RATE_LIMIT_PER_MINUTE: '5' });
    const http = request(app.getHttpServer());
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await http.get('/api/v1/generations').set('x-api-key', `random-${i}-${Math.random()}`)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    // Another address (through the trusted loopback proxy header) has its own allowance.
    await http.get('/api/v1/generations').set('X-Forwarded-For', '203.0.113.7').expect(200);
  });

  it('one client holds at most its share of active generations (429 TOO_MANY_ACTIVE_GENERATIONS) and of Gemini slots; others keep moving', async () => {
    // Two Gemini slots, one per client: alice's hung call cannot take the slot bob needs.
    app = await startApp(dataDir, {
      API_KEYS: `alice:${ALICE},bob:${BOB}`,
      GEMINI_MAX_CONCURRENCY: '2',
      MAX_ACTIVE_GENERATIONS_PER_CLIENT: '2',
    });
    const http = request(app.getHttpServer());
    const gemini = app.get(GeminiService);
    const hung = [
      (await http.post('/api/v1/generations').set('x-api-key', ALICE).send({ prompt: 'alice hangs one [emulator:hang]' }).expect(202)).body as Body,
      (await http.post('/api/v1/generations').set('x-api-key', ALICE).send({ prompt: 'alice hangs two [emulator:hang]' }).expect(202)).body as Body,
    ];
    const refused = await http.post('/api/v1/generations').set('x-api-key', ALICE).send({ prompt: 'alice three' }).expect(429);
    expect(refused.body).toEqual({ statusCode: 429, code: 'TOO_MANY_ACTIVE_GENERATIONS', message: expect.any(String) });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    // Alice's first call holds her one slot; her second waits for it although a slot is free.
    await eventually(async () => (gemini.inFlight === 1 && gemini.waiting === 1 ? true : undefined), "alice's calls to settle into 1 running, 1 waiting");
    const states = await Promise.all(hung.map(async (g) => ((await http.get(`/api/v1/generations/${g.id}`).set('x-api-key', ALICE)).body as Body).status));
    expect(states.sort()).toEqual(['queued', 'running']);

    // Bob is served at once by the free slot (the hung calls would never let him through otherwise).
    const bobs = (await http.post('/api/v1/generations').set('x-api-key', BOB).set('Prefer', 'wait=60').send({ prompt: 'bob gets a blue square' }).expect(201)).body as Body;
    expect(bobs.status).toBe('succeeded');

    for (const g of hung) await http.post(`/api/v1/generations/${g.id}/cancel`).set('x-api-key', ALICE).expect(200);
    // Her share is free again.
    await http.post('/api/v1/generations').set('x-api-key', ALICE).set('Prefer', 'wait=60').send({ prompt: 'alice again' }).expect(201);
  });
});
