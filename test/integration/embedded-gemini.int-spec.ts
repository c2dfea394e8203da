import { startService } from '../support/service-process';

/**
 * Where the bundled Gemini emulator comes from: `npm start` (main.ts) starts it when neither
 * GEMINI_API_KEY nor GEMINI_BASE_URL is set and passes it to the app as GEMINI_BASE_URL; the app
 * itself holds no test tooling. Production refuses that default. The BUILT service, as a process.
 */
// NODE_ENV unset, as `npm start` runs; load shedding off, since a busy test machine is not what this test is about.
const BASE_ENV = { OTEL_SDK_DISABLED: 'true', METRICS_PORT: '0', PALETTE_WORKERS: '1', NODE_ENV: undefined, OVERLOAD_SHEDDING: 'false' };

describe('npm start without GEMINI_API_KEY (integration)', () => {
  it('starts the bundled emulator on 127.0.0.1, says so loudly, serves its images, and exits cleanly at SIGTERM', async () => {
    const service = await startService(BASE_ENV);
    let emulatorUrl: string | undefined;
    try {
      const warning = service.jsonLogs().find((line) => /BUNDLED GEMINI EMULATOR/.test(String(line.msg)));
      expect(warning).toMatchObject({ level: 'warn' });
      emulatorUrl = /at (http:\/\/127\.0\.0\.1:\d+)/.exec(String(warning!.msg))?.[1];
      expect(emulatorUrl).toBeDefined();

      const res = await fetch(`${service.baseUrl}/api/v1/generations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', prefer: 'wait=30' },
        body: JSON.stringify({ prompt: 'a solid blue tile' }),
      });
      expect(res.status).toBe(201);
      expect(await res.json()).toMatchObject({ status: 'succeeded', images: [{ mimeType: 'image/png' }] });
      // The app reached it as any other endpoint: through GEMINI_BASE_URL.
      expect(service.logs()).toContain(`sending Gemini calls to GEMINI_BASE_URL ${emulatorUrl}`);
    } finally {
      expect(await service.stop()).toEqual({ code: 0, signal: null });
    }
  });

  it('NODE_ENV=production refuses to start, naming the variables', async () => {
    await expect(startService({ ...BASE_ENV, NODE_ENV: 'production' })).rejects.toThrow(
      /exited early \(code 1[\s\S]*NODE_ENV=production without GEMINI_API_KEY or GEMINI_BASE_URL/,
    );
  });

  it('an invalid PORT is reported as it was given', async () => {
    await expect(startService({ ...BASE_ENV, PORT: 'abc' })).rejects.toThrow(/exited early \(code 1[\s\S]*PORT: PORT must be an integer number \(got "abc"\)/);
  });
});
