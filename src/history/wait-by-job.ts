/**
 * Each job's waiting in a window of time, with the median and the 95th percentile of its runs'
 * waits there (each run's wait clipped to the window). Percentiles need every run's own figure,
 * so unlike the limit shares this reads one ledger row per run that waited in the window: the
 * runs whose waiting ended inside it (one index range on when they left; the stretches only of
 * those already queued when the window opened), plus the runs queued at its end. The cost
 * follows the runs that waited in the window, not the history's size.
 */
import type { Stretch, WaitLedger } from './wait-ledger.js';
import { clipStretches } from './wait-report.js';

export interface JobWaitData {
  jobName: string;
  /** Runs of this job that waited at some moment of the window. */
  runs: number;
  /** Run-seconds the job's runs spent queued inside the window. */
  waitSeconds: number;
  p50Seconds: number;
  p95Seconds: number;
}

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
  stillQueued: ReadonlyArray<{ jobName: string; stretches: readonly Stretch[] }>,
): JobWaitData[] {
  const waitsByJob = new Map<string, number[]>();
  const add = (jobName: string, waitedMs: number) => {
    if (waitedMs <= 0) return;
    const waits = waitsByJob.get(jobName) ?? [];
    waits.push(waitedMs);
    waitsByJob.set(jobName, waits);
  };
  // Left inside (from, to]: whole, unless the window's start cuts through the wait.
  for (const run of ledger.leftBetween(fromMs, toMs)) {
    add(
      run.jobName,
      run.firstMs >= fromMs ? run.waitedMs : clipStretches(ledger.stretchesOf(run.ord), fromMs, toMs).waitedMs,
    );
  }
  // Still queued at `to` (left since, or not yet): the part inside.
  for (const { ord } of ledger.queuedAt(toMs)) {
    add(ledger.jobOf(ord), clipStretches(ledger.stretchesOf(ord), fromMs, toMs).waitedMs);
  }
  for (const run of stillQueued) add(run.jobName, clipStretches(run.stretches, fromMs, toMs).waitedMs);

  const jobs: JobWaitData[] = [];
  for (const [jobName, waits] of waitsByJob) {
    waits.sort((a, b) => a - b);
    jobs.push({
      jobName,
      runs: waits.length,
      waitSeconds: waits.reduce((sum, ms) => sum + ms, 0) / 1000,
      p50Seconds: percentile(waits, 0.5) / 1000,
      p95Seconds: percentile(waits, 0.95) / 1000,
    });
  }
  return jobs.sort((a, b) => b.waitSeconds - a.waitSeconds || a.jobName.localeCompare(b.jobName));
}
