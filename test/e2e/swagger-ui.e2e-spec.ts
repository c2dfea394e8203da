import { mkdtempSync, rmSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { chromium, type Browser } from 'playwright-core';
import { createApp } from '../../src/app.factory';
import { loadConfig } from '../../src/config/app-config';
import { startTestGemini, type TestGemini } from '../support/gemini-emulator';

/** Debian's Chromium, installed by .ci/run; playwright-core never downloads a browser. */
const CHROMIUM = '/usr/bin/chromium';
/**
 * A host name that is not localhost, resolved to the app by the browser itself: browsers treat
 * localhost as secure, so only another name shows what a deployment's users see over plain HTTP
 * (helmet's default `upgrade-insecure-requests` left the page blank there).
 */
const HOST = 'his.test';

/** The bundled Gemini emulator, reached by this file's apps through GEMINI_BASE_URL. */
let testGemini: TestGemini;
beforeAll(async () => {
  testGemini = await startTestGemini();
});
afterAll(async () => {
  await testGemini?.close();
});

describe('Swagger UI in a real browser (e2e)', () => {
  let app: NestExpressApplication;
  let browser: Browser;
  let dataDir: string;
  let baseUrl: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'his-docs-'));
    app = await createApp(loadConfig({ ...testGemini.env, DATA_DIR: dataDir, METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true', LOG_LEVEL: 'silent', PALETTE_WORKERS: '1' }), { logger: false });
    await app.listen(0, '127.0.0.1');
    baseUrl = `http://${HOST}:${(app.getHttpServer().address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it(`renders every operation at /docs, opened over plain HTTP as ${HOST} (not localhost)`, async () => {
    const page = await browser.newPage();
    const failed: string[] = [];
    page.on('requestfailed', (r) => failed.push(`${r.url()} ${r.failure()?.errorText ?? ''}`));
    await page.goto(`${baseUrl}/docs`, { waitUntil: 'networkidle' });
    // Every asset came from where the page is, over http: none was rewritten to https.
    expect(page.url()).toBe(`${baseUrl}/docs`);
    expect(failed).toEqual([]);
    await page.waitForSelector('.opblock', { timeout: 15_000 });
    const operations = await page.$$eval('.opblock-summary', (nodes) =>
      nodes.map((n) => {
        const method = n.querySelector('.opblock-summary-method')?.textContent?.trim();
        const path = n.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? n.querySelector('.opblock-summary-path')?.textContent?.trim();
        return `${method} ${path}`;
      }),
    );
    expect(operations).toEqual(
      expect.arrayContaining([
        'POST /api/v1/generations',
        'GET /api/v1/generations',
        'GET /api/v1/generations/{id}',
        'GET /api/v1/generations/{id}/events',
        'POST /api/v1/generations/{id}/cancel',
        'GET /api/v1/generations/{id}/images/{index}',
        'POST /api/v1/palettes',
      ]),
    );
    expect(await page.title()).toBe('hybrid-image-search API');
    expect(failed).toEqual([]);
  });
});
