/**
 * The runs behind a figure of a wait report, page by page: the runs a limit held inside a window
 * (optionally only while it held them alone), or the runs of a job that waited inside it, each
 * with its wait inside the window, longest first.
 *
 * Read from the wait ledger like the report itself: the runs that left the queue inside the
 * window come from one range of the limit's running totals (consecutive differences give each
 * run's part) or of the job's index, as numbers; only the runs the window's edges cut through
 * (queued when it opened or when it closed, or queued still) are read stretch by stretch and
 * clipped. Run ids are read for the page shown (and the runs tied with its last), not for every
 * run counted, so a page costs a number per run of the figure plus its own rows.
 */
import type { Stretch, WaitLedger, WaitLimit } from './wait-ledger.js';
import { clipStretches } from './wait-report.js';

/** What the list is of: a limit's holds (all, or only those where it held alone), or a job's runs. */
export type WaitingRunsOf = { limit: WaitLimit; alone: boolean } | { jobName: string };

/** Where a page starts: after the run with this wait (ms) and id, in the list's order. */
export interface WaitingRunsCursor {
  ms: number;
  runId: string;
}

export interface WaitingRunData {
  runId: string;
  jobName: string;
  /** Its wait inside the window: held by the limit (alone), or in all for a job's run. */
  waitMs: number;
}

export interface WaitingRunsPage {
  runs: WaitingRunData[];
  hasNextPage: boolean;
  /** Every run of the list, whatever the page. */
  totalCount: number;
}

interface Candidate {
  ms: number;
  ord?: number;
  runId?: string;
  jobName?: string;
}

/** The list's order: longest wait first, equal waits by run id (code unit order, as cursors compare). */
export function byWaitThenId(a: { ms: number; runId: string }, b: { ms: number; runId: string }): number {
  return b.ms - a.ms || (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0);
}

export function cursorOf(run: { waitMs: number; runId: string }): string {
  return `${run.waitMs}:${run.runId}`;
}

/** The cursor's parts, or null when it is not one this list gave. */
export function parseCursor(cursor: string): WaitingRunsCursor | null {
  const match = /^(\d{1,15}):([\s\S]+)$/.exec(cursor);
  return match ? { ms: Number(match[1]), runId: match[2] as string } : null;
}

/**
 * @param stillQueued the runs still queued in the history (not in the ledger yet), their open
 *   stretch ending now
 */
export function waitingRuns(
  ledger: WaitLedger,
  fromMs: number,
  toMs: number,
  of: WaitingRunsOf,
  page: { first: number; after: WaitingRunsCursor | null },
  stillQueued: ReadonlyArray<{ runId: string; jobName: string; stretches: readonly Stretch[] }>,
): WaitingRunsPage {
  const candidates = 'jobName' in of ? ofJob(ledger, fromMs, toMs, of.jobName, stillQueued) : ofLimit();

  function ofLimit(): Candidate[] {
    if (!('limit' in of)) return [];
    const id = ledger.knownLimitId(of.limit);
    if (id === null) return [];
    const part = (stretches: readonly Stretch[]) => {
      const mine = clipStretches(stretches, fromMs, toMs).byLimit.get(id);
      return mine ? (of.alone ? mine.soleMs : mine.heldMs) : 0;
    };
    const found: Candidate[] = [];
    const cutAtFrom = new Set<number>();
    for (const { ord, leftMs } of ledger.queuedAt(fromMs)) {
      if (leftMs > toMs) continue;
      cutAtFrom.add(ord);
      found.push({ ord, ms: part(ledger.stretchesOf(ord)) });
    }
    for (const run of ledger.heldBetween(id, fromMs, toMs)) {
      if (!cutAtFrom.has(run.ord)) found.push({ ord: run.ord, ms: of.alone ? run.soleMs : run.heldMs });
    }
    for (const { ord } of ledger.queuedAt(toMs)) found.push({ ord, ms: part(ledger.stretchesOf(ord)) });
    for (const run of stillQueued) found.push({ runId: run.runId, jobName: run.jobName, ms: part(run.stretches) });
    return found.filter((c) => c.ms > 0);
  }

  const named = (c: Candidate): Candidate & { runId: string; jobName: string } => {
    if (c.runId === undefined || c.jobName === undefined) {
      const run = ledger.runOf(c.ord as number);
      c.runId = run.runId;
      c.jobName = run.jobName;
    }
    return c as Candidate & { runId: string; jobName: string };
  };

  const after = page.after;
  const rest = after
    ? candidates.filter((c) => c.ms < after.ms || (c.ms === after.ms && named(c).runId > after.runId))
    : candidates;
  // The page and the run after it, with every run tied with that one: only those are named and
  // sorted as objects; the boundary comes from the waits alone, sorted as numbers.
  const waits = Float64Array.from(rest, (c) => c.ms).sort();
  const boundary = waits[waits.length - 1 - Math.min(page.first, waits.length - 1)] ?? Number.POSITIVE_INFINITY;
  const shown = rest
    .filter((c) => c.ms >= boundary)
    .map(named)
    .sort(byWaitThenId)
    .slice(0, page.first + 1);
  return {
    runs: shown.slice(0, page.first).map((c) => ({ runId: c.runId, jobName: c.jobName, waitMs: c.ms })),
    hasNextPage: shown.length > page.first,
    totalCount: candidates.length,
  };
}

/** A job's runs that waited inside the window: its index range, then the runs the edges cut. */
function ofJob(
  ledger: WaitLedger,
  fromMs: number,
  toMs: number,
  jobName: string,
  stillQueued: ReadonlyArray<{ runId: string; jobName: string; stretches: readonly Stretch[] }>,
): Candidate[] {
  const found: Candidate[] = ledger.wholeRunsOfJob(jobName, fromMs, toMs);
  const edge = (ord: number) => {
    const run = ledger.runOf(ord);
    if (run.jobName !== jobName) return;
    found.push({ ord, ...run, ms: clipStretches(ledger.stretchesOf(ord), fromMs, toMs).waitedMs });
  };
  for (const { ord, leftMs } of ledger.queuedAt(fromMs)) if (leftMs <= toMs) edge(ord);
  for (const { ord } of ledger.queuedAt(toMs)) edge(ord);
  for (const run of stillQueued) {
    if (run.jobName !== jobName) continue;
    found.push({ runId: run.runId, jobName, ms: clipStretches(run.stretches, fromMs, toMs).waitedMs });
  }
  return found.filter((c) => c.ms > 0);
}
