/**
 * Entry point. Order matters: configuration is validated first (one message naming every bad
 * variable), then OpenTelemetry starts, and only then is the app (express, http) loaded, so the
 * instrumentations patch the modules they wrap.
 */
import { Logger } from '@nestjs/common';
import { ConfigError, getConfig, loadConfig, type AppConfig } from './config/app-config';
import type { GeminiEmulator } from './gemini/emulator/emulator.server';
import { startTelemetry } from './telemetry';

async function main(): Promise<void> {
  let config: AppConfig;
  try {
    config = getConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const telemetry = startTelemetry(config);

  // Loaded after the SDK started (see above).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createApp } = require('./app.factory') as typeof import('./app.factory');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { attachShutdown } = require('./shutdown') as typeof import('./shutdown');
  const emulator = await startBundledEmulator(config);
  if (emulator) config = loadConfig({ ...process.env, GEMINI_BASE_URL: emulator.url });
  const app = await createApp(config);
  attachShutdown(app, config, telemetry, emulator);
  await app.listen(config.port, config.host);
  const logger = new Logger('Main');
  if (emulator) {
    logger.warn(
      `GEMINI_API_KEY is not set: using the BUNDLED GEMINI EMULATOR at ${emulator.url}. ` +
        'Images are synthetic test pictures, not Gemini output. Set GEMINI_API_KEY to call Gemini.',
    );
  }
  logger.log(`API listening on ${listenUrl(config.host, config.port)} (docs at /docs)`);
}

/**
 * The embedded default: an instance that calls Gemini but has neither GEMINI_API_KEY nor
 * GEMINI_BASE_URL gets the bundled emulator, in this process on a free 127.0.0.1 port, and reaches
 * it through GEMINI_BASE_URL like any other endpoint (configuration refuses this with
 * NODE_ENV=production). `ROLE=api` never calls Gemini and starts none.
 */
async function startBundledEmulator(config: AppConfig): Promise<GeminiEmulator | undefined> {
  if (config.queue.role === 'api' || config.gemini.apiKey !== undefined || config.gemini.baseUrl !== undefined) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { startGeminiEmulator } = require('./gemini/emulator/emulator.server') as typeof import('./gemini/emulator/emulator.server');
  return startGeminiEmulator({ host: '127.0.0.1', port: 0 });
}

function listenUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

main().catch((error: unknown) => {
  console.error('Failed to start:', error);
  process.exit(1);
});
