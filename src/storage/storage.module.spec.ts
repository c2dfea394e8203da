import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Test } from '@nestjs/testing';
import { loadConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { TelemetryModule } from '../telemetry/telemetry.module';
import { STORAGE_DRIVER, type StorageDriver } from './storage.driver';
import { StorageModule } from './storage.module';
import { StorageService } from './storage.service';

describe('StorageModule', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'storage-module-'));
  });

  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  async function build(env: Record<string, string>) {
    const moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(loadConfig({ DATA_DIR: dataDir, ...env })), TelemetryModule, StorageModule],
    }).compile();
    return moduleRef.init();
  }

  it('stores in DATA_DIR/images when no bucket is configured', async () => {
    const moduleRef = await build({});
    const storage = moduleRef.get(StorageService);
    expect(storage.kind).toBe('local');

    const key = storage.keyFor('g1', 0, 'image/png', new Date('2026-11-24T10:00:00Z'));
    await storage.put(key, Buffer.from('png'), 'image/png');
    const object = await storage.open(key);
    object.body.destroy();
    expect(object.contentLength).toBe(3);
    await expect(storage.presignedUrl(key)).resolves.toBeNull();
    await moduleRef.close();
  });

  it('uses S3 when S3_BUCKET is set (no network until the first call)', async () => {
    const moduleRef = await build({ S3_BUCKET: 'images', S3_ENDPOINT: 'http://127.0.0.1:9' });
    expect(moduleRef.get(StorageService).kind).toBe('s3');
    await moduleRef.close();
  });

  it('closes the driver on application shutdown', async () => {
    const driver = { kind: 'local', close: jest.fn().mockResolvedValue(undefined) } as unknown as StorageDriver;
    const moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(loadConfig({ DATA_DIR: dataDir })), TelemetryModule, StorageModule],
    })
      .overrideProvider(STORAGE_DRIVER)
      .useValue(driver)
      .compile();
    await moduleRef.init();
    expect(driver.close).not.toHaveBeenCalled();
    await moduleRef.close();
    expect(driver.close).toHaveBeenCalledTimes(1);
  });
});
