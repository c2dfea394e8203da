import { INestApplication, Logger } from '@nestjs/common';
import { AppConfig } from './config/app-config';
import { ShutdownState } from './health/shutdown-state';
import { PipelineService } from './pipeline/pipeline.service';

/**
 * SIGTERM/SIGINT: readiness turns 503 at once (load balancers stop routing), new generations get 503,
 * running ones may finish for SHUTDOWN_DRAIN_MS, the rest are recorded failed/INTERRUPTED; then the
 * HTTP server, palette pool and database close, then the bundled Gemini emulator if main.ts started
 * one, telemetry is flushed, and the process exits 0.
 */
export function attachShutdown(
  app: INestApplication,
  config: AppConfig,
  telemetry: { shutdown(): Promise<void> },
  emulator?: { close(): Promise<void> },
): void {
  const logger = new Logger('Shutdown');
  let closing = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (closing) return;
    closing = true;
    const hardStop = setTimeout(() => {
      logger.error('Shutdown took too long; exiting');
      process.exit(1);
    }, config.pipeline.drainMs + 15_000);
    hardStop.unref();
    try {
      logger.log(`${signal} received: readiness is now 503, draining generations`);
      app.get(ShutdownState).begin();
      const { finished, aborted } = await app.get(PipelineService).drain();
      logger.log(`Drained: ${finished} image job(s) finished, ${aborted} ${config.distributed ? 'handed back to the queue' : 'interrupted'}`);
      await app.close();
      await emulator?.close();
      await telemetry.shutdown();
      process.exit(0);
    } catch (error) {
      logger.error(`Shutdown failed: ${String(error)}`);
      process.exit(1);
    }
  };
  process.once('SIGTERM', (s) => void shutdown(s));
  process.once('SIGINT', (s) => void shutdown(s));
}
