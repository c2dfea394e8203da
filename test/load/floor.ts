/**
 * The CPU floor of one generation: what decoding the emulator's answer costs with nothing else
 * running. The service cannot do less than this per generation: read the JSON answer (bytes to a
 * string the cheapest way — a Latin-1 copy when the bytes are ASCII, as they are here — and
 * JSON.parse), decode the image part's base64, and have sharp decode the PNG and shrink it to the
 * palette's analysis size (the palette worker's own `decodeForPalette`).
 *
 * `measureFloor` fetches the raw answers for the given prompts from the emulator (the body the
 * service receives from `generateContent`), then measures in a separate `node` process, so that
 * nothing else runs in it: CPU time of that whole process (`process.cpuUsage`, every thread: GC
 * helpers and libvips included) per iteration, the median of several batches. The child runs with
 * the service's production memory settings (semi-space size, glibc arenas), so GC costs compare.
 *
 * Run as a script (`node dist-tools/test/load/floor.js --child FILE`) it is that child: FILE holds the answers and the
 * batch plan, the result is one JSON line on stdout.
 */
import { isAscii } from 'node:buffer';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { PRODUCTION_MEMORY_ENV, ROOT } from './processes';

export interface FloorOptions {
  /** Base URL of a running emulator (`GeminiEmulator.url`). */
  emulatorUrl: string;
  /** The run's prompt(s): their answers are cycled through, one per iteration. */
  prompt: string | readonly string[];
  /** Iterations per batch (default 20). */
  iterations?: number;
  /** Batches; the medians are over these (default 5). */
  batches?: number;
  /** Aspect ratio asked for (default 1:1, what the load harness generates). */
  aspectRatio?: string;
}

export interface FloorResult {
  /** CPU ms of one whole decode (JSON + base64 + sharp), median over the batches. */
  floorMs: number;
  /** Each part measured on its own (medians of their own batches): they need not add up exactly to floorMs. */
  parts: { jsonMs: number; base64Ms: number; sharpMs: number };
  /** How it was measured. */
  answers: number;
  answerBytes: number;
  imageBytes: number;
  iterations: number;
  batches: number;
  /** Per-batch ms of the whole decode, to judge the spread. */
  batchMs: number[];
}

interface ChildPlan {
  files: string[];
  iterations: number;
  batches: number;
}

const MODEL = 'gemini-2.5-flash-image';

