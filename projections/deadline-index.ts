/**
 * In-progress runs ordered by the times their deadlines count from, so that the next deadline
 * (and the runs past one) are found in O(log n) instead of by computing every run's deadlines
 * again on every command. Kept by the fold (evolve) from the events that move a deadline:
 * admission, start, cancellation request, heartbeat, claims (which end the root-step
 * allotment), finish. Rebuilt from the runs when a checkpoint is read.
 *
 * Timeouts that apply to every run alike (start, cancel, max runtime without a tag, the
 * allotment window) are not folded into the keys: the runs are ordered by when the timeout
 * starts counting, and the setting is added when asked. So an edit of a timeout moves nothing
 * here, and costs nothing however many runs are in progress.
 */
import sortedBtree from 'sorted-btree';
import { allotmentEndOf, leaseRenewedAt, maxRuntimeOf } from '../src/domain/deadlines.js';
import type { RunRecord } from './state.js';

type BTreeClass = typeof sortedBtree.default;
// Node's ESM loader hands over the CommonJS module object; vitest (vite) its default export.
const BTree: BTreeClass = (sortedBtree as { default?: BTreeClass }).default ?? (sortedBtree as unknown as BTreeClass);

/** A time (epoch ms) and the run's admission order, which breaks ties so every key is unique. */
type Key = readonly [at: number, order: number];

const byTimeThenSeq = (a: Key, b: Key): number => a[0] - b[0] || a[1] - b[1];

/** Runs ordered by one time each; a run is in it or not. */
export class TimeOrder {
  private readonly tree = new BTree<Key, string>(undefined, byTimeThenSeq);
  private readonly keys = new Map<string, Key>();

  get size(): number {
    return this.keys.size;
  }

  /** Puts the run at `at`, or takes it out when `at` is null. */
  set(runId: string, seq: number, at: number | null): void {
    const old = this.keys.get(runId);
    if (old !== undefined) {
      if (old[0] === at) return;
      this.tree.delete(old);
      this.keys.delete(runId);
    }
    if (at === null) return;
    const key: Key = [at, seq];
    this.tree.set(key, runId);
    this.keys.set(runId, key);
  }

  /** The earliest run and its time, or null when empty. */
  first(): { at: number; runId: string } | null {
    const key = this.tree.minKey();
    return key === undefined ? null : { at: key[0], runId: this.tree.get(key) as string };
  }

  /** Every run and its time, earliest first. */
  list(): Array<[runId: string, at: number]> {
    return this.tree.toArray().map(([key, runId]) => [runId, key[0]]);
  }

  /** The runs whose time is at or before `at`, earliest first. */
  *upTo(at: number): IterableIterator<string> {
    for (const [key, runId] of this.tree.entries()) {
      if (key[0] > at) return;
      yield runId;
    }
  }
}

/** The settings a deadline's length comes from, when it is the same for every run. */
export interface DeadlineSettings {
  startTimeoutSeconds: number;
  cancelTimeoutSeconds: number;
  maxRuntimeSeconds: number | null;
  startedRunAllotmentSeconds: number;
}

export class DeadlineIndex {
  /** STARTING runs by admission time (start timeout). */
  readonly starting = new TimeOrder();
  /** CANCELING runs by cancellation request time (cancel timeout). */
  readonly canceling = new TimeOrder();
  /** STARTED runs without a max-runtime tag, by start time (monitoring's max runtime). */
  readonly runningUntagged = new TimeOrder();
  /** STARTED runs with a max-runtime tag, by the deadline itself (start + the tag's seconds). */
  readonly runningTagged = new TimeOrder();
  /** Runs with a lease, by when it expires (last renewal + lease). */
  readonly leases = new TimeOrder();
  /** STARTED runs with root steps still promised a slot, by start time (allotment window). */
  readonly allotments = new TimeOrder();
  /**
   * Admission order of the runs in progress (a checkpoint keeps it: its in-progress list is in
   * admission order and is tracked in that order when read). Runs due together are ended in it.
   */
  private readonly admission = new Map<string, number>();
  private nextAdmission = 0;

