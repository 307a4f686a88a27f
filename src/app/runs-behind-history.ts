/**
 * Runs the history read model has not reached yet, while it catches up after a start. A command
 * that names a run the live state does not hold (Dagster's enqueues name their own run ids) asks
 * whether that id is a run of the past; the history answers only up to its position, so the
 * rest of the answer is kept here: every run enqueued in the log after the history's position,
 * as the live state took it in (its RunEnqueued's position and enqueue order). An entry goes as
 * soon as the catch-up writes that RunEnqueued to the history, so this holds what the history
 * still lacks and nothing once it has caught up.
 *
 * With both, "is this id a run?" is answered exactly at once. A run found that has finished is
 * read from the history when it holds the finish, else from the log: its own events only, from
 * its RunEnqueued on, folded by the history's own code into a history of that one run, so the
 * record is the one the history will hold (a finished run's record never changes).
 */

import type { RunRecord } from '../../projections/state.js';
import type { LoggedEvent } from '../domain/events.js';
import { isFinished } from '../domain/run.js';
import type { EventStore } from '../eventstore/store.js';
import { type HistoryStore, openHistoryStore } from '../history/history-store.js';
import { toLoggedEvent } from './recorded-events.js';

/** Events read from the log, at most, to find one run's finish before waiting for the history instead. */
const MOST_EVENTS_SCANNED = 200_000;
const PAGE = 5_000;
/** Finished runs read from the log, kept (they never change) so a retry does not read them again. */
const KEPT = 1_000;

interface Behind {
  /** Position of its RunEnqueued. */
  revision: bigint;
  /** Its enqueue order, as the history numbers runs. */
  seq: number;
}

/** What is known now of a run the live state does not hold. */
export type PastRunAnswer =
  /** No run has this id. */
  | { known: false }
  /** A run of the past, as the history holds it (or will). */
  | { known: true; run: RunRecord }
  /** A run with this id exists, but its record needs the log read (readFromLog) or the history. */
  | { known: true; run: null; revision: bigint; seq: number };

export class RunsBehindHistory {
  private readonly behind = new Map<string, Behind>();
  private readonly finished = new Map<string, RunRecord>();
  /** Enqueue order of the next run taken in (the history's count of runs, plus those taken in since). */
  private nextSeq = 0;

  constructor(
    private readonly store: EventStore,
    private readonly stream: string,
  ) {}

  /** Starts counting after the history's own runs (how many RunEnqueued it has written). */
  startAfter(historyRuns: number): void {
    this.nextSeq = historyRuns;
  }

  /** A durable event taken in while the history has not reached it. */
  takenIn(event: LoggedEvent): void {
    if (event.type !== 'RunEnqueued') return;
    this.behind.set(event.data.runId, { revision: event.revision, seq: this.nextSeq++ });
  }

  /** Events the catch-up wrote to the history: their runs are the history's to answer now. */
  written(events: readonly LoggedEvent[]): void {
    if (this.behind.size === 0) return;
    for (const event of events) if (event.type === 'RunEnqueued') this.behind.delete(event.data.runId);
  }

  /** The history has caught up: it answers everything from now on. */
  clear(): void {
    this.behind.clear();
    this.finished.clear();
  }

  /** What the history (at its position) and the log after it say of an id, at once. */
  lookUp(runId: string, history: HistoryStore): PastRunAnswer {
    const kept = this.finished.get(runId);
    if (kept) return { known: true, run: kept };
    const behind = this.behind.get(runId);
    if (behind) return { known: true, run: null, ...behind };
    const run = history.run(runId);
    if (!run) return { known: false };
    // A row the history has not finished yet: the run finished after the history's position
    // (the caller found it in no live state).
    if (isFinished(run.status)) return { known: true, run };
    return { known: true, run: null, revision: history.enqueuedPosition(runId) ?? -1n, seq: run.seq };
  }

  /**
   * A finished run's record from its own events in the log, up to `durable`; null when it is
   * not finished there or lies too far to read (then the history is waited for).
   */
  async readFromLog(
    runId: string,
    from: { revision: bigint; seq: number },
    durable: bigint,
  ): Promise<RunRecord | null> {
    if (from.revision < 0n) return null;
    const own: LoggedEvent[] = [];
    let finishedAt = -1;
    for (let next = from.revision, scanned = 0; next <= durable && scanned < MOST_EVENTS_SCANNED; ) {
      const page = await this.store.readStream(this.stream, {
        fromRevision: next,
        maxCount: Math.min(PAGE, Number(durable - next + 1n)),
      });
      if (page.length === 0) break;
      for (const recorded of page) {
        // Only its own events: a run's record follows from those alone.
        if ((recorded.data as { runId?: unknown } | null)?.runId !== runId) continue;
        const event = toLoggedEvent(recorded);
        own.push(event);
        if (event.type === 'RunFinished') finishedAt = own.length;
      }
      if (finishedAt !== -1) break;
      scanned += page.length;
      next = (page.at(-1) as { revision: bigint }).revision + 1n;
    }
    if (finishedAt === -1 || own[0]?.type !== 'RunEnqueued') return null;
    const one = openHistoryStore(':memory:');
    try {
      one.apply(own.slice(0, finishedAt));
      const run = one.run(runId);
      if (!run) return null;
      run.seq = from.seq;
      if (this.finished.size >= KEPT) this.finished.delete(this.finished.keys().next().value as string);
      this.finished.set(runId, run);
      return run;
    } finally {
      one.close();
    }
  }
}
