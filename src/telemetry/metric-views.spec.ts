import { metrics } from '@opentelemetry/api';
import { Histogram } from '@opentelemetry/sdk-metrics';
import { HTTP_SECONDS_BUCKETS, metricViews } from './metric-views';
import { installTestTelemetry } from './testing';

describe('metricViews', () => {
  it('extends http.server.request.duration buckets past 10 s for long-polling generation requests', async () => {
    const telemetry = installTestTelemetry({ views: metricViews() });
    try {
      // Created the way the HTTP instrumentation does, including its own (shorter) advice.
      const histogram = metrics.getMeter('test').createHistogram('http.server.request.duration', {
        unit: 's',
        advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] },
      });
      histogram.record(42, { 'http.route': '/api/v1/generations' });

      const [point] = await telemetry.points('http.server.request.duration');
      const value = point.value as Histogram;
      expect(value.buckets.boundaries).toEqual(HTTP_SECONDS_BUCKETS);
      expect(value.buckets.counts[HTTP_SECONDS_BUCKETS.indexOf(60)]).toBe(1);
    } finally {
      await telemetry.uninstall();
    }
  });
});
