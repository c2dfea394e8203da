import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGeminiEmulator, type GeminiEmulator } from '../../src/gemini/emulator/emulator.server';
import { freePort, startService, type ServiceProcess } from '../support/service-process';

type Body = Record<string, any>;

/** Recognisable values: if any of them shows up in output, it leaked. */
const GEMINI_KEY = 'AIzaSyTEST-gemini-key-do-not-log-7f3a9c';
const API_KEY = 'client-key-do-not-log-51e2b0';

const listen = async (server: Server) => {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};
const close = (server: Server | undefined) => new Promise<void>((done) => (server ? server.close(() => done()) : done()));

/**
 * A pass-through proxy in front of the emulator that notes every `x-goog-api-key` it forwards:
 * proof that the key really is sent on the wire, so "absent everywhere else" is not vacuous.
 */
async function startKeyRecordingProxy(target: string): Promise<{ url: string; keysSeen: Set<string>; server: Server }> {
  const keysSeen = new Set<string>();
  const upstream = new URL(target);
  const server = createServer((req, res) => {
    const key = req.headers['x-goog-api-key'];
    if (typeof key === 'string') keysSeen.add(key);
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    res.on('close', () => out.destroy());
    req.pipe(out);
  });
  return { url: await listen(server), keysSeen, server };
}

/** An OTLP/HTTP sink keeping the raw bodies, so span events and status messages are searched too. */
async function startRawOtlpSink(): Promise<{ url: string; bodies: string[]; server: Server }> {
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return { url: await listen(server), bodies, server };
}

/**
 * The built service with a real-looking GEMINI_API_KEY and API_KEYS, pointed at an emulator that
 * fails in every way it can. Afterwards neither key may appear in the process's logs, in any
 * answer body, in the exported spans and metrics, or on /metrics.
 */
describe('Secrets stay out of logs, errors, spans and metrics (e2e, service process)', () => {
  let emulator: GeminiEmulator;
  let proxy: Awaited<ReturnType<typeof startKeyRecordingProxy>>;
  let sink: Awaited<ReturnType<typeof startRawOtlpSink>>;
  let svc: ServiceProcess | undefined;
  const answers: string[] = [];

  beforeAll(async () => {
    emulator = await startGeminiEmulator({ host: '127.0.0.1', port: 0 });
    proxy = await startKeyRecordingProxy(emulator.url);
    sink = await startRawOtlpSink();
    svc = await startService({
      GEMINI_API_KEY: GEMINI_KEY,
      GEMINI_BASE_URL: proxy.url,
      // Exercised only by the hang case; generous, so a busy machine cannot time out the others.
      GEMINI_TIMEOUT_MS: '5000',
      GEMINI_MAX_RETRIES: '1',
      API_KEYS: API_KEY,
      LOG_LEVEL: 'debug',
      PALETTE_WORKERS: '1',
      METRICS_PORT: String(await freePort()),
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
    });
  });

  afterAll(async () => {
    await svc?.stop('SIGKILL').catch(() => undefined);
    await close(proxy?.server);
    await close(sink?.server);
    await emulator?.close();
  });

  /** `key: null` sends no x-api-key header. */
  const call = async (path: string, init: RequestInit = {}, key: string | null = API_KEY) => {
    const headers = { 'content-type': 'application/json', ...(key ? { 'x-api-key': key } : {}), ...(init.headers as Record<string, string>) };
    const res = await fetch(`${svc!.baseUrl}${path}`, { ...init, headers });
    const text = await res.text();
    answers.push(text);
    return { status: res.status, body: (text.startsWith('{') ? JSON.parse(text) : {}) as Body };
  };

  it('every Gemini failure is reported with its code, and the key was sent to Gemini', async () => {
    const cases: [string, string][] = [
      ['a plain square', 'succeeded'],
      ['a server error [emulator:500]', 'GEMINI_ERROR'],
      ['an overloaded model [emulator:503]', 'GEMINI_ERROR'],
      ['a quota problem [emulator:429]', 'GEMINI_RATE_LIMITED'],
      ['a slow answer [emulator:hang]', 'GEMINI_TIMEOUT'],
      ['a refusal [emulator:block]', 'GEMINI_BLOCKED'],
      ['only words [emulator:text]', 'GEMINI_NO_IMAGE'],
    ];
    const results = await Promise.all(
      cases.map(([prompt]) => call('/api/v1/generations', { method: 'POST', headers: { prefer: 'wait=30' }, body: JSON.stringify({ prompt }) })),
    );
    expect(results.map((r) => r.status)).toEqual(cases.map(() => 201));
    expect(results.map((r) => r.body.error?.code ?? r.body.status)).toEqual(cases.map(([, outcome]) => outcome));
    expect([...proxy.keysSeen]).toEqual([GEMINI_KEY]);
  });

  it('rejected client keys are neither echoed nor logged', async () => {
    expect((await call('/api/v1/generations', {}, `${API_KEY}-wrong`)).status).toBe(401);
    expect((await call('/api/v1/generations', { headers: { authorization: `Bearer ${API_KEY}-wrong` } }, null)).status).toBe(401);
    expect((await call('/api/v1/generations?limit=50')).status).toBe(200);
  });

  it('neither key appears on /metrics, in the exported telemetry or in the process output', async () => {
    const metrics = await (await fetch(svc!.metricsUrl!)).text();
    // The failures are counted by code (bounded labels), and nothing secret rides along.
    expect(metrics).toMatch(/pipeline_generations_total\{[^}]*error_code="GEMINI_TIMEOUT"/);
    expect(metrics).toMatch(/gen_ai_client_operation_duration_count\{[^}]*error_type="GEMINI_RATE_LIMITED"/);

    expect(await svc!.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const telemetry = sink.bodies.join('\n');
    expect(telemetry).toContain('generate_content');
    const logs = svc!.logs();
    expect(logs).toMatch(/GEMINI_ERROR|500|503/);

    for (const [where, text] of [
      ['logs', logs],
      ['answers', answers.join('\n')],
      ['/metrics', metrics],
      ['OTLP export', telemetry],
    ] as const) {
      for (const secret of [GEMINI_KEY, API_KEY]) {
        expect({ where, leaked: text.includes(secret) }).toEqual({ where, leaked: false });
      }
    }
  });
});
