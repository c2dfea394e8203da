/**
 * A client generated from /docs-json, as a user would make one (issue 14, item 4): types by
 * `openapi-typescript` with its defaults (plus its documented `transform` that types
 * `format: binary` as Blob), a small flow written against them and type-checked by the TypeScript
 * compiler (strict), then run with Node against the real app: create with `prompt` only, poll,
 * list with the cursor, cancel (and the 409 after), download, palette upload. `@ts-expect-error`
 * lines pin what the types must refuse (a string count, a missing prompt, an image 404 typed as an
 * image…): a document that lost that precision leaves them unused, which fails the check.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { NestExpressApplication } from '@nestjs/platform-express';
import openapiTS, { astToString, type OpenAPI3 } from 'openapi-typescript';
import ts from 'typescript';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

const KEY = 'client-key-0123456789abcdef';

/** The flow, written as a user of the generated types would write it. */
const FLOW = `import type { components, paths } from './api';

declare const process: { env: Record<string, string | undefined> };

type Generation = components['schemas']['GenerationDto'];
type CreateBody = paths['/api/v1/generations']['post']['requestBody']['content']['application/json'];
type Accepted = paths['/api/v1/generations']['post']['responses'][202]['content']['application/json'];
type QueueFull = paths['/api/v1/generations']['post']['responses'][429]['content']['application/json'];
type ListQuery = NonNullable<paths['/api/v1/generations']['get']['parameters']['query']>;
type Page = paths['/api/v1/generations']['get']['responses'][200]['content']['application/json'];
type Canceled = paths['/api/v1/generations/{id}/cancel']['post']['responses'][200]['content']['application/json'];
type Conflict = paths['/api/v1/generations/{id}/cancel']['post']['responses'][409]['content']['application/json'];
type ImageOperation = paths['/api/v1/generations/{id}/images/{index}']['get'];
type ImageMissing = ImageOperation['responses'][404]['content']['application/json'];
type EventStream = paths['/api/v1/generations/{id}/events']['get']['responses'][200]['content']['text/event-stream'];
type PaletteUpload = paths['/api/v1/palettes']['post']['requestBody']['content']['multipart/form-data'];
type Palette = paths['/api/v1/palettes']['post']['responses'][200]['content']['application/json'];

const base = process.env.BASE_URL!;
const headers = { 'x-api-key': process.env.API_KEY! };

async function call<T>(method: string, path: string, expected: number, body?: BodyInit, contentType?: string): Promise<T> {
  const res = await fetch(base + path, { method, body, headers: contentType ? { ...headers, 'content-type': contentType } : headers });
  if (res.status !== expected) throw new Error(method + ' ' + path + ': ' + res.status + ' ' + (await res.text()));
  return (await res.json()) as T;
}

async function finalState(id: string): Promise<Generation> {
  for (let i = 0; i < 600; i++) {
    const g = await call<Generation>('GET', '/api/v1/generations/' + id, 200);
    if (g.status === 'succeeded' || g.status === 'failed' || g.status === 'canceled') return g;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('generation ' + id + ' never finished');
}

async function flow(): Promise<void> {
  // Create with the prompt alone: aspectRatio, count and paletteSize have defaults.
  const body: CreateBody = { prompt: 'a solid blue square' };
  const accepted: Accepted = await call<Accepted>('POST', '/api/v1/generations', 202, JSON.stringify(body), 'application/json');
  const done = await finalState(accepted.id);
  if (done.status !== 'succeeded' || done.error !== null) throw new Error('expected a success, got ' + JSON.stringify(done));
  const first = done.images[0];
  const index: number = first.index;

  // History, page by page.
  const query: ListQuery = { limit: 1 };
  let page = await call<Page>('GET', '/api/v1/generations?limit=' + query.limit, 200);
  const ids: string[] = page.items.map((g) => g.id);
  if (page.nextCursor !== null) {
    const next: ListQuery = { limit: 1, cursor: page.nextCursor };
    page = await call<Page>('GET', '/api/v1/generations?' + new URLSearchParams({ limit: String(next.limit), cursor: next.cursor! }), 200);
    ids.push(...page.items.map((g) => g.id));
  }
  if (!ids.includes(done.id)) throw new Error('history misses ' + done.id);

  // Cancel a generation that cannot finish on its own; a second cancel is a conflict with its code.
  const hung = await call<Accepted>('POST', '/api/v1/generations', 202, JSON.stringify({ prompt: 'a patient sloth [emulator:hang]' } satisfies CreateBody), 'application/json');
  const canceled = await call<Canceled>('POST', '/api/v1/generations/' + hung.id + '/cancel', 200);
  if (canceled.error?.code !== 'CANCELED') throw new Error('expected CANCELED, got ' + JSON.stringify(canceled.error));
  const conflict = await call<Conflict>('POST', '/api/v1/generations/' + hung.id + '/cancel', 409);
  const code: 'GENERATION_FINISHED' = conflict.code;

  // Download the image, then ask for its palette.
  const image = await fetch(base + first.url, { headers });
  if (image.status !== 200 || image.headers.get('content-type') !== first.mimeType) throw new Error('download failed: ' + image.status);
  const upload: PaletteUpload = { image: await image.blob(), size: 3 };
  const form = new FormData();
  form.append('image', upload.image, 'image-' + index + '.png');
  form.append('size', String(upload.size));
  const palette = await call<Palette>('POST', '/api/v1/palettes', 200, form);
  if (palette.colors.length === 0 || palette.colors.length > 3 || code !== 'GENERATION_FINISHED') throw new Error('unexpected palette ' + JSON.stringify(palette));
}

/** Never called: what the generated types must accept and refuse. */
export function precision(g: Generation, full: QueueFull, missing: ImageMissing, stream: EventStream): void {
  const error: { code: string; message: string } | null = g.error;
  // @ts-expect-error error is null unless the generation failed or was canceled
  const failedCode: string = g.error.code;
  // @ts-expect-error error is always present (null, not absent)
  const withoutError: Generation = { ...g, error: undefined };
  // @ts-expect-error count is an integer, not a string
  const stringCount: CreateBody = { prompt: 'x', count: 'two' };
  // @ts-expect-error prompt is required
  const noPrompt: CreateBody = { count: 2 };
  const statusCode: 429 = full.statusCode;
  const fullCode: 'QUEUE_FULL' | 'TOO_MANY_ACTIVE_GENERATIONS' | 'RATE_LIMITED' = full.code;
  // @ts-expect-error only the documented codes
  const otherCode: QueueFull['code'] = 'SOMETHING_ELSE';
  const missingCode: 'GENERATION_NOT_FOUND' | 'IMAGE_NOT_FOUND' = missing.code;
  // @ts-expect-error an image route 404 is JSON, not image bytes
  type MissingImageBytes = ImageOperation['responses'][404]['content']['image/png'];
  // @ts-expect-error the multipart image is a file, not a string
  const pathAsImage: PaletteUpload = { image: '/tmp/a.png' };
  const text: string = stream;
  void [error, failedCode, withoutError, stringCount, noPrompt, statusCode, fullCode, otherCode, missingCode, pathAsImage, text];
}

flow().then(
  () => console.log('flow ok'),
  (e: unknown) => {
    console.error(e);
    throw e;
  },
);
`;

