/**
 * Smaller telemetry faults, on the built service exporting to a real OTLP receiver, with the
 * Gemini emulator run here on its own port (GEMINI_BASE_URL) so that the endpoint is known:
 * - a failed image's `pipeline.image` span has status ERROR (and `error.type`); a good one stays UNSET;
 * - Gemini client spans carry `server.address` / `server.port` of the endpoint they called;
 * - a final Gemini failure and a blocked prompt each leave a log line (generation, image, code),
 *   in the image's trace, without the prompt;
 * - a request that matched no route has no `http.route`, neither on its server span nor in
 *   http.server.request.duration.
 */
import { randomBytes } from 'node:crypto';
import { GeminiEmulator, startGeminiEmulator } from '../../src/gemini/emulator/emulator.server';
import { OtlpReceiver, ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver';
import { ServiceProcess, startService } from '../support/service-process';

const STATUS_ERROR = 2;
const CLIENT = 3;
const SERVER = 2;

interface Generation {
  id: string;
  status: string;
  error: { code: string; message: string } | null;
}

describe('Telemetry of failures and unrouted requests (integration)', () => {
  let emulator: GeminiEmulator;
  let receiver: OtlpReceiver;
  let service: ServiceProcess;
  const generations: Record<'ok' | 'failed' | 'blocked', Generation> = {} as never;
  const prompts = { ok: 'a red lantern', failed: 'a broken robot [emulator:500]', blocked: 'something refused [emulator:block]' };

  /** Each generation in a trace of its own, whose id the test chose (W3C traceparent). */
  const traceIds = { ok: randomBytes(16).toString('hex'), failed: randomBytes(16).toString('hex'), blocked: randomBytes(16).toString('hex') };

  async function generate(prompt: string, traceId: string): Promise<Generation> {
    const res = await fetch(`${service.baseUrl}/api/v1/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=30', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      body: JSON.stringify({ prompt, paletteSize: 3 }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as Generation;
  }

  beforeAll(async () => {
    emulator = await startGeminiEmulator({ host: '127.0.0.1', port: 0 });
    receiver = await startOtlpReceiver();
    service = await startService({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRIC_EXPORT_INTERVAL: '500',
      GEMINI_BASE_URL: emulator.url,
      GEMINI_MAX_RETRIES: '0',
      PALETTE_WORKERS: '1',
    });
    for (const kind of ['ok', 'failed', 'blocked'] as const) generations[kind] = await generate(prompts[kind], traceIds[kind]);
    expect(Object.values(generations).map((g) => g.error?.code ?? g.status)).toEqual(['succeeded', 'GEMINI_ERROR', 'GEMINI_BLOCKED']);
    await receiver.waitFor(
      () => receiver.spans().filter((s) => s.name === 'pipeline.image').length === 3,
      20_000,
      () => receiver.spans().map((s) => s.name).join(', '),
    );
  }, 90_000);

  afterAll(async () => {
    await service?.stop();
    await receiver?.close();
    await emulator?.close();
  });

  function imageSpanOf(kind: keyof typeof traceIds): ReceivedSpan {
    const spans = receiver.spans().filter((s) => s.name === 'pipeline.image' && s.traceId === traceIds[kind]);
    expect(spans).toHaveLength(1);
    return spans[0];
  }

  it('pipeline.image: status ERROR with error.type when the image failed, UNSET when it succeeded', () => {
    const failed = imageSpanOf('failed');
    expect(failed.status.code).toBe(STATUS_ERROR);
    expect(failed.attributes['error.type']).toBe('GEMINI_ERROR');
    expect(imageSpanOf('blocked')).toMatchObject({ status: { code: STATUS_ERROR }, attributes: { 'error.type': 'GEMINI_BLOCKED' } });
    const ok = imageSpanOf('ok');
    expect(ok.status.code ?? 0).toBe(0);
    expect(ok.attributes).not.toHaveProperty('error.type');
  });

  it('Gemini client spans carry server.address and server.port of the endpoint', () => {
    const calls = receiver.spans().filter((s) => s.kind === CLIENT && s.name.startsWith('generate_content'));
    expect(calls).toHaveLength(3);
    for (const span of calls) expect(span.attributes).toMatchObject({ 'server.address': '127.0.0.1', 'server.port': emulator.port });
  });

  it('a final Gemini failure and a blocked prompt each leave a log line in the image’s trace, without the prompt', () => {
    const lineFor = (g: Generation) => service.jsonLogs().filter((l) => l.context === 'GenerationRunner' && String(l.msg).startsWith(`Generation ${g.id} image 0 failed`));

    const [failed] = lineFor(generations.failed);
    expect(failed).toMatchObject({ level: 'error', trace_id: imageSpanOf('failed').traceId });
    expect(failed.msg).toMatch(new RegExp(`^Generation ${generations.failed.id} image 0 failed after 1 attempt: GEMINI_ERROR: Gemini answered 500`));

    const [blocked] = lineFor(generations.blocked);
    expect(blocked).toMatchObject({ level: 'warn', trace_id: imageSpanOf('blocked').traceId });
    expect(blocked.msg).toMatch(new RegExp(`^Generation ${generations.blocked.id} image 0 failed after 1 attempt: GEMINI_BLOCKED: Gemini refused`));

    expect(lineFor(generations.ok)).toEqual([]);
    for (const line of [failed, blocked]) expect(String(line.msg)).not.toMatch(/broken robot|something refused/);
  });

  it('a request no route matched has no http.route on its server span or in http.server.request.duration', async () => {
    for (const path of ['/nope', '/api/v1/nope/deeper']) expect((await fetch(`${service.baseUrl}${path}`)).status).toBe(404);
    await receiver.waitFor(
      () => receiver.spans().filter((s) => s.kind === SERVER && s.attributes['http.response.status_code'] === 404).length >= 2,
      20_000,
      () => receiver.spans().map((s) => s.name).join(', '),
    );
    const unrouted = receiver.spans().filter((s) => s.kind === SERVER && s.attributes['http.response.status_code'] === 404);
    for (const span of unrouted) {
      expect(span.name).toBe('GET');
      expect(span.attributes).not.toHaveProperty('http.route');
    }

    const points = () =>
      receiver
        .metrics()
        .filter((m) => m.name === 'http.server.request.duration')
        .flatMap((m) => m.points)
        .filter((p) => p.attributes['http.response.status_code'] === 404);
    await receiver.waitFor(() => points().some((p) => p.value >= 2), 20_000, () => JSON.stringify(points()));
    expect(new Set(points().map((p) => p.attributes['http.route']))).toEqual(new Set([undefined]));
  });
});
