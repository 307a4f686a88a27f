/**
 * Section 16: what a command costs as the runs in progress grow (STARTING and STARTED, with and
 * without leases), after an edit of max concurrent runs, on the pure core: decide, evolve, and
 * the run monitor's next wake-up (which it reads after every event). Side by side, the next
 * wake-up found by computing every in-progress run's deadlines (what the deadline index
 * replaced), to show what the index saves.
 *
 *   BENCH_IN_PROGRESS_SIZES (100,100000)   runs in progress
 */
import type { RunRecord, State } from '../projections/state.js';
import { allotmentEndOf, deadlinesOf } from '../src/domain/deadlines.js';
import { nextWakeUp } from '../src/domain/decide.js';
import { Core } from './core.js';
import { fmt, heading, measure, note, ratio, sizes, stats, table, us } from './harness.js';

/** The next wake-up by looking at every run in progress. */
function scannedWakeUp(state: State): number | null {
  let next = Number.POSITIVE_INFINITY;
  const allotment = state.config.rootStepHold.startedRunAllotmentSeconds;
  for (const runId of state.inProgress) {
    const run = state.runs.get(runId) as RunRecord;
    next = Math.min(next, deadlinesOf(run, state.monitoring)[0]?.at ?? next, allotmentEndOf(run, allotment) ?? next);
  }
  return Number.isFinite(next) ? next : null;
}

/** `inProgress` runs admitted, every other one started, a third of them with a lease; then max concurrent runs edited. */
function build(inProgress: number): Core {
  const core = new Core();
  core.exec({ type: 'SetMaxConcurrentRuns', limit: inProgress });
  for (let i = 0; i < inProgress; i++) {
    core.enqueue({ runId: `p${i}`, leaseSeconds: i % 3 === 0 ? 600 : null });
    if (i % 2 === 0) core.exec({ type: 'MarkRunStarted', runId: `p${i}` });
  }
  // The edit that made every later command pay for the runs in progress.
  core.exec({ type: 'SetMaxConcurrentRuns', limit: inProgress });
  return core;
}

export function inProgressSection(): void {
  heading('16. Commands with many runs in progress (deadline index)');
  const counts = sizes('BENCH_IN_PROGRESS_SIZES', [100, 100_000], 10);
  const rows: Array<Array<string | number>> = [];
  const p50s: Record<string, number[]> = { enqueue: [], heartbeat: [], expire: [], scan: [] };
  for (const n of counts) {
    const core = build(n);
    const wakeUp = nextWakeUp(core.state);
    if (wakeUp !== scannedWakeUp(core.state)) throw new Error('the index and the scan disagree on the next wake-up');
    let queued = 0;
    const enqueue = stats(
      measure(
        () => {
          core.enqueue({ runId: `q${n}-${queued++}` });
          nextWakeUp(core.state);
        },
        { minReps: 200, maxReps: 500 },
      ).wall,
    );
    let beat = 0;
    const heartbeat = stats(
      measure(
        () => {
          core.exec({ type: 'Heartbeat', runId: `p${(beat++ * 3) % n}` });
          nextWakeUp(core.state);
        },
        { minReps: 200, maxReps: 500 },
      ).wall,
    );
    const expire = stats(
      measure(
        () => {
          core.exec({ type: 'ExpireDeadlines' });
          nextWakeUp(core.state);
        },
        { minReps: 200, maxReps: 500 },
      ).wall,
    );
    const scan = stats(measure(() => scannedWakeUp(core.state), { minReps: 20, maxReps: 50 }).wall);
    p50s.enqueue?.push(enqueue.p50);
    p50s.heartbeat?.push(heartbeat.p50);
    p50s.expire?.push(expire.p50);
    p50s.scan?.push(scan.p50);
    rows.push([n.toLocaleString('en-US'), us(enqueue.p50), us(heartbeat.p50), us(expire.p50), us(scan.p50)]);
  }
  table(
    [
      'runs in progress',
      'enqueue p50 µs',
      'heartbeat p50 µs',
      'expire (none due) p50 µs',
      'next wake-up by scanning µs (before)',
    ],
    rows,
  );
  const last = counts.length - 1;
  if (last > 0) {
    const r = (key: string) => ratio(p50s[key]?.[last] as number, p50s[key]?.[0] as number);
    note(
      `at ${counts[last]?.toLocaleString('en-US')} vs ${counts[0]?.toLocaleString('en-US')} in progress: enqueue ${r('enqueue')}, heartbeat ${r('heartbeat')}, expire ${r('expire')} (goal ≤1.5×); the scan the index replaced: ${r('scan')}, ${fmt((p50s.scan?.[last] as number) * 1000)} µs per command at the larger size.`,
    );
  }
}
