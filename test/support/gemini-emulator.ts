import { startGeminiEmulator, type EmulatorOptions, type GeminiEmulator } from '../../src/gemini/emulator/emulator.server';

export interface TestGemini {
  /** Its stats show what reached "Gemini"; `resetStats()` between tests. */
  emulator: GeminiEmulator;
  /** Spread into the app's environment: the app reaches the emulator through GEMINI_BASE_URL. */
  env: { GEMINI_BASE_URL: string };
  /** Call after the app is closed. */
  close(): Promise<void>;
}

/**
 * The bundled Gemini emulator for a test that builds the app in-process: started here on a free
 * 127.0.0.1 port and passed to the app as GEMINI_BASE_URL, the way `npm start` (main.ts) does it
 * when neither GEMINI_API_KEY nor GEMINI_BASE_URL is set. The prompt directives (`[emulator:hang]`,
 * `[emulator:500]`, …) drive Gemini's faults.
 */
export async function startTestGemini(options: Partial<EmulatorOptions> = {}): Promise<TestGemini> {
  const emulator = await startGeminiEmulator({ host: '127.0.0.1', port: 0, ...options });
  return { emulator, env: { GEMINI_BASE_URL: emulator.url }, close: () => emulator.close() };
}
