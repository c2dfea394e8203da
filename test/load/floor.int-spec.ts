/**
 * The floor of `npm run load` (floor.ts): it fetches the emulator's real answers and measures their
 * decode in a child process (the build of `npm run -s build:tools`), and the ratio each step reports.
 */
import { startGeminiEmulator, type GeminiEmulator } from '../../src/gemini/emulator/emulator.server';
import { fetchAnswer, measureFloor } from './floor';
import { cpuPerGenerationOf } from './scenarios';

describe('the CPU floor of a generation', () => {
  let emulator: GeminiEmulator;
  beforeAll(async () => {
    // Faults and latency the floor must see through: it asks again, and says no latency.
    emulator = await startGeminiEmulator({ rate503: 0.3, seed: 7, latency: { kind: 'fixed', ms: 5000 } });
  });
  afterAll(() => emulator.close());

  it('fetches the raw answer the service would get: JSON with the PNG as base64', async () => {
    const body = await fetchAnswer(emulator.url, 'a red apple on a blue table');
    const answer = JSON.parse(body.toString('utf8')) as { candidates: { content: { parts: { inlineData?: { mimeType: string; data: string } }[] } }[] };
    const image = answer.candidates[0].content.parts.find((p) => p.inlineData)?.inlineData;
    expect(image?.mimeType).toBe('image/png');
    expect(Buffer.from(image!.data, 'base64').subarray(1, 4).toString('latin1')).toBe('PNG');
  });

  it('measures each part and the whole decode, in CPU ms per iteration', async () => {
    const floor = await measureFloor({ emulatorUrl: emulator.url, prompt: ['a teal wave', 'a navy night'], iterations: 2, batches: 3 });
    expect(floor).toMatchObject({ answers: 2, iterations: 2, batches: 3 });
    expect(floor.batchMs).toHaveLength(3);
    expect(floor.floorMs).toBeGreaterThan(0);
    for (const part of Object.values(floor.parts)) expect(part).toBeGreaterThan(0);
    // 1024² PNGs of the emulator, and their base64 in JSON (≈ 4/3 larger).
    expect(floor.imageBytes).toBeGreaterThan(100_000);
    expect(floor.answerBytes).toBeGreaterThan(floor.imageBytes * 1.3);
  });

  it('refuses an empty prompt list', async () => {
    await expect(measureFloor({ emulatorUrl: emulator.url, prompt: [] })).rejects.toThrow(/at least one prompt/);
  });

  it('compares a step\'s CPU per generation with the floor: ratio and target', () => {
    expect(cpuPerGenerationOf(30, { floorMs: 20 })).toEqual({ serviceMs: 30, floorMs: 20, ratio: 1.5, target: 1.5, met: true });
    expect(cpuPerGenerationOf(43.7, { floorMs: 18.6 })).toMatchObject({ ratio: 2.35, met: false });
    expect(cpuPerGenerationOf(null, { floorMs: 20 })).toBeUndefined();
    expect(cpuPerGenerationOf(30, undefined)).toBeUndefined();
  });
});
