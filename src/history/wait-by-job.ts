/**
 * Each job's waiting in a window of time, with the median and the 95th percentile of its runs'
 * waits there (each run's wait clipped to the window). Percentiles need every run's own figure,
 * so unlike the limit shares this reads one ledger row per run that waited in the window: the
 * runs whose waiting ended inside it (one index range on when they left; the stretches only of
 * those already queued when the window opened), plus the runs queued at its end. The cost
 * follows the runs that waited in the window, not the history's size.
 */
import type { Stretch, WaitLedger, WaitLimit } from './wait-ledger.js';
import { clipStretches } from './wait-report.js';
import { byWaitThenId } from './waiting-runs.js';

export interface JobWaitData {
  jobName: string;
  /** Runs of this job that waited at some moment of the window. */
  runs: number;
  /** Run-seconds the job's runs spent queued inside the window. */
  waitSeconds: number;
  p50Seconds: number;
  p95Seconds: number;
  /** The runs that waited longest in the window, longest first (at most LONGEST_RUNS). */
  longestRunIds: string[];
}

export const LONGEST_RUNS = 5;

/** Nearest rank: the smallest wait with at least `p` of the runs waiting no longer. */
export function percentile(sortedMs: ArrayLike<number>, p: number): number {
  const rank = Math.max(1, Math.ceil(p * sortedMs.length));
  return sortedMs[rank - 1] as number;
}

/** How waitByJob reads the window's runs (see waitByJob); chosen by their number unless given. */
export type ByJobReading = 'rows' | 'jobs';

/**
 * @param stillQueued the runs still queued in the history (not in the ledger yet), their open
 *   stretch ending now
 * @param reading how to read the runs that waited wholly inside the window: `rows` reads each
 *   one's ledger row (id, job, wait) in leave order; `jobs` reads, per job, only the waits from
 *   the job's index and the ids of its few longest. A window with few runs for its jobs is read
 *   by rows; a long one by jobs, which costs a number per run rather than an object.
 */
export function waitByJob(
  ledger: WaitLedger,
  fromMs: number,
  toMs: number,
  stillQueued: ReadonlyArray<{ runId: string; jobName: string; stretches: readonly Stretch[] }>,
  reading?: ByJobReading,
): JobWaitData[] {
  // The runs whose waiting the window's edges cut through, clipped: queued at its start and
  // left inside it, queued at its end, still queued now.
  const cut = new Map<string, Array<{ runId: string; ms: number }>>();
  const add = (into: typeof cut, runId: string, jobName: string, ms: number) => {
    if (ms <= 0) return;
    const waits = into.get(jobName);
    if (waits) waits.push({ runId, ms });
    else into.set(jobName, [{ runId, ms }]);
  };
  for (const { ord, leftMs } of ledger.queuedAt(fromMs)) {
    if (leftMs > toMs) continue;
    const { runId, jobName } = ledger.runOf(ord);
    add(cut, runId, jobName, clipStretches(ledger.stretchesOf(ord), fromMs, toMs).waitedMs);
  }
  for (const { ord } of ledger.queuedAt(toMs)) {
    const { runId, jobName } = ledger.runOf(ord);
    add(cut, runId, jobName, clipStretches(ledger.stretchesOf(ord), fromMs, toMs).waitedMs);
  }
  for (const run of stillQueued) add(cut, run.runId, run.jobName, clipStretches(run.stretches, fromMs, toMs).waitedMs);

  const windowRuns = ledger.leftBy(toMs).runs - ledger.leftBy(fromMs).runs;
  const jobNames = ledger.jobNames();
  const how = reading ?? (windowRuns <= 8 * jobNames.length ? 'rows' : 'jobs');
  const jobs: JobWaitData[] = [];
  if (how === 'rows') {
    const waitsByJob = cut;
    for (const run of ledger.leftBetween(fromMs, toMs)) {
      if (run.firstMs >= fromMs) add(waitsByJob, run.runId, run.jobName, run.waitedMs);
    }
    for (const [jobName, waits] of waitsByJob) {
      const sorted = Float64Array.from(waits, (w) => w.ms).sort();
      jobs.push(jobRow(jobName, sorted, longestOf(waits)));
    }
  } else {
    for (const jobName of new Set([...jobNames, ...cut.keys()])) {
      const edges = cut.get(jobName) ?? [];
      const whole = ledger.wholeWaitsOfJob(jobName, fromMs, toMs);
      if (whole.length === 0 && edges.length === 0) continue;
      const sorted = new Float64Array(whole.length + edges.length);
      sorted.set(whole);
      edges.forEach((w, i) => {
        sorted[whole.length + i] = w.ms;
      });
      sorted.sort();
      // The longest are among the waits at least as long as the LONGEST_RUNS-th longest (ties
      // included, for the order by id): only those rows are read whole.
      const atLeast = sorted[Math.max(0, sorted.length - LONGEST_RUNS)] as number;
      const candidates = [
        ...ledger.longestWholeOfJob(jobName, fromMs, toMs, atLeast),
        ...edges.filter((w) => w.ms >= atLeast),
      ];
      jobs.push(jobRow(jobName, sorted, longestOf(candidates)));
    }
  }
  return jobs.sort((a, b) => b.waitSeconds - a.waitSeconds || a.jobName.localeCompare(b.jobName));
}

function jobRow(jobName: string, sortedMs: Float64Array, longestRunIds: string[]): JobWaitData {
  let total = 0;
  for (const ms of sortedMs) total += ms;
  return {
    jobName,
    runs: sortedMs.length,
    waitSeconds: total / 1000,
    p50Seconds: percentile(sortedMs, 0.5) / 1000,
    p95Seconds: percentile(sortedMs, 0.95) / 1000,
    longestRunIds,
  };
}

/** The ids of the runs that waited longest, longest first, ties by id: the first of waitingRuns' list. */
function longestOf(waits: Array<{ runId: string; ms: number }>): string[] {
  return waits
    .sort(byWaitThenId)
    .slice(0, LONGEST_RUNS)
    .map((w) => w.runId);
}

/** A limit's identity in a report: the same limit however it was named when it held a run. */
export function shareKey(l: WaitLimit): string {
  return [l.kind, l.key, l.value, l.pool, l.perUniqueValue].join('|');
}
