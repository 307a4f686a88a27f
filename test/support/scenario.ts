/**
 * A given/when/then harness over the pure core: a State, a fake clock and a revision counter.
 * `when(command)` runs `decide`, folds the events in with `evolve` (giving each a revision, a
 * time and an actor) and returns the events. Unless told otherwise it checks each command
 * against the brute-force reference in ./reference.ts while folding:
 *
 * - every event validates against its zod schema, as when read back from a store;
 * - the command's events are its own events, then its RunAdmitted decisions, then at most one
 *   RunBlocked (the enqueued run's first hold), then at most one LimitStatesChanged;
 * - (a) before each RunAdmitted, every limit applying to the run has count < limit;
 * - the RunAdmitted runs are exactly, in order, what a from-scratch pass over the queue admits;
 * - a RunBlocked comes exactly when the run the command enqueues has to wait, naming every full
 *   limit with its limit and count;
 * - afterwards every queued run's recorded holds (the full limits of its counters) are exactly
 *   the limits holding it, counts included;
 * - afterwards, the invariants of reference.invariantProblems hold.
 */

import { DeadlineIndex } from '../../projections/deadline-index.js';
import { evolve } from '../../projections/evolve.js';
import { PriorityQueue } from '../../projections/priority-queue.js';
import { type Decision, initialState, type RunRecord, type State, type WaitInterval } from '../../projections/state.js';
import { currentHolds } from '../../src/domain/admission.js';
import type { Command, EnqueueRunInput, TagConcurrencyLimitInput } from '../../src/domain/commands.js';
import { type Constraint, constraintIdentity } from '../../src/domain/constraints.js';
import { decide } from '../../src/domain/decide.js';
import { DomainError } from '../../src/domain/errors.js';
import { CURRENT_SCHEMA_VERSION, type DomainEvent, type LoggedEvent, parseEvent } from '../../src/domain/events.js';
import type { RunStatus } from '../../src/domain/run.js';
import { type HistoryStore, openHistoryStore } from '../../src/history/history-store.js';
import { admissionViolations, fullLimitsOf, invariantProblems, referenceAdmissions } from './reference.js';

export * from './reference.js';

/** A reference check failed: the core broke a rule. Never a DomainError. */
export class ReferenceCheckError extends Error {
  override readonly name = 'ReferenceCheckError';
}

export type CheckLevel =
  /** Decisions checked while folding, and every invariant after each command. */
  | 'full'
  /** Decisions checked while folding only (cheaper for large queues). */
  | 'decisions'
  | 'off';

