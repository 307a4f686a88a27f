/**
 * A what-if over the past: the window's recorded arrivals and run lengths driven through the
 * very decider the server uses (decide, then evolve), with a config change in force, on a copy
 * of the state as it was when the window opened. Pure: the caller reads the log; nothing here is
 * appended anywhere, and no clock is read (every command carries its replayed instant).
 */
import { evolve } from '../../projections/evolve.js';
import { deserializeState, serializeState } from '../../projections/serialize.js';
import type { RunRecord, State } from '../../projections/state.js';
import type { Command, ConfigChangeInput } from '../domain/commands.js';
import { decide } from '../domain/decide.js';
import { DomainError } from '../domain/errors.js';
import type { LoggedEvent } from '../domain/events.js';
import { isoClock } from './iso-clock.js';
import { type AgendaItem, agendaOf } from './replay-agenda.js';
import { ReplayedWaits } from './replay-waits.js';
import { summarizeWaits, type WaitSummary } from './wait-summary.js';

export const REPLAY_ACTOR = 'replay';

export interface ReplayInput {
  /** The live state right after the last event recorded before the window opened. */
  start: State;
  /** The events recorded after it, up to the end of the window, in log order. */
  events: readonly LoggedEvent[];
  change: ConfigChangeInput;
  fromMs: number;
  /** The end of the window (no later than now: the replay does not run into the future). */
  toMs: number;
  /** Keep the events the replay makes and return them (for tests and debugging; costs memory). */
  keepEvents?: boolean;
}

export interface ReplayResult extends WaitSummary {
  /** How many events the replay made. */
  replayedEvents: number;
  /** The events the replay made (never appended anywhere), when asked for with keepEvents. */
  events?: LoggedEvent[];
}

export const REPLAY_ASSUMPTIONS: readonly string[] = [
  'Arrivals are as recorded: each run is enqueued at the instant it was, with its tags, steps and priority.',
  'Each admitted run runs as long as it did: its start, heartbeats, step claims, cancellation and finish happen at the same delay after its admission as recorded.',
  "Each step holds its slot as long as it did: a release happens at the same delay after the slot's grant as recorded.",
  'A run that waited longer (or shorter) might have run differently; the replay cannot know, and keeps its recorded length.',
  'Runs canceled while queued are replayed as canceled at the same instant, admitted or not by then.',
  'A run admitted in the replay but never admitted in the record has no recorded length: it stays in progress until the window ends.',
  'Runs still running when the window ends keep their capacity until then; what happened after the window is not replayed.',
  'Timeouts happen at the same delay after admission as recorded; a run that never timed out does not time out in the replay.',
  'Limit edits recorded inside the window are replayed at their instant, and the change is applied again on top of each.',
  "Answers use the server's admission rule of today, with every rule and default the log records.",
];

interface Scheduled {
  atMs: number;
  order: bigint;
  command: Command;
}

const before = (a: Scheduled, b: Scheduled): boolean => a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);

/**
 * The commands to replay, by instant, then recorded log order: those at recorded instants (all
 * known at the start: sorted once, then read in turn) merged with those the replay times as it
 * goes (after an admission or a grant), which wait in a min-heap as small as the runs in progress.
 */
class Agenda {
  private readonly heap: Scheduled[] = [];
  private next = 0;

  constructor(private readonly fixed: Scheduled[]) {
    fixed.sort((a, b) => a.atMs - b.atMs || (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
  }

  push(item: Scheduled): void {
    const heap = this.heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i] as Scheduled, heap[parent] as Scheduled)) break;
      [heap[i], heap[parent]] = [heap[parent] as Scheduled, heap[i] as Scheduled];
      i = parent;
    }
  }

  pop(): Scheduled | undefined {
    const fixed = this.fixed[this.next];
    const timed = this.heap[0];
    if (fixed && (!timed || before(fixed, timed))) {
      this.next++;
      return fixed;
    }
    return this.popTimed();
  }

  private popTimed(): Scheduled | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l] as Scheduled, heap[m] as Scheduled)) m = l;
        if (r < heap.length && before(heap[r] as Scheduled, heap[m] as Scheduled)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m] as Scheduled, heap[i] as Scheduled];
        i = m;
      }
    }
    return top;
  }
}