  /** Puts the run where its status and times say now (out of every order once it is not in progress). */
  track(run: RunRecord): void {
    const inProgress = run.status === 'STARTING' || run.status === 'STARTED' || run.status === 'CANCELING';
    let order = this.admission.get(run.id);
    if (!inProgress) this.admission.delete(run.id);
    else if (order === undefined) this.admission.set(run.id, (order = this.nextAdmission++));
    const seq = order ?? 0;
    // Times count from the wall clock's reading then, moved by any forward step since (leases and
    // allotments already are, by leaseRenewedAt and allotmentEndOf).
    const started = run.status === 'STARTED' ? timeOf(run, run.startedAt) : null;
    const tag = started === null ? null : maxRuntimeOf(run);
    this.starting.set(run.id, seq, run.status === 'STARTING' ? timeOf(run, run.admittedAt) : null);
    this.canceling.set(run.id, seq, run.status === 'CANCELING' ? timeOf(run, run.cancelRequestedAt) : null);
    this.runningUntagged.set(run.id, seq, tag === null ? started : null);
    this.runningTagged.set(run.id, seq, started !== null && tag !== null ? started + tag.seconds * 1000 : null);
    const renewed = inProgress && run.leaseSeconds !== null ? leaseRenewedAt(run) : null;
    this.leases.set(run.id, seq, renewed === null ? null : renewed + (run.leaseSeconds as number) * 1000);
    this.allotments.set(run.id, seq, allotmentEndOf(run, 0));
  }

  /** What the index holds, without how it is stored: to compare two indexes. */
  view(): Record<string, unknown> {
    return {
      admissionOrder: [...this.admission].sort((a, b) => a[1] - b[1]).map(([runId]) => runId),
      starting: this.starting.list(),
      canceling: this.canceling.list(),
      runningUntagged: this.runningUntagged.list(),
      runningTagged: this.runningTagged.list(),
      leases: this.leases.list(),
      allotments: this.allotments.list(),
    };
  }

  /** The earliest run deadline (not the allotment window's end): its time and run, or null. */
  earliestDeadline(settings: DeadlineSettings): { at: number; runId: string } | null {
    return earliest([
      shifted(this.starting.first(), settings.startTimeoutSeconds),
      shifted(this.canceling.first(), settings.cancelTimeoutSeconds),
      settings.maxRuntimeSeconds === null ? null : shifted(this.runningUntagged.first(), settings.maxRuntimeSeconds),
      this.runningTagged.first(),
      this.leases.first(),
    ]);
  }

  /** When the first started run's allotment window ends, or null. */
  earliestAllotmentEnd(settings: DeadlineSettings): number | null {
    return shifted(this.allotments.first(), settings.startedRunAllotmentSeconds)?.at ?? null;
  }

  /**
   * The runs with a deadline or allotment end at or before `now`, in admission order: a
   * superset of those whose deadline passed (the caller checks each), found without looking
   * at the others.
   */
  due(now: number, settings: DeadlineSettings): string[] {
    const due = new Set<string>();
    const add = (order: TimeOrder, at: number) => {
      for (const runId of order.upTo(at)) due.add(runId);
    };
    add(this.starting, now - settings.startTimeoutSeconds * 1000);
    add(this.canceling, now - settings.cancelTimeoutSeconds * 1000);
    if (settings.maxRuntimeSeconds !== null) add(this.runningUntagged, now - settings.maxRuntimeSeconds * 1000);
    add(this.runningTagged, now);
    add(this.leases, now);
    add(this.allotments, now - settings.startedRunAllotmentSeconds * 1000);
    const order = (runId: string) => this.admission.get(runId) ?? 0;
    return [...due].sort((a, b) => order(a) - order(b));
  }
}

/** A recorded instant of the run as epoch ms, moved by any forward clock step since. */
function timeOf(run: RunRecord, at: string | null): number | null {
  return at === null ? null : Date.parse(at) + (run.clockShiftMs ?? 0);
}

function shifted(entry: { at: number; runId: string } | null, seconds: number): { at: number; runId: string } | null {
  return entry === null ? null : { at: entry.at + seconds * 1000, runId: entry.runId };
}

function earliest(entries: ReadonlyArray<{ at: number; runId: string } | null>): { at: number; runId: string } | null {
  let best: { at: number; runId: string } | null = null;
  for (const entry of entries) if (entry !== null && (best === null || entry.at < best.at)) best = entry;
  return best;
}
