import { AggregationType, ViewOptions } from '@opentelemetry/sdk-metrics';

/**
 * HTTP request durations (seconds): the instrumentation's advice stops at 10 s, but
 * `POST /api/v1/generations` with `Prefer: wait=N` legitimately holds a request up to 60 s and
 * SSE streams even longer; without the upper buckets every such request lands in `+Inf`
 * and the p95/p99 panels flat-line.
 */
export const HTTP_SECONDS_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 120,
];

/**
 * Views applied to every metric of the SDK. Our own instruments carry bucket advice already
 * (see `AppMetrics`); these cover instrumentation-made histograms whose advice does not fit.
 */
export function metricViews(): ViewOptions[] {
  return [
    {
      instrumentName: 'http.server.request.duration',
      aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: HTTP_SECONDS_BUCKETS } },
    },
    {
      instrumentName: 'http.client.request.duration',
      aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: HTTP_SECONDS_BUCKETS } },
    },
  ];
}