/** openapi-typescript's documented way to type binary strings (file uploads and downloads) as Blob. */
const binaryAsBlob = (schema: { format?: string }) => (schema.format === 'binary' ? ts.factory.createTypeReferenceNode('Blob') : undefined);

describe('A typed client generated from /docs-json (e2e)', () => {
  let gemini: TestGemini;
  let app: NestExpressApplication;
  let dataDir: string;
  let workDir: string;
  let base: string;

  beforeAll(async () => {
    gemini = await startTestGemini();
    dataDir = mkdtempSync(join(tmpdir(), 'his-client-data-'));
    workDir = mkdtempSync(join(tmpdir(), 'his-client-'));
    const config = loadConfig({ ...gemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1', API_KEYS: `client:${KEY}` });
    app = await createApp(config, { logger: false });
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await app?.close();
    await gemini?.close();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(workDir, { recursive: true, force: true });
  });

  it('openapi-typescript types type-check a create → poll → list → cancel → download → palette flow, which then runs', async () => {
    const document = (await (await fetch(`${base}/docs-json`)).json()) as OpenAPI3;
    const types = astToString(await openapiTS(document, { transform: binaryAsBlob }));
    writeFileSync(join(workDir, 'api.d.ts'), types);
    const flowFile = join(workDir, 'flow.ts');
    writeFileSync(flowFile, FLOW);

    const program = ts.createProgram([flowFile], {
      strict: true,
      noEmit: true,
      noUnusedLocals: false,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ['lib.es2022.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
      types: [],
      skipLibCheck: true,
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file && d.start !== undefined ? `${d.file.fileName.slice(workDir.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1} ` : '';
      return `${where}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    expect(diagnostics).toEqual([]);

    // The same flow, run for real: types that type-check but lie would fail here.
    const js = ts.transpileModule(FLOW, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    writeFileSync(join(workDir, 'flow.mjs'), js);
    // (Asynchronously: the app under test answers from this process.)
    const run = await promisify(execFile)(process.execPath, [join(workDir, 'flow.mjs')], { env: { ...process.env, BASE_URL: base, API_KEY: KEY }, timeout: 60_000 }).catch(
      (error: { stdout?: string; stderr?: string; code?: number }) => error,
    );
    expect({ stdout: run.stdout?.trim(), stderr: run.stderr?.trim() }).toEqual({ stdout: 'flow ok', stderr: '' });
  });
});
