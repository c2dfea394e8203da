/**
 * `npm run emulator`: the Gemini emulator as its own process (for load tests and manual runs).
 * Settings come from `EMULATOR_*` variables, see src/config/emulator-env.ts.
 */
import { ConfigError } from '../../config/app-config';
import { loadEmulatorEnv } from '../../config/emulator-env';
import { startGeminiEmulator } from './emulator.server';

async function main(): Promise<void> {
  const env = loadEmulatorEnv();
  const emulator = await startGeminiEmulator(env);
  console.log(
    `Gemini emulator listening on ${emulator.url} (latency ${JSON.stringify(env.latency)}, ` +
      `rates 429=${env.rate429} 500=${env.rate500} 503=${env.rate503} hang=${env.hangRate} ` +
      `block=${env.blockRate} text=${env.textOnlyRate}, seed ${env.seed ?? 'random'})`,
  );
  console.log(`Point the service at it: GEMINI_BASE_URL=${emulator.url} GEMINI_API_KEY=any`);
  const stop = (signal: string) => {
    console.log(`${signal}: closing the emulator; ${JSON.stringify(emulator.stats())}`);
    void emulator.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
