/**
 * Runs the history read model has not reached yet, while it catches up after a start. A command
 * that names a run the live state does not hold (Dagster's enqueues name their own run ids) asks
 * whether that id is a run of the past; the history answers only up to its position, so the
 * rest of the answer is kept here: every run enqueued in the log after the history's position,
 * as the live state took it in.
 *
 * A replay from the first event takes every run of the log in here, so it keeps no string or
 * object per run (retaining them cost a replay a fifth of its time): a hash of the id, the run's
 * enqueue order and the position of its RunEnqueued, all small numbers. A hash that matches is
 * confirmed by reading the event at that position, so "is this id a run?" is answered exactly;
 * an id whose hash matches no run is answered at once without reading anything.
 *
 * A run found that has finished is read from the history when it holds the finish, else from
 * the log: its own events only, from its RunEnqueued on, folded by the history's own code into
 * a history of that one run, so the record is the one the history will hold (a finished run's
 * record never changes).
 */

import type { RunRecord } from '../../projections/state.js';
import type { LoggedEvent } from '../domain/events.js';
import { isFinished } from '../domain/run.js';
import type { EventStore } from '../eventstore/store.js';
import { type HistoryStore, openHistoryStore } from '../history/history-store.js';
import { toLoggedEvent } from './recorded-events.js';

/** Events read from the log, at most, to find one run's finish before waiting for the history instead. */
const MOST_EVENTS_SCANNED = 200_000;
/** Events per read of that scan; the event loop turns between reads, so none holds it long. */
const PAGE = 2_000;
/** Answers kept (finished runs read from the log, ids found to be no run) so a retry does not read again. */
const KEPT = 1_000;

/** 30 bits of FNV-1a: a small integer, so the index holds no heap number per run. */
export function idHash(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return hash & 0x3fffffff;
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
  /** Enqueue order (seq) of a run taken in, by the hash of its id; `more` holds the rest of a hash's runs. */
  private readonly byHash = new Map<number, number>();
  private readonly more = new Map<number, number[]>();
  /** Position of each run's RunEnqueued, at its seq - firstSeq. */
  private positions: number[] = [];
  private firstSeq = 0;
  private readonly finished = new Map<string, RunRecord>();
  private readonly noRun = new Set<string>();

  constructor(
    private readonly store: EventStore,
    private readonly stream: string,
  ) {}

  /** Starts counting after the history's own runs (how many RunEnqueued it has written). */
  startAfter(historyRuns: number): void {
    this.clear();
    this.firstSeq = historyRuns;
  }

  /** A durable event taken in while the history has not reached it. */
  takenIn(event: LoggedEvent): void {
    if (event.type !== 'RunEnqueued') return;
    const seq = this.firstSeq + this.positions.length;
    this.positions.push(Number(event.revision));
    const hash = idHash(event.data.runId);
    const first = this.byHash.get(hash);
    if (first === undefined) this.byHash.set(hash, seq);
    else this.more.set(hash, [...(this.more.get(hash) ?? []), seq]);
    if (this.noRun.size > 0) this.noRun.delete(event.data.runId);
  }

  /** The history has caught up: it answers everything from now on. */
  clear(): void {
    this.byHash.clear();
    this.more.clear();
    this.positions = [];
    this.finished.clear();
    this.noRun.clear();
  }

  /**
   * What the history (at its position) and the runs taken in say of an id, without reading
   * the log; null when a run taken in has the id's hash and only reading its event can tell.
   */
  lookUpNow(runId: string, history: HistoryStore): PastRunAnswer | null {
    const kept = this.finished.get(runId);
    if (kept) return { known: true, run: kept };
    if (this.noRun.has(runId)) return { known: false };
    const inHistory = history.runCount();
    const candidates = this.candidates(runId).filter((seq) => seq >= inHistory);
    if (candidates.length > 0) return null;
    return this.fromHistory(runId, history);
  }

  /** As lookUpNow, reading the events a hash points at when it must. */
  async lookUp(runId: string, history: HistoryStore): Promise<PastRunAnswer> {
    const now = this.lookUpNow(runId, history);
    if (now) return now;
    const inHistory = history.runCount();
    for (const seq of this.candidates(runId)) {
      if (seq < inHistory) continue;
      const revision = BigInt(this.positions[seq - this.firstSeq] as number);
      const [event] = await this.store.readStream(this.stream, { fromRevision: revision, maxCount: 1 });
      if (event?.type === 'RunEnqueued' && (event.data as { runId?: unknown }).runId === runId) {
        return { known: true, run: null, revision, seq };
      }
    }
    // Another id's hash: the history (which may have moved on meanwhile) has the last word.
    const answer = this.fromHistory(runId, history);
    if (!answer.known) this.keep(this.noRun, runId);
    return answer;
  }

  private candidates(runId: string): number[] {
    const hash = idHash(runId);
    const first = this.byHash.get(hash);
    return first === undefined ? [] : [first, ...(this.more.get(hash) ?? [])];
  }

  private fromHistory(runId: string, history: HistoryStore): PastRunAnswer {
    const run = history.run(runId);
    if (!run) return { known: false };
    if (isFinished(run.status)) return { known: true, run };
    // A row the history has not finished yet: the run finished after the history's position
    // (the caller found it in no live state).
    return { known: true, run: null, revision: history.enqueuedPosition(runId) ?? -1n, seq: run.seq };
  }

  private keep<T>(kept: Set<T>, value: T): void {
    if (kept.size >= KEPT) kept.delete(kept.values().next().value as T);
    kept.add(value);
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
      await new Promise((resolve) => setImmediate(resolve));
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
