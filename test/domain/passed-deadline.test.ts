/**
 * passedDeadline (what every command about a run asks) against deadlinesOf (every deadline,
 * described): on random runs in every status, with tags, leases, heartbeats and clock steps, it
 * is deadlinesOf's earliest deadline when that one has passed, and null otherwise.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { enqueuedRun, type RunMonitoring } from '../../projections/state.js';
import { deadlinesOf, passedDeadline } from '../../src/domain/deadlines.js';

const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const iso = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const instant = fc.option(fc.integer({ min: 0, max: 1000 }), { nil: null });

const run = fc.record({
  status: fc.constantFrom('QUEUED', 'STARTING', 'STARTED', 'CANCELING', 'SUCCESS'),
  admittedAt: instant,
  startedAt: instant,
  cancelRequestedAt: instant,
  lastHeartbeatAt: instant,
  leaseSeconds: fc.option(fc.integer({ min: 1, max: 300 }), { nil: null }),
  maxRuntimeTag: fc.option(fc.constantFrom('60', '600', 'soon', '0'), { nil: null }),
  clockShiftMs: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }),
});

const monitoring: fc.Arbitrary<RunMonitoring> = fc.record({
  startTimeoutSeconds: fc.integer({ min: 0, max: 300 }),
  cancelTimeoutSeconds: fc.integer({ min: 0, max: 300 }),
  maxRuntimeSeconds: fc.option(fc.integer({ min: 1, max: 600 }), { nil: null }),
});

describe('passedDeadline', () => {
  it("is deadlinesOf's earliest deadline once it has passed, else null", () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`passed deadline property seed ${seed} (SEED=${seed} reproduces it)`);
    fc.assert(
      fc.property(run, monitoring, fc.integer({ min: 0, max: 2000 }), (r, m, nowSeconds) => {
        const record = enqueuedRun(
          {
            runId: 'a',
            jobName: 'j',
            tags: r.maxRuntimeTag === null ? [] : [{ key: 'dagster/max_runtime', value: r.maxRuntimeTag }],
            steps: [],
            priority: 0,
            maxConcurrentSteps: null,
            leaseSeconds: r.leaseSeconds,
          },
          0,
          iso(0),
        );
        record.status = r.status as typeof record.status;
        record.admittedAt = r.admittedAt === null ? null : iso(r.admittedAt);
        record.startedAt = r.startedAt === null ? null : iso(r.startedAt);
        record.cancelRequestedAt = r.cancelRequestedAt === null ? null : iso(r.cancelRequestedAt);
        record.lastHeartbeatAt = r.lastHeartbeatAt === null ? null : iso(r.lastHeartbeatAt);
        if (r.clockShiftMs !== undefined) record.clockShiftMs = r.clockShiftMs;
        const now = T0 + nowSeconds * 1000;
        const expected = deadlinesOf(record, m).find((d) => d.at <= now) ?? null;
        expect(passedDeadline(record, m, now)).toEqual(expected);
      }),
      { seed, numRuns: 2000 },
    );
  });
});
