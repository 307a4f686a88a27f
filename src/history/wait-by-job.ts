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
export function percentile(sortedMs: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil(p * sortedMs.length));
  return sortedMs[rank - 1] as number;
}

/**
 * @param stillQueued the runs still queued in the history (not in the ledger yet), their open
 *   stretch ending now
 */
export function waitByJob(
  ledger: WaitLedger,
  fromMs: number,
  toMs: number,
  stillQueued: ReadonlyArray<{ runId: string; jobName: string; stretches: readonly Stretch[] }>,
): JobWaitData[] {
  const waitsByJob = new Map<string, Array<{ runId: string; ms: number }>>();
  const add = (runId: string, jobName: string, ms: number) => {
    if (ms <= 0) return;
    const waits = waitsByJob.get(jobName) ?? [];
    waits.push({ runId, ms });
    waitsByJob.set(jobName, waits);
  };
  // Left inside (from, to]: whole, unless the window's start cuts through the wait.
  for (const run of ledger.leftBetween(fromMs, toMs)) {
    add(
      run.runId,
      run.jobName,
      run.firstMs >= fromMs ? run.waitedMs : clipStretches(ledger.stretchesOf(run.ord), fromMs, toMs).waitedMs,
    );
  }
  // Still queued at `to` (left since, or not yet): the part inside.
  for (const { ord } of ledger.queuedAt(toMs)) {
    const { runId, jobName } = ledger.runOf(ord);
    add(runId, jobName, clipStretches(ledger.stretchesOf(ord), fromMs, toMs).waitedMs);
  }
  for (const run of stillQueued) add(run.runId, run.jobName, clipStretches(run.stretches, fromMs, toMs).waitedMs);

  const jobs: JobWaitData[] = [];
  for (const [jobName, waits] of waitsByJob) {
    const sorted = waits.map((w) => w.ms).sort((a, b) => a - b);
    const longest = waits
      .sort((a, b) => b.ms - a.ms || a.runId.localeCompare(b.runId))
      .slice(0, LONGEST_RUNS)
      .map((w) => w.runId);
    jobs.push({
      jobName,
      runs: sorted.length,
      waitSeconds: sorted.reduce((sum, ms) => sum + ms, 0) / 1000,
      p50Seconds: percentile(sorted, 0.5) / 1000,
      p95Seconds: percentile(sorted, 0.95) / 1000,
      longestRunIds: longest,
    });
  }
  return jobs.sort((a, b) => b.waitSeconds - a.waitSeconds || a.jobName.localeCompare(b.jobName));
}

/** A limit's identity in a report: the same limit however it was named when it held a run. */
export function shareKey(l: WaitLimit): string {
  return [l.kind, l.key, l.value, l.pool, l.perUniqueValue].join('|');
}

/**
 * Per limit (by shareKey), the runs it held longest inside the window, longest first (at most
 * LONGEST_RUNS). Reads the same runs as waitByJob, and the stretches of each.
 */
export function runsHeldLongest(
  ledger: WaitLedger,
  fromMs: number,
  toMs: number,
  stillQueued: ReadonlyArray<{ runId: string; stretches: readonly Stretch[] }>,
): Map<string, string[]> {
  const held = new Map<number, Array<{ runId: string; ms: number }>>();
  const add = (runId: string, stretches: readonly Stretch[]) => {
    for (const [id, { heldMs }] of clipStretches(stretches, fromMs, toMs).byLimit) {
      if (heldMs <= 0) continue;
      const runs = held.get(id) ?? [];
      runs.push({ runId, ms: heldMs });
      held.set(id, runs);
    }
  };
  for (const run of ledger.leftBetween(fromMs, toMs)) add(run.runId, ledger.stretchesOf(run.ord));
  for (const { ord } of ledger.queuedAt(toMs)) add(ledger.runOf(ord).runId, ledger.stretchesOf(ord));
  for (const run of stillQueued) add(run.runId, run.stretches);
  const limits = ledger.limits();
  const longest = new Map<string, string[]>();
  for (const [id, runs] of held) {
    const limit = limits.get(id);
    if (!limit) continue;
    runs.sort((a, b) => b.ms - a.ms || a.runId.localeCompare(b.runId));
    longest.set(
      shareKey(limit),
      runs.slice(0, LONGEST_RUNS).map((r) => r.runId),
    );
  }
  return longest;
}
