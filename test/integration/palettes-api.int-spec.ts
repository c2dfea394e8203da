/**
 * `POST /api/v1/palettes` over HTTP: a Nest app with PalettesModule (real worker pool), the global
 * validation pipe and exception filter the service runs with, and the OpenAPI document it emits.
 */
import { Global, INestApplication, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import request from 'supertest';
import { HttpExceptionFilter } from '../../src/common/http-exception.filter';
import { createValidationPipe } from '../../src/common/validation.pipe';
import { loadConfig } from '../../src/config/app-config';
import { ConfigModule } from '../../src/config/config.module';
import { PaletteError } from '../../src/palette/palette.errors';
import { PaletteService } from '../../src/palette/palette.service';
import { MAX_IMAGE_BYTES } from '../../src/uploads/image-upload.interceptor';
import { PalettesModule } from '../../src/palettes/palettes.module';
import { AppMetrics } from '../../src/telemetry/app-metrics';
import { matchPalette, pixelBombPng, referenceImage, REFERENCE_COLORS, truncate } from '../support/images';

/** AppMetrics on the global (no-op) meter: the real instruments, nothing exported. */
@Global()
@Module({ providers: [AppMetrics], exports: [AppMetrics] })
class MetricsModule {}

async function createApp(override?: Partial<PaletteService>): Promise<INestApplication> {
  let builder = Test.createTestingModule({
    imports: [ConfigModule.forRoot(loadConfig({ PALETTE_WORKERS: '1', PALETTE_MAX_QUEUE: '8' })), MetricsModule, PalettesModule],
  });
  if (override) builder = builder.overrideProvider(PaletteService).useValue(override);
  const moduleRef = await builder.compile();
  const app = moduleRef.createNestApplication({ logger: false });
  app.useGlobalPipes(createValidationPipe());
  app.useGlobalFilters(new HttpExceptionFilter());
  await app.init();
  return app;
}

describe('POST /api/v1/palettes', () => {
  let app: INestApplication;
  let png: Buffer;

  beforeAll(async () => {
    app = await createApp();
    png = await referenceImage('png', { width: 320, height: 200, noise: 6 });
  });
  afterAll(() => app.close());

  const post = () => request(app.getHttpServer()).post('/api/v1/palettes');

  it('answers 200 with the palette, the size and the swatches', async () => {
    const res = await post().attach('image', png, 'reference.png').field('size', '3').expect(200);
    expect(Object.keys(res.body).sort()).toEqual(['colors', 'height', 'swatches', 'width']);
    expect(res.body).toMatchObject({ width: 320, height: 200 });
    expect(res.body.colors).toHaveLength(3);
    const misses = matchPalette(REFERENCE_COLORS, res.body.colors).filter((m) => m.deltaE > 3 || m.shareError > 0.03);
    expect(misses).toEqual([]);
    expect(res.body.swatches.vibrant).toMatchObject({ hex: expect.stringMatching(/^#[0-9a-f]{6}$/), population: expect.any(Number) });
  });

  it('defaults to 5 colours', async () => {
    const res = await post().attach('image', await referenceImage('jpeg', { noise: 10 }), 'photo.jpg').expect(200);
    expect(res.body.colors).toHaveLength(5);
  });

  it('400 IMAGE_REQUIRED without a file', async () => {
    const res = await post().field('size', '3').expect(400);
    expect(res.body).toEqual({ statusCode: 400, code: 'IMAGE_REQUIRED', message: expect.stringContaining('image') });
  });

  it('400 IMAGE_REQUIRED for a JSON body', async () => {
    await post().send({}).expect(400, { statusCode: 400, code: 'IMAGE_REQUIRED', message: 'Send the image file in the multipart field "image"' });
  });

  it.each(['0', '13', 'abc', '2.5', '', '-1'])('400 VALIDATION_FAILED for size=%j', async (size) => {
    const res = await post().attach('image', png, 'a.png').field('size', size).expect(400);
    expect(res.body).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('size') });
  });

  it('400 VALIDATION_FAILED for an unknown field', async () => {
    const res = await post().attach('image', png, 'a.png').field('colours', '3').expect(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
  });

  it('400 INVALID_MULTIPART when the file comes in another field', async () => {
    const res = await post().attach('file', png, 'a.png').expect(400);
    expect(res.body.code).toBe('INVALID_MULTIPART');
  });

  it.each<[string, () => Promise<Buffer>]>([
    ['a text file', async () => Buffer.from('hello, I am text')],
    ['a truncated PNG', async () => truncate(await referenceImage('png', { noise: 10 }), 0.5)],
  ])('415 UNSUPPORTED_IMAGE for %s', async (_name, make) => {
    const res = await post().attach('image', await make(), 'upload.png').expect(415);
    expect(res.body).toMatchObject({ statusCode: 415, code: 'UNSUPPORTED_IMAGE' });
  });

  it('413 IMAGE_TOO_LARGE for more than 100 M pixels', async () => {
    const res = await post().attach('image', await pixelBombPng(12_000), 'bomb.png').expect(413);
    expect(res.body).toMatchObject({ code: 'IMAGE_TOO_LARGE' });
  });

  it('413 PAYLOAD_TOO_LARGE above 20 MB', async () => {
    const res = await post().attach('image', Buffer.alloc(MAX_IMAGE_BYTES + 1), 'big.png').expect(413);
    expect(res.body).toEqual({ statusCode: 413, code: 'PAYLOAD_TOO_LARGE', message: 'The image must be at most 20 MB' });
  });

  it('documents the route in OpenAPI: multipart body, response schema, error answers', () => {
    const document: OpenAPIObject = SwaggerModule.createDocument(app, new DocumentBuilder().build());
    const op = document.paths['/api/v1/palettes']?.post;
    expect(op?.tags).toEqual(['palettes']);
    const body = op?.requestBody as { content: Record<string, { schema: { properties: Record<string, unknown>; required: string[] } }> };
    expect(body.content['multipart/form-data'].schema.required).toEqual(['image']);
    expect(body.content['multipart/form-data'].schema.properties.image).toMatchObject({ type: 'string', format: 'binary' });
    expect(Object.keys(op?.responses ?? {}).sort()).toEqual(['200', '400', '401', '413', '415', '429', '500', '503']);
    expect(JSON.stringify(op?.responses['200'])).toContain('#/components/schemas/PaletteResponseDto');
    const schemas = document.components?.schemas ?? {};
    expect(Object.keys(schemas)).toEqual(expect.arrayContaining(['PaletteResponseDto', 'PaletteSwatchesDto', 'PaletteColorDto']));
  });
});

describe('POST /api/v1/palettes when the pool fails', () => {
  let app: INestApplication;
  let failure: PaletteError;
  let png: Buffer;

  beforeAll(async () => {
    app = await createApp({ extract: () => Promise.reject(failure), retryAfterSeconds: () => 3 });
    png = await referenceImage('png');
  });
  afterAll(() => app.close());

  const post = () => request(app.getHttpServer()).post('/api/v1/palettes').attach('image', png, 'a.png');

  it('503 PALETTE_BUSY with Retry-After when the queue is full', async () => {
    failure = new PaletteError('PALETTE_BUSY', 'Too many palette tasks are waiting (8); retry later');
    const res = await post().expect(503);
    expect(res.headers['retry-after']).toBe('3');
    expect(res.body).toEqual({ statusCode: 503, code: 'PALETTE_BUSY', message: 'Too many palette tasks are waiting (8); retry later' });
  });

  it('500 PALETTE_ERROR without internals when a worker dies', async () => {
    failure = new PaletteError('PALETTE_ERROR', 'Palette worker failed: worker exited with code 3');
    const res = await post().expect(500);
    expect(res.body).toEqual({ statusCode: 500, code: 'PALETTE_ERROR', message: 'The palette could not be extracted' });
  });
});
