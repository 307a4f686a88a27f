/**
 * waitByJob on the wait ledger itself, over random sets of finished waits written as the history
 * writes them (runs in the order they left the queue): both ways of reading a window (each
 * run's row, or each job's index range) give what a reference computes run by run from the
 * stretches, clipped to the window, with nearest-rank percentiles and the longest runs by id.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WaitInterval } from '../../projections/state.js';
import type { Constraint } from '../../src/domain/constraints.js';
import { LONGEST_RUNS, waitByJob } from '../../src/history/wait-by-job.js';
import { CROSSING_BUCKET_MS, WAIT_LEDGER_SCHEMA, WaitLedger } from '../../src/history/wait-ledger.js';

const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const limit: Constraint = {
  kind: 'MAX_CONCURRENT_RUNS',
  key: null,
  value: null,
  pool: null,
  perUniqueValue: false,
  limit: 1,
  inUse: 1,
  message: '',
};

interface Run {
  runId: string;
  jobName: string;
  /** Stretches [from, to) in ms; contiguous or with gaps. */
  stretches: Array<[number, number]>;
}

/** Random runs: arrivals over a few crossing buckets, one to three stretches each, few jobs. */
const runs = fc
  .array(
    fc.record({
      job: fc.constantFrom('a', 'b', 'c', 'd'),
      arrive: fc.integer({ min: 0, max: 3 * CROSSING_BUCKET_MS }),
      // Short and long waits, with equal lengths likely (ties in the longest runs).
      lengths: fc.array(fc.constantFrom(1000, 5000, 60_000, 600_000, 1_800_000), { minLength: 1, maxLength: 3 }),
      gap: fc.constantFrom(0, 0, 2000),
    }),
    { maxLength: 120 },
  )
  .map((drawn) =>
    drawn.map(({ job, arrive, lengths, gap }, i): Run => {
      let at = T0 + arrive;
      const stretches: Array<[number, number]> = [];
      for (const length of lengths) {
        stretches.push([at, at + length]);
        at += length + gap;
      }
      return { runId: `r${String(i).padStart(3, '0')}`, jobName: job, stretches };
    }),
  );

function ledgerOf(all: readonly Run[]): WaitLedger {
  const db = new Database(':memory:');
  db.exec(WAIT_LEDGER_SCHEMA);
  const ledger = new WaitLedger(db);
  const byLeave = [...all].sort((a, b) => (a.stretches.at(-1)?.[1] ?? 0) - (b.stretches.at(-1)?.[1] ?? 0));
  for (const run of byLeave) {
    const waits: WaitInterval[] = run.stretches.map(([from, to]) => ({
      from: iso(from),
      to: iso(to),
      reasons: [limit],
    }));
    ledger.recordLeft(run.runId, run.jobName, waits);
  }
  return ledger;
}

function reference(all: readonly Run[], fromMs: number, toMs: number) {
  const byJob = new Map<string, Array<{ runId: string; ms: number }>>();
  for (const run of all) {
    let ms = 0;
    for (const [from, to] of run.stretches) ms += Math.max(0, Math.min(to, toMs) - Math.max(from, fromMs));
    if (ms > 0) byJob.set(run.jobName, [...(byJob.get(run.jobName) ?? []), { runId: run.runId, ms }]);
  }
  return new Map(
    [...byJob].map(([job, waits]) => {
      const sorted = waits.map((w) => w.ms).sort((a, b) => a - b);
      const rank = (p: number) => (sorted[Math.max(1, Math.ceil(p * sorted.length)) - 1] as number) / 1000;
      const longest = [...waits]
        .sort((a, b) => b.ms - a.ms || a.runId.localeCompare(b.runId))
        .slice(0, LONGEST_RUNS)
        .map((w) => w.runId);
      const wait = sorted.reduce((a, b) => a + b, 0) / 1000;
      return [job, { runs: sorted.length, wait, p50: rank(0.5), p95: rank(0.95), longest }];
    }),
  );
}

describe('waitByJob over the wait ledger', () => {
  it('reads a window by rows and by jobs alike, as the reference computes it', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`wait by job property seed ${seed} (SEED=${seed} reproduces it)`);
    let cutRuns = 0;
    fc.assert(
      fc.property(
        runs,
        fc.integer({ min: -CROSSING_BUCKET_MS, max: 4 * CROSSING_BUCKET_MS }),
        fc.integer({ min: 1, max: 4 * CROSSING_BUCKET_MS }),
        (all, start, length) => {
          const ledger = ledgerOf(all);
          const fromMs = T0 + start;
          const toMs = fromMs + length;
          const expected = reference(all, fromMs, toMs);
          for (const reading of ['rows', 'jobs', undefined] as const) {
            const rows = waitByJob(ledger, fromMs, toMs, [], reading);
            expect(
              new Map(
                rows.map((j) => [
                  j.jobName,
                  { runs: j.runs, wait: j.waitSeconds, p50: j.p50Seconds, p95: j.p95Seconds, longest: j.longestRunIds },
                ]),
              ),
            ).toEqual(expected);
            const waits = rows.map((j) => j.waitSeconds);
            expect(waits).toEqual([...waits].sort((a, b) => b - a));
          }
          if (all.some((r) => r.stretches.some(([from, to]) => from < fromMs && to > fromMs))) cutRuns++;
        },
      ),
      { seed, numRuns: 150 },
    );
    // Windows cut through waits at their start often enough for the comparison to mean something.
    expect(cutRuns).toBeGreaterThan(20);
  });
});
