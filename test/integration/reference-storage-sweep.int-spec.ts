import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { Database, KYSELY } from '../../src/database/database';
import { PENDING_UPLOAD_SWEEP_MS } from '../../src/references/references.service';
import { StorageSweeper, SWEEP_CLOCK_MARGIN_MS } from '../../src/references/storage-sweeper';
import { encode, regionsRaw } from '../support/images';
import { startS3rver, useS3rverCredentials } from '../support/s3rver';
import type { S3rverHandle } from '../support/s3rver';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

type Body = Record<string, any>;

/** Every object file s3rver keeps for `bucket` (its own metadata files aside). */
function objectsIn(directory: string, bucket: string): string[] {
  const root = join(directory, bucket);
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('._S3rver_object'))
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1));
}

/**
 * References on a real S3-protocol server that goes away: a delete during the outage still removes
 * the record (204) and leaves the image on the sweep list; an upload during the outage answers 503
 * and leaves no record; once S3 is back, the sweep deletes every leftover image, and nothing is
 * orphaned either way.
 */
describe('Reference images and the storage sweep when S3 goes away (integration)', () => {
  let testGemini: TestGemini | undefined;
  let s3: S3rverHandle;
  let app: NestExpressApplication;
  let dataDir: string;
  let http: ReturnType<typeof request>;
  let db: Database;

  beforeAll(async () => {
    useS3rverCredentials();
    s3 = await startS3rver({ bucket: 'reference-images' });
    dataDir = mkdtempSync(join(tmpdir(), 'his-ref-sweep-'));
    const config = loadConfig({
      ...(testGemini = await startTestGemini()).env,
      DATA_DIR: dataDir,
      METRICS_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
      LOG_LEVEL: 'silent',
      PALETTE_WORKERS: '1',
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
    });
    app = await createApp(config, { logger: false });
    await app.init();
    http = request(app.getHttpServer());
    db = app.get<Database>(KYSELY);
  });

  afterAll(async () => {
    await app?.close();
    await s3?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    await testGemini?.close();
  });

  it('a delete or an upload during the outage leaves nothing orphaned once the sweep has run', async () => {
    const png = await encode(regionsRaw([{ hex: '#d43434', share: 1 }], { width: 32, height: 32 }), 'png');
    const kept = (await http.post('/api/v1/references').attach('image', png, 'a.png').field('title', 'kept').expect(201)).body as Body;
    const doomed = (await http.post('/api/v1/references').attach('image', png, 'b.png').field('title', 'doomed').expect(201)).body as Body;
    expect(objectsIn(s3.directory, s3.bucket)).toHaveLength(2);
    expect(await db.selectFrom('storage_sweep').selectAll().execute()).toEqual([]);

    await s3.stop();
    await http.delete(`/api/v1/references/${doomed.id}`).expect(204);
    await http.get(`/api/v1/references/${doomed.id}`).expect(404);
    const failed = await http.post('/api/v1/references').attach('image', png, 'c.png').field('title', 'never');
    expect({ status: failed.status, code: failed.body.code }).toEqual({ status: 503, code: 'STORAGE_ERROR' });
    const listed = ((await http.get('/api/v1/references').expect(200)).body as Body).items.map((r: Body) => r.title);
    expect(listed).toEqual(['kept']);
    const entries = await db.selectFrom('storage_sweep').select(['reason', 'attempts']).orderBy('reason').execute();
    expect(entries).toEqual([
      { reason: 'deleted reference', attempts: 0 },
      { reason: 'upload', attempts: 0 },
    ]);

    // While S3 is down the sweep fails, counts the attempt and keeps the entry for later.
    const sweeper = app.get(StorageSweeper);
    // (An entry counts as due a clock margin after its time, so instances with skewed clocks agree.)
    expect(await sweeper.runOnce(new Date(Date.now() + SWEEP_CLOCK_MARGIN_MS + 1000))).toEqual({ deleted: 0, failed: 1 });
    expect((await db.selectFrom('storage_sweep').select(['reason', 'attempts']).where('reason', '=', 'deleted reference').execute())[0].attempts).toBe(1);

    await s3.restart();
    // The deleted reference's image is due at once (after its retry delay); the upload's after an hour.
    const later = new Date(Date.now() + PENDING_UPLOAD_SWEEP_MS + 5 * 60_000);
    expect(await sweeper.runOnce(later)).toEqual({ deleted: 2, failed: 0 });
    expect(await db.selectFrom('storage_sweep').selectAll().execute()).toEqual([]);
    // Only the kept reference's image is left, and it still reads.
    expect(objectsIn(s3.directory, s3.bucket)).toHaveLength(1);
    await http.get(`/api/v1/references/${kept.id}/image`).expect(200).expect('content-type', 'image/png');
  });
});