export interface ScenarioOptions {
  /** ISO time of the first command; default 2024-01-01T00:00:00.000Z. */
  start?: string;
  actor?: string;
  check?: CheckLevel;
  /** Also check that decide leaves the state untouched (costs a snapshot per command). */
  checkPurity?: boolean;
  /**
   * false: the first command turns the root-step hold off (Dagster's `enabled: false`), for
   * tests of how admitted runs' steps share slots, which the hold would keep queued. Default on.
   */
  rootStepHold?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Commands, built tersely

export interface EnqueueOptions {
  jobName?: string;
  /** `{team: 'a'}` or a list of tags, kept in the order given. */
  tags?: Record<string, string> | Array<{ key: string; value: string }>;
  /** Steps as `'key@pool'` / `'key'` strings or full objects. */
  steps?: Array<string | { key: string; pool?: string | null; priority?: number | null; dependsOn?: string[] }>;
  /** Shorthand: one step per pool listed (keys s0, s1, ...). */
  pools?: string[];
  priority?: number | null;
  maxConcurrentSteps?: number | null;
  leaseSeconds?: number | null;
}

function enqueueInput(runId: string | null, o: EnqueueOptions = {}): EnqueueRunInput {
  const tags = o.tags === undefined ? [] : Array.isArray(o.tags) ? o.tags : Object.entries(o.tags);
  const steps = [
    ...(o.steps ?? []).map((s) => {
      if (typeof s !== 'string') return s;
      const [key = s, pool = null] = s.split('@');
      return { key, pool };
    }),
    ...(o.pools ?? []).map((pool, i) => ({ key: `s${i}`, pool })),
  ];
  return {
    runId,
    jobName: o.jobName ?? 'job',
    tags: tags.map((t) => (Array.isArray(t) ? { key: t[0], value: t[1] } : t)),
    steps,
    priority: o.priority ?? null,
    maxConcurrentSteps: o.maxConcurrentSteps ?? null,
    leaseSeconds: o.leaseSeconds ?? null,
  };
}

export const cmd = {
  enqueue: (runId: string | null, options?: EnqueueOptions): Command => ({
    type: 'EnqueueRun',
    input: enqueueInput(runId, options),
  }),
  enqueueRaw: (input: EnqueueRunInput): Command => ({ type: 'EnqueueRun', input }),
  start: (runId: string): Command => ({ type: 'MarkRunStarted', runId }),
  finish: (runId: string, status = 'SUCCESS'): Command => ({ type: 'MarkRunFinished', runId, status }),
  terminate: (runId: string, force?: boolean): Command => ({ type: 'TerminateRun', runId, force: force ?? null }),
  maxRuns: (limit: number): Command => ({ type: 'SetMaxConcurrentRuns', limit }),
  tagLimits: (...limits: TagConcurrencyLimitInput[]): Command => ({ type: 'SetTagConcurrencyLimits', limits }),
  granularity: (granularity: string): Command => ({ type: 'SetPoolGranularity', granularity }),
  defaultPoolLimit: (limit: number | null): Command => ({ type: 'SetDefaultPoolLimit', limit }),
  poolLimit: (pool: string, limit: number): Command => ({ type: 'SetPoolLimit', pool, limit }),
  deletePoolLimit: (pool: string): Command => ({ type: 'DeletePoolLimit', pool }),
};

// ---------------------------------------------------------------------------------------------
// Folding and snapshots

/** An event as a store would hand it back: JSON round trip, then the zod schema of its type. */
export function readBack(event: LoggedEvent): LoggedEvent {
  const data = JSON.parse(JSON.stringify(event.data)) as unknown;
  const parsed = parseEvent(event.type, CURRENT_SCHEMA_VERSION, data, `test event at ${event.revision}`);
  return { ...parsed, revision: event.revision, at: event.at, actor: event.actor } as LoggedEvent;
}

/** Folds logged events into a fresh initialState(). */
export function replay(events: Iterable<LoggedEvent>): State {
  let state = initialState();
  for (const event of events) state = evolve(state, event);
  return state;
}

/**
 * A plain, comparable picture of a state, whatever fields it has: maps and sets as sorted
 * entries (their order means nothing, as for toEqual), objects with sorted keys, bigints as
 * strings, and the run queue as its runs in admission order.
 */
export function snapshot(state: State): unknown {
  return plain(state);
}

function plain(value: unknown): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Map)
    return sortedBy(
      [...value].map(([k, v]) => [plain(k), plain(v)]),
      ([k]) => k,
    );
  if (value instanceof Set) return sortedBy([...value].map(plain), (v) => v);
  if (value instanceof PriorityQueue) return { inOrder: [...value.inOrder()], size: value.size };
  if (value instanceof DeadlineIndex) return value.view();
  const object = value as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(object)
      .sort()
      .map((k) => [k, plain(object[k])]),
  );
}

function sortedBy<T>(items: T[], keyOf: (item: T) => unknown): T[] {
  const keyed = items.map((item) => {
    const key = keyOf(item);
    return { item, key: typeof key === 'string' ? key : JSON.stringify(key) };
  });
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map(({ item }) => item);
}

/**
 * Where two states first differ (a path such as `runs.r1.status`), or null when they are
 * deep-equal in the sense of snapshot(). Much cheaper than comparing snapshots.
 */
export function stateDifference(a: State, b: State): string | null {
  return difference(a, b, 'state');
}