export function replayWindow(input: ReplayInput): ReplayResult {
  const state = deserializeState(serializeState(input.start));
  const start = startOf(state);
  const items = agendaOf(input.events, start);
  const fixed: Scheduled[] = [];
  const afterAdmission = new Map<string, AgendaItem[]>();
  const afterGrant = new Map<string, AgendaItem[]>();
  for (const item of items) {
    if (item.when === 'at') fixed.push(item);
    else if (item.when === 'afterAdmission') {
      const since = start.admittedAt.get(item.runId);
      // Admitted before the window: the delay lands on the recorded instant.
      if (since !== undefined) fixed.push({ atMs: item.recordedMs, order: item.order, command: item.command });
      else push(afterAdmission, item.runId, item);
    } else push(afterGrant, `${item.runId}\u0000${item.stepKey}`, item);
  }
  const agenda = new Agenda(fixed);

  const waits = new ReplayedWaits(input.start, input.fromMs);
  const events: LoggedEvent[] | undefined = input.keepEvents ? [] : undefined;
  let replayedEvents = 0;
  // Commands come in time order, many at the same instant: its ISO form is made once.
  const isoOf = isoClock();
  let nowMs = Number.NaN;
  let now = '';
  const apply = (command: Command, atMs: number) => {
    if (atMs !== nowMs) {
      nowMs = atMs;
      now = isoOf(atMs);
    }
    let produced: ReturnType<typeof decide>;
    try {
      produced = decide(command, state, { now, newRunId: `replay-${state.runCount}`, fromLog: true });
    } catch (error) {
      // A command the replayed state refuses (a run the replay already ended) changes nothing,
      // as it would have changed nothing on the server.
      if (error instanceof DomainError) return;
      throw error;
    }
    for (const event of produced) {
      const logged = {
        type: event.type,
        data: event.data,
        revision: state.revision + 1n,
        at: now,
        actor: REPLAY_ACTOR,
      } as LoggedEvent;
      evolve(state, logged);
      waits.observe(logged);
      replayedEvents++;
      events?.push(logged);
      if (logged.type === 'RunAdmitted') {
        for (const item of afterAdmission.get(logged.data.runId) ?? []) {
          if (item.when === 'afterAdmission')
            agenda.push({ atMs: atMs + item.delayMs, order: item.order, command: item.command });
        }
        afterAdmission.delete(logged.data.runId);
      } else if (logged.type === 'StepSlotGranted') {
        const key = `${logged.data.runId}\u0000${logged.data.stepKey}`;
        const next = afterGrant.get(key)?.shift();
        if (next && next.when === 'afterGrant')
          agenda.push({ atMs: atMs + next.delayMs, order: next.order, command: next.command });
      }
    }
  };

  apply({ type: 'ChangeConcurrencyConfig', change: input.change }, input.fromMs);
  for (let next = agenda.pop(); next && next.atMs <= input.toMs; next = agenda.pop()) {
    apply(next.command, Math.max(next.atMs, input.fromMs));
    if (next.command.type === 'ChangeConcurrencyConfig' && next.command.change !== input.change) {
      apply({ type: 'ChangeConcurrencyConfig', change: input.change }, next.atMs);
    }
  }
  const summary = { ...summarizeWaits(waits.waits().values(), input.fromMs, input.toMs), replayedEvents };
  return events ? { ...summary, events } : summary;
}

function push<T>(map: Map<string, T[]>, key: string, item: T): void {
  const list = map.get(key);
  if (list) list.push(item);
  else map.set(key, [item]);
}

function startOf(state: State) {
  const admittedAt = new Map<string, number>();
  const queued = new Set<string>();
  for (const run of state.runs.values() as Iterable<RunRecord>) {
    if (run.status === 'QUEUED') queued.add(run.id);
    else if (run.admittedAt !== null) admittedAt.set(run.id, Date.parse(run.admittedAt));
  }
  const claims = new Map<string, number | null>();
  for (const [key, claim] of state.claims) if (claim.status !== 'RELEASED') claims.set(key, null);
  return { admittedAt, queued, claims };
}
