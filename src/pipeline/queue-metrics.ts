import type { AppMetrics } from '../telemetry/app-metrics';
import type { JobQueue } from './job-queue';

/**
 * The job queue's gauges, for every role (an API instance admits against the depth; a worker runs jobs):
 *
 * - `pipeline.queue.depth`: image jobs accepted and not started. In-process, those of this instance
 *   still waiting for a Gemini slot; on BullMQ, the shared queue's waiting and delayed jobs (the same
 *   number on every instance: the total is the max over instances, not the sum). Read at each
 *   collection, bounded in time (see `AppMetrics.gaugeAsync`).
 * - `pipeline.jobs.active`: image jobs running in this process (the total is the sum).
 * - `pipeline.queue.capacity`: PIPELINE_MAX_QUEUE.
 */
export function observeJobQueue(metrics: AppMetrics, queue: JobQueue, maxQueue: number): void {
  metrics.gaugeAsync('pipeline.queue.depth', 'Image jobs accepted and not started (BullMQ: the shared queue, the same on every instance)', () => queue.waiting(), '{job}');
  metrics.gauge('pipeline.jobs.active', 'Image jobs running in this process', () => queue.active, '{job}');
  metrics.gauge('pipeline.queue.capacity', 'PIPELINE_MAX_QUEUE', () => maxQueue, '{job}');
}
