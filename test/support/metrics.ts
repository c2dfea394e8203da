import type { AppMetrics } from '../../src/telemetry/app-metrics';

/** The part of AppMetrics that PaletteService uses, doing nothing: for benches and tests of the pool alone. */
export const noopPaletteMetrics = { gauge: () => undefined, recordPaletteTask: () => undefined } as unknown as AppMetrics;
