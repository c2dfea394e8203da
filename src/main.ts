/**
 * Entry point. Order matters: configuration is validated first (one message naming every bad
 * variable), then OpenTelemetry starts, and only then is the app (express, http) loaded, so the
 * instrumentations patch the modules they wrap.
 */
import { Logger } from '@nestjs/common';
import { ConfigError, getConfig, type AppConfig } from './config/app-config';
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
  const app = await createApp(config);
  attachShutdown(app, config, telemetry);
  await app.listen(config.port, config.host);
  const logger = new Logger('Main');
  logger.log(`API listening on ${listenUrl(config.host, config.port)} (docs at /docs)`);
}

function listenUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

main().catch((error: unknown) => {
  console.error('Failed to start:', error);
  process.exit(1);
});
