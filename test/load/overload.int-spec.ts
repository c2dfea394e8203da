/**
 * The overload scenario's pure parts on known inputs: judging a ramp step, choosing the sustainable
 * rate, reading the finished counter between ticks, the outcome of accepted generations, the targets
 * and the shedder's log lines. No service, no timing.
 */
import { parseOptions, UsageError } from './options';
import {
  acceptedOutcomes,
  chooseSustainableRate,
  evaluateOverloadTargets,
  finishedBetween,
  judgeRampStep,
  planOverload,
  sheddingEvents,
  type RampFigures,
} from './overload';
import type { GenerationOutcomes } from './traffic';

const fine: RampFigures = { arrivedPerSecond: 20, finishedPerSecond: 19.5, refused: {}, createErrors: {}, lightP99Ms: 12 };

describe('overload scenario', () => {
  it('a ramp step keeps up with ≥ 95 % of arrivals finished, no refusal, no create error and light p99 ≤ 50 ms', () => {
    expect(judgeRampStep(fine)).toBeNull();
    // 95 % exactly keeps up; just below does not.
    expect(judgeRampStep({ ...fine, finishedPerSecond: 19 })).toBeNull();
    expect(judgeRampStep({ ...fine, finishedPerSecond: 18.9 })).toBe('finished 18.9/s of 20/s arrived');
    expect(judgeRampStep({ ...fine, lightP99Ms: 50 })).toBeNull();
    expect(judgeRampStep({ ...fine, lightP99Ms: 50.1 })).toBe('light p99 50.1 ms');
    // The shedder's own refusals fail the step: a shedder that fires early lowers the sustainable rate.
    expect(judgeRampStep({ ...fine, refused: { '503 OVERLOADED': 3, '429 QUEUE_FULL': 1 } })).toBe('refused 503 OVERLOADED × 3, 429 QUEUE_FULL × 1');
    expect(judgeRampStep({ ...fine, createErrors: { '0 ECONNRESET': 2 } })).toBe('create errors 0 ECONNRESET × 2');
    expect(judgeRampStep({ ...fine, finishedPerSecond: null, lightP99Ms: null })).toBe('finished rate unknown; no light-route samples');
    expect(judgeRampStep({ ...fine, finishedPerSecond: 10, lightP99Ms: 80 })).toBe('finished 10/s of 20/s arrived; light p99 80 ms');
  });

  it('the sustainable rate is the highest rate that kept up with every lower one', () => {
    expect(chooseSustainableRate([])).toEqual({ rate: null, atLeast: false, limit: null });
    expect(chooseSustainableRate([{ rate: 5, failure: 'light p99 60 ms' }])).toEqual({ rate: null, atLeast: false, limit: { rate: 5, failure: 'light p99 60 ms' } });
    // Out of order on input; 25/s passing after 20/s failed does not count.
    const steps = [
      { rate: 25, failure: null },
      { rate: 10, failure: null },
      { rate: 5, failure: null },
      { rate: 20, failure: 'finished 17/s of 20/s arrived' },
      { rate: 15, failure: null },
    ];
    expect(chooseSustainableRate(steps)).toEqual({ rate: 15, atLeast: false, limit: { rate: 20, failure: 'finished 17/s of 20/s arrived' } });
    // Every step kept up: the box does at least the top rate.
    expect(chooseSustainableRate([{ rate: 5, failure: null }, { rate: 10, failure: null }])).toEqual({ rate: 10, atLeast: true, limit: null });
  });

  it('reads the finished counter between ticks by linear interpolation, null outside them', () => {
    const ticks = [
      { t: 1, finished: 0 },
      { t: 2, finished: null },
      { t: 3, finished: 20 },
      { t: 4, finished: 40 },
    ];
    expect(finishedBetween(ticks, 1, 4)).toBe(40);
    expect(finishedBetween(ticks, 2, 3.5)).toBe(20);
    expect(finishedBetween(ticks, 0.5, 3)).toBeNull();
    expect(finishedBetween(ticks, 2, 4.5)).toBeNull();
  });

  it('counts accepted generations by outcome; GEMINI_TIMEOUT is injected only when the emulator was told to hang calls', () => {
    const outcomes = {
      offered: 120,
      accepted: 100,
      finished: { succeeded: 90, 'failed PALETTE_TIMEOUT': 4, 'failed GEMINI_TIMEOUT': 2, 'failed GEMINI_RATE_LIMITED': 1 },
      unfinishedAtEnd: 3,
    } as unknown as GenerationOutcomes;
    expect(acceptedOutcomes(outcomes, true)).toEqual({
      accepted: 100,
      succeeded: 90,
      failed: { 'failed PALETTE_TIMEOUT': 4, 'failed GEMINI_TIMEOUT': 2, 'failed GEMINI_RATE_LIMITED': 1 },
      injectedFailures: 3,
      unfinished: 3,
    });
    expect(acceptedOutcomes(outcomes, false).injectedFailures).toBe(0);
  });

  it('checks the targets at 2×: light p99, refusal p99, every accepted generation finished, event-loop delay', () => {
    const clean = { accepted: 10, succeeded: 10, failed: {}, injectedFailures: 0, unfinished: 0 };
    const good = { lightLatencyMs: { p99: 30 }, refusalLatencyMs: { p99: 4, count: 500 }, outcomes: clean, eventLoopDelayP99Ms: 40 };
    expect(evaluateOverloadTargets(good)).toMatchObject({ met: true, missed: [], refusalP99Ms: { refusals: 500, met: true } });
    // No refusal at all: the refusal target holds vacuously, the others decide.
    expect(evaluateOverloadTargets({ ...good, refusalLatencyMs: { p99: null, count: 0 } }).met).toBe(true);
    const bad = evaluateOverloadTargets({
      lightLatencyMs: { p99: 148 },
      refusalLatencyMs: { p99: 12, count: 3 },
      outcomes: { accepted: 400, succeeded: 346, failed: { 'failed PALETTE_TIMEOUT': 54 }, injectedFailures: 0, unfinished: 0 },
      eventLoopDelayP99Ms: null,
    });
    expect(bad.met).toBe(false);
    expect(bad.missed).toEqual(['lightP99Ms', 'refusalP99Ms', 'allAcceptedFinished', 'eventLoopP99Ms']);
    expect(bad.allAcceptedFinished).toEqual({ met: false, selfInflictedFailures: 54, unfinished: 0 });
    // Injected failures are the emulator's, not the service's; one left unfinished is not.
    expect(evaluateOverloadTargets({ ...good, outcomes: { ...clean, failed: { 'failed GEMINI_TIMEOUT': 2 }, injectedFailures: 2 } }).met).toBe(true);
    expect(evaluateOverloadTargets({ ...good, outcomes: { ...clean, unfinished: 1 } }).missed).toEqual(['allAcceptedFinished']);
  });

  it('reads shedding start and stop lines of the service log onto the run\'s time axis', () => {
    const t0 = Date.parse('2026-11-30T08:00:00.000Z');
    const log = [
      '{"level":"info","time":"2026-11-30T08:00:01.000Z","context":"NestApplication","msg":"started"}',
      '{"level":"warn","time":"2026-11-30T08:00:10.500Z","context":"LoadShedder","msg":"Shedding load: new generations and uploads get 503 OVERLOADED (x)"}',
      'not json "LoadShedder"',
      '{"level":"info","time":"2026-11-30T08:00:12.000Z","context":"LoadShedder","msg":"Load shedding stopped after 1500 ms (y)"}',
    ].join('\n');
    expect(sheddingEvents(log, t0)).toEqual([
      { t: 10.5, kind: 'start', message: 'Shedding load: new generations and uploads get 503 OVERLOADED (x)' },
      { t: 12, kind: 'stop', message: 'Load shedding stopped after 1500 ms (y)' },
    ]);
  });

  it('plans the ramp and the 2× step from the command line', () => {
    const plan = planOverload(parseOptions(['--scenarios=overload']));
    expect(plan.multiplier).toBe(2);
    expect(plan.overloadRate).toBeUndefined();
    expect(plan.overloadStepMs).toBe(15_000);
    expect(plan.geminiLatencyMs).toBe(2000);
    expect(plan.rampRates.every((r, i) => i === 0 || r > plan.rampRates[i - 1])).toBe(true);
    expect(parseOptions([]).scenarios).not.toContain('overload');
    const check = planOverload(parseOptions(['--scenarios=overload', '--overload-ramp=none', '--overload-rate=100', '--overload-seconds=30', '--profile=full']));
    expect(check).toMatchObject({ rampRates: [], overloadRate: 100, overloadStepMs: 30_000 });
    expect(() => parseOptions(['--overload-ramp=none'])).toThrow(UsageError);
    expect(() => parseOptions(['--overload-ramp=10,5'])).toThrow(/rising/);
  });
});