/** The raw body the emulator answers to the request the service sends for `prompt` (no latency, faults retried). */
export async function fetchAnswer(emulatorUrl: string, prompt: string, aspectRatio = '1:1'): Promise<Buffer> {
  let last = 'no answer';
  for (let attempt = 0; attempt < 6; attempt++) {
    try {
      const res = await fetch(`${emulatorUrl}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': 'floor' },
        // What @google/genai sends for GeminiService's call; the directive is stripped before painting.
        body: JSON.stringify({
          contents: [{ role: 'user', parts: [{ text: `${prompt} [emulator:latency=0]` }] }],
          generationConfig: { responseModalities: ['IMAGE'], imageConfig: { aspectRatio } },
        }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = Buffer.from(await res.arrayBuffer());
      if (res.ok && body.includes('"inlineData"')) return body;
      last = `HTTP ${res.status}`;
    } catch (error) {
      last = (error as Error).message; // a rolled hang or fault: ask again
    }
  }
  throw new Error(`the emulator gave no image answer for the floor (${last})`);
}

/** Fetches the answers, then measures their decode in a child process. */
export async function measureFloor(opts: FloorOptions): Promise<FloorResult> {
  const prompts = typeof opts.prompt === 'string' ? [opts.prompt] : [...opts.prompt];
  if (prompts.length === 0) throw new Error('measureFloor needs at least one prompt');
  const answers: Buffer[] = [];
  for (const prompt of prompts) answers.push(await fetchAnswer(opts.emulatorUrl, prompt, opts.aspectRatio));
  const dir = mkdtempSync(join(tmpdir(), 'his-floor-'));
  try {
    const files = answers.map((body, i) => {
      const file = join(dir, `answer-${i}.json`);
      writeFileSync(file, body);
      return file;
    });
    const plan: ChildPlan = { files, iterations: opts.iterations ?? 20, batches: opts.batches ?? 5 };
    const planFile = join(dir, 'plan.json');
    writeFileSync(planFile, JSON.stringify(plan));
    const measured = await runChild(planFile);
    return {
      ...measured,
      answers: answers.length,
      answerBytes: Math.round(answers.reduce((n, b) => n + b.length, 0) / answers.length),
      iterations: plan.iterations,
      batches: plan.batches,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type ChildResult = Pick<FloorResult, 'floorMs' | 'parts' | 'imageBytes' | 'batchMs'>;

function runChild(planFile: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    // This file as a script, compiled (under Jest this module is the .ts source: the child runs the
    // build of `npm run -s build:tools`).
    const script = extname(__filename) === '.js' ? __filename : join(ROOT, 'dist-tools', 'test', 'load', 'floor.js');
    if (!existsSync(script)) return reject(new Error(`${script} is missing: run \`npm run -s build:tools\` first`));
    const child = spawn(process.execPath, [script, '--child', planFile], {
      cwd: ROOT,
      env: { ...process.env, ...PRODUCTION_MEMORY_ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`floor child exited with ${code}: ${err.trim().slice(-2000)}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '') as ChildResult);
      } catch {
        reject(new Error(`floor child printed no result: ${out.slice(-500)} ${err.slice(-500)}`));
      }
    });
  });
}

// ------------------------------------------------------------------------------------------------
// The child
// ------------------------------------------------------------------------------------------------

type Answer = { candidates?: { content?: { parts?: { inlineData?: { data?: string } }[] } }[] };

function imagePart(answer: Answer): string {
  const data = answer.candidates?.[0]?.content?.parts?.find((p) => p.inlineData?.data)?.inlineData?.data;
  if (!data) throw new Error('an answer without an image part');
  return data;
}

const cpuMs = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The cheapest correct bytes → string: for ASCII bytes Latin-1 and UTF-8 decode alike, and Latin-1 is a copy. */
const text = (bytes: Buffer) => (isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8'));

async function child(planFile: string): Promise<void> {
  const plan = JSON.parse(readFileSync(planFile, 'utf8')) as ChildPlan;
  // The palette worker's module: its sharp settings (concurrency 1, no cache) and its decode + shrink.
  // Loaded here, not at the top: the harness process itself must not take the worker's sharp settings.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const worker = require('../../src/palette/palette.worker') as typeof import('../../src/palette/palette.worker');
  const bodies = plan.files.map((f) => readFileSync(f));
  const strings = bodies.map((b) => imagePart(JSON.parse(text(b)) as Answer));
  const images = strings.map((s) => Buffer.from(s, 'base64'));

  const whole = async (i: number) => {
    const answer = JSON.parse(text(bodies[i % bodies.length])) as Answer;
    const image = Buffer.from(imagePart(answer), 'base64');
    await worker.decodeForPalette(image);
  };
  const steps: Record<'whole' | 'json' | 'base64' | 'sharp', (i: number) => unknown> = {
    whole,
    json: (i) => imagePart(JSON.parse(text(bodies[i % bodies.length])) as Answer),
    base64: (i) => Buffer.from(strings[i % strings.length], 'base64'),
    sharp: (i) => worker.decodeForPalette(images[i % images.length]),
  };
  const batchesOf = async (step: (i: number) => unknown): Promise<number[]> => {
    for (let i = 0; i < Math.min(5, plan.iterations); i++) await step(i); // warm-up: JIT, libvips init
    const out: number[] = [];
    for (let b = 0; b < plan.batches; b++) {
      const from = process.cpuUsage();
      for (let i = 0; i < plan.iterations; i++) await step(i);
      out.push(cpuMs(from) / plan.iterations);
    }
    return out;
  };
  const wholeMs = await batchesOf(steps.whole);
  const jsonMs = median(await batchesOf(steps.json));
  const base64Ms = median(await batchesOf(steps.base64));
  const sharpMs = median(await batchesOf(steps.sharp));
  const result: ChildResult = {
    floorMs: round3(median(wholeMs)),
    parts: { jsonMs: round3(jsonMs), base64Ms: round3(base64Ms), sharpMs: round3(sharpMs) },
    imageBytes: Math.round(images.reduce((n, b) => n + b.length, 0) / images.length),
    batchMs: wholeMs.map(round3),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (require.main === module && process.argv[2] === '--child') {
  child(process.argv[3]).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