function difference(a: unknown, b: unknown, path: string): string | null {
  if (a === b) return null;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return path;
  if (a instanceof PriorityQueue || b instanceof PriorityQueue) {
    if (!(a instanceof PriorityQueue && b instanceof PriorityQueue) || a.size !== b.size) return path;
    return difference([...a.inOrder()], [...b.inOrder()], `${path}.inOrder`);
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return path;
    for (const [k, v] of a) {
      if (!b.has(k)) return `${path}.${String(k)}`;
      const d = difference(v, b.get(k), `${path}.${String(k)}`);
      if (d !== null) return d;
    }
    return null;
  }
  if (a instanceof Set || b instanceof Set) {
    if (!(a instanceof Set && b instanceof Set) || a.size !== b.size) return path;
    for (const v of a) if (!b.has(v)) return `${path}{${String(v)}}`;
    return null;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return path;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return path;
  for (const k of ka) {
    if (!Object.hasOwn(b, k)) return `${path}.${k}`;
    const d = difference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    if (d !== null) return d;
  }
  return null;
}

/** The snapshot as one string: equal fingerprints, equal states. */
export function fingerprint(state: State): string {
  return JSON.stringify(snapshot(state));
}

const isDecision = (e: DomainEvent) =>
  e.type === 'RunAdmitted' || e.type === 'RunBlocked' || e.type === 'LimitStatesChanged';
const constraintKey = (c: Constraint) => `${constraintIdentity(c)}=${c.limit}/${c.inUse}`;

function fail(problems: string[], command: Command): never {
  throw new ReferenceCheckError(`${command.type}: ${problems.join('\n')}`);
}

// ---------------------------------------------------------------------------------------------
// The scenario

export class Scenario {
  state: State = initialState();
  readonly log: LoggedEvent[] = [];
  readonly actor: string;
  private clock: number;
  private nextRunId = 0;
  /** How much each command is checked against the reference; may be changed between commands. */
  check: CheckLevel;
  checkPurity: boolean;

  constructor(options: ScenarioOptions = {}) {
    this.clock = Date.parse(options.start ?? '2024-01-01T00:00:00.000Z');
    this.actor = options.actor ?? 'test';
    this.check = options.check ?? 'full';
    this.checkPurity = options.checkPurity ?? false;
    this.setup =
      options.rootStepHold === false
        ? [{ type: 'ChangeConcurrencyConfig', change: { rootStepHold: { enabled: false } } }]
        : [];
  }

  /** Commands run before the first one (after every field, a subclass's too, is set up). */
  private setup: Command[];

  private runSetup(): void {
    for (const first of this.setup.splice(0)) this.when(first);
  }

  /** The fake clock, as an ISO string. */
  get now(): string {
    return new Date(this.clock).toISOString();
  }

  advance(seconds: number): this {
    this.clock += Math.round(seconds * 1000);
    return this;
  }

  /** Runs commands for their effect (the "given" part); throws whatever they throw. */
  given(...commands: Command[]): this {
    for (const command of commands) this.when(command);
    return this;
  }

  /** Runs one command: decide, then fold its events in. Returns the events. */
  when(command: Command): DomainEvent[] {
    this.runSetup();
    const before = this.checkPurity ? fingerprint(this.state) : null;
    const events = decide(command, this.state, { now: this.now, newRunId: `auto-${++this.nextRunId}` });
    if (before !== null && fingerprint(this.state) !== before) {
      fail(['decide changed the state it was given'], command);
    }
    this.fold(command, events);
    return events;
  }

  /**
   * Runs a command that must be refused with a domain error; checks the state is unchanged and
   * returns the error. Throws if the command succeeds or throws anything else.
   */
  rejects(command: Command): DomainError {
    this.runSetup();
    const before = fingerprint(this.state);
    const logLength = this.log.length;
    let events: DomainEvent[];
    try {
      events = this.when(command);
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      if (fingerprint(this.state) !== before || this.log.length !== logLength) {
        fail(['a refused command changed the state'], command);
      }
      return error;
    }
    throw new Error(`${command.type} was expected to be refused, but gave ${events.map((e) => e.type).join(', ')}`);
  }

  /** The history read model, fed every event as a server feeds it. */
  readonly history: HistoryStore = openHistoryStore(':memory:');
  /** Every run id in enqueue order. */
  readonly runIds: string[] = [];

  private fold(command: Command, events: DomainEvent[]): void {
    const checking = this.check !== 'off';
    const logged = events.map(
      (event, i): LoggedEvent =>
        ({ ...event, revision: this.state.revision + 1n + BigInt(i), at: this.now, actor: this.actor }) as LoggedEvent,
    );
    if (checking) {
      for (const event of logged) readBack(event); // throws UnreadableEventError if invalid
      const firstDecision = events.findIndex(isDecision);
      const decisions = firstDecision === -1 ? [] : events.slice(firstDecision);
      if (decisions.some((e) => !isDecision(e))) fail(['a decision comes before a command event'], command);
      const order = decisions.map((e) => (e.type === 'RunAdmitted' ? 0 : e.type === 'RunBlocked' ? 1 : 2));
      if (order.some((o, i) => i > 0 && o < (order[i - 1] as number))) {
        fail(['decisions are not RunAdmitted, then RunBlocked, then LimitStatesChanged'], command);
      }
      const blockedCount = events.filter((e) => e.type === 'RunBlocked').length;
      const limitCount = events.filter((e) => e.type === 'LimitStatesChanged').length;
      if (blockedCount > 1 || limitCount > 1) {
        fail([`${blockedCount} RunBlocked and ${limitCount} LimitStatesChanged in one command`], command);
      }
    }
    let checkedAdmissions = false;
    let checkedBlocks = false;
    for (const event of logged) {
      if (checking && !checkedAdmissions && isDecision(event)) {
        checkedAdmissions = true;
        this.checkAdmissions(command, events);
      }
      if (checking && !checkedBlocks && event.type === 'RunBlocked') {
        checkedBlocks = true;
        this.checkBlocks(command, events);
      }
      if (checking && event.type === 'RunAdmitted') {
        const problems = admissionViolations(this.state, event.data.runId);
        if (problems.length > 0) fail(problems, command);
      }
      this.state = evolve(this.state, event);
      this.log.push(event);
      if (event.type === 'RunEnqueued') this.runIds.push(event.data.runId);
    }
    this.history.apply(logged);
    if (checking && !checkedAdmissions) this.checkAdmissions(command, events);
    if (checking && !checkedBlocks) this.checkBlocks(command, events);
    if (this.check === 'full') {
      const problems = invariantProblems(this.state);
      if (problems.length > 0) fail(problems, command);
    }
  }

  /** The RunAdmitted decisions are what a from-scratch pass admits, in order. */
  private checkAdmissions(command: Command, events: DomainEvent[]): void {
    const expected = referenceAdmissions(this.state);
    const actual = events.flatMap((e) => (e.type === 'RunAdmitted' ? [e.data.runId] : []));
    if (JSON.stringify(expected) !== JSON.stringify(actual)) {
      fail([`admitted ${JSON.stringify(actual)}, a from-scratch pass admits ${JSON.stringify(expected)}`], command);
    }
  }

  /** A RunBlocked comes for the enqueued run exactly when it waits, with every limit holding it. */
  private checkBlocks(command: Command, events: DomainEvent[]): void {
    // Called before the command's RunBlocked is folded in, after its admissions are.
    const enqueued = events.find((e) => e.type === 'RunEnqueued');
    const run = enqueued?.type === 'RunEnqueued' ? this.state.runs.get(enqueued.data.runId) : undefined;
    const stale =
      run?.status === 'QUEUED'
        ? [
            {
              run,
              expected: fullLimitsOf(this.state, run).map(({ limit, inUse }) => ({ ...limit, inUse, message: '' })),
            },
          ]
        : [];
    const blocked = events.flatMap((e) => (e.type === 'RunBlocked' ? [e.data] : []));
    const problems: string[] = [];
    const expectedIds = stale.map((s) => s.run.id);
    const actualIds = blocked.map((b) => b.runId);
    if (JSON.stringify(expectedIds) !== JSON.stringify(actualIds)) {
      problems.push(
        `RunBlocked for ${JSON.stringify(actualIds)}, the holds changed for ${JSON.stringify(expectedIds)}`,
      );
    }
    for (const b of blocked) {
      const s = stale.find((x) => x.run.id === b.runId);
      if (!s) continue;
      const want = s.expected.map(constraintKey).sort();
      const got = b.reasons.map(constraintKey).sort();
      if (JSON.stringify(want) !== JSON.stringify(got)) {
        problems.push(`RunBlocked ${b.runId} names ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
      }
      if (b.reasons.some((r) => r.message.trim() === '')) problems.push(`RunBlocked ${b.runId} has an empty message`);
    }
    if (problems.length > 0)
      fail(
        problems.map((p) => p.replaceAll('\u0000', '|')),
        command,
      );
  }

  // -------------------------------------------------------------------------------------------
  // Reading the state

  /** A run, live or finished (from the history). */
  run(runId: string): RunRecord {
    const run = this.state.runs.get(runId) ?? this.state.recentlyFinished.get(runId) ?? this.history.run(runId);
    if (!run) throw new Error(`no run ${runId} in the scenario`);
    return run;
  }

  status(runId: string): RunStatus {
    return this.run(runId).status;
  }

  /** Statuses of the given runs (or every run), keyed by id. */
  statuses(...runIds: string[]): Record<string, RunStatus> {
    const ids = runIds.length > 0 ? runIds : this.runIds;
    return Object.fromEntries(ids.map((id) => [id, this.status(id)]));
  }

  /** Ids of the runs in a status, in enqueue order. */
  runsIn(status: RunStatus): string[] {
    return this.runIds.filter((id) => this.status(id) === status);
  }

  /** QUEUED run ids in admission order, as the queue holds them. */
  queue(): string[] {
    return [...this.state.queue.inOrder()];
  }

  /** What holds a run now (the invariants check it equals what the log records). */
  blockedBy(runId: string): Constraint[] {
    return currentHolds(this.state, this.run(runId));
  }

  /** Its waits, derived by the history read model. */
  waits(runId: string): WaitInterval[] {
    return this.history.waitsOf(runId);
  }

  /** Decisions of one run (recorded and derived), or all recorded decisions, from the history. */
  decisions(runId?: string): Decision[] {
    return this.history.decisions({ runId: runId ?? null, limit: Number.MAX_SAFE_INTEGER });
  }

  /** In-progress runs counted under a count key (see domain/constraints), 0 when none. */
  count(key: string): number {
    return this.state.counts.get(key) ?? 0;
  }
}

/** JSON.stringify replacer for bigint revisions. */
export function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${value}n` : value;
}

/**
 * Event types of a list of events, for terse assertions. Limit-state records are left out: the
 * scenario checks them after every command (recorded holds equal the reference's), and
 * `limitStates` shows them where a test is about them.
 */
export const types = (events: readonly DomainEvent[]): string[] =>
  events.filter((e) => e.type !== 'LimitStatesChanged').map((e) => e.type);

/** `type:runId` of each event that names a run, else its type (limit-state records left out). */
export const summary = (events: readonly DomainEvent[]): string[] =>
  events
    .filter((e) => e.type !== 'LimitStatesChanged')
    .map((e) => ('runId' in e.data ? `${e.type}:${e.data.runId}` : e.type));

/** The counters a command recorded, as `counter: full limits (count)`, e.g. `team=a: TAG_LIMIT 1/1`. */
export const limitStates = (events: readonly DomainEvent[]): string[] =>
  events.flatMap((e) =>
    e.type === 'LimitStatesChanged'
      ? e.data.counters.map((c) => {
          const name =
            c.pool !== null
              ? `${c.rootSteps ? 'root steps in ' : ''}pool ${c.pool}`
              : c.key === null
                ? 'runs'
                : c.value === null
                  ? c.key
                  : `${c.key}=${c.value}`;
          const full = c.full.map((f) => `${f.kind} ${f.inUse}/${f.limit}`).join(', ');
          return `${name}: ${full || 'room'}`;
        })
      : [],
  );
