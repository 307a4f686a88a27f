/**
 * Helpers for the audit and time-travel tests: random histories of commands (generated before
 * the runs they refer to exist, resolved against the state when they run), random config
 * changes, and `views`, a plain, deep-cloned picture of everything a reader can see of a state
 * (config, queue with recorded holds, runs in progress, pools, every run's audit trail), so a
 * state of the past can be compared with what the live state showed at that revision.
 */
import fc from 'fast-check';
import { evolve } from '../../projections/evolve.js';
import { poolViews } from '../../projections/pools.js';
import { initialState, type RunRecord, type State } from '../../projections/state.js';
import { currentHolds } from '../../src/domain/admission.js';
import type { Command, ConfigChangeInput, TagConcurrencyLimitInput } from '../../src/domain/commands.js';
import { decide } from '../../src/domain/decide.js';
import { DomainError } from '../../src/domain/errors.js';
import type { DomainEvent, LoggedEvent } from '../../src/domain/events.js';
import { readBack } from './scenario.js';

// ---------------------------------------------------------------------------------------------
// Operations

/** `pick` chooses among the runs enqueued so far when the operation runs. */
export type Op =
  | {
      kind: 'enqueue';
      team: string | null;
      env: string | null;
      priority: number | null;
      steps: Array<{ pool: string | null; priority: number }>;
      maxSteps: number | null;
    }
  | { kind: 'start'; pick: number }
  | { kind: 'finish'; pick: number; status: 'SUCCESS' | 'FAILURE' | 'CANCELED' }
  | { kind: 'terminate'; pick: number; force: boolean }
  | { kind: 'claim'; pick: number; step: number }
  | { kind: 'release'; pick: number; step: number }
  | { kind: 'maxRuns'; limit: number }
  | { kind: 'tagLimits'; limits: TagConcurrencyLimitInput[] }
  | { kind: 'granularity'; granularity: 'OP' | 'RUN' }
  | { kind: 'defaultPoolLimit'; limit: number | null }
  | { kind: 'poolLimit'; pool: string; limit: number }
  | { kind: 'deletePoolLimit'; pool: string }
  | { kind: 'change'; change: ConfigChangeInput }
  | { kind: 'tick'; seconds: number }
  | { kind: 'expire' }
  | { kind: 'monitoring'; start: number; cancel: number };

export const POOLS = ['db', 'gpu', 'etl'] as const;
const pool = fc.constantFrom(...POOLS);
const smallLimit = fc.integer({ min: 0, max: 3 });
const pick = fc.nat({ max: 1_000 });

export const tagLimit: fc.Arbitrary<TagConcurrencyLimitInput> = fc.oneof(
  fc.record({ key: fc.constant('team'), value: fc.constantFrom('a', 'b'), limit: smallLimit }),
  fc.record({ key: fc.constantFrom('team', 'env'), limit: smallLimit }),
  fc.record({ key: fc.constant('env'), value: fc.constant('prod'), limit: smallLimit }),
  fc.record({ key: fc.constantFrom('team', 'env'), applyLimitPerUniqueValue: fc.constant(true), limit: smallLimit }),
);
const tagLimitIdentity = (l: TagConcurrencyLimitInput) =>
  JSON.stringify([l.key, l.value ?? null, l.applyLimitPerUniqueValue ?? false]);
export const tagLimits = fc.uniqueArray(tagLimit, { selector: tagLimitIdentity, maxLength: 3 });

/** A valid change of any subset of fields; a pool limit of null removes it. */
export const configChange: fc.Arbitrary<ConfigChangeInput> = fc.record(
  {
    maxConcurrentRuns: fc.integer({ min: -1, max: 4 }),
    tagConcurrencyLimits: tagLimits,
    poolGranularity: fc.constantFrom('OP', 'RUN'),
    defaultPoolLimit: fc.option(smallLimit, { nil: null }),
    poolLimits: fc.uniqueArray(fc.record({ pool, limit: fc.option(smallLimit, { nil: null }) }), {
      selector: (p) => p.pool,
      maxLength: 3,
    }),
  },
  { requiredKeys: [] },
);

export interface OpOptions {
  /** Include clock ticks, deadline sweeps and monitoring edits (default true). */
  time?: boolean;
}

export function opArbitrary(options: OpOptions = {}): fc.Arbitrary<Op> {
  const time = options.time ?? true;
  const arbitraries: Array<fc.WeightedArbitrary<Op>> = [
    {
      weight: 10,
      arbitrary: fc.record({
        kind: fc.constant('enqueue' as const),
        team: fc.option(fc.constantFrom('a', 'b'), { nil: null }),
        env: fc.option(fc.constantFrom('prod', 'dev'), { nil: null, freq: 2 }),
        priority: fc.option(fc.integer({ min: -1, max: 2 }), { nil: null }),
        steps: fc.array(
          fc.record({
            pool: fc.option(pool, { nil: null, freq: 4 }),
            priority: fc.integer({ min: -1, max: 1 }),
          }),
          { maxLength: 3 },
        ),
        maxSteps: fc.option(fc.integer({ min: 1, max: 2 }), { nil: null, freq: 3 }),
      }),
    },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('start' as const), pick }) },
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant('finish' as const),
        pick,
        status: fc.constantFrom('SUCCESS' as const, 'FAILURE' as const, 'CANCELED' as const),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('terminate' as const), pick, force: fc.boolean() }) },
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('claim' as const), pick, step: pick }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('release' as const), pick, step: pick }) },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant('maxRuns' as const), limit: fc.integer({ min: -1, max: 4 }) }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('tagLimits' as const), limits: tagLimits }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('granularity' as const), granularity: fc.constantFrom('OP', 'RUN') }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('defaultPoolLimit' as const),
        limit: fc.option(smallLimit, { nil: null }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('poolLimit' as const), pool, limit: smallLimit }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('deletePoolLimit' as const), pool }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('change' as const), change: configChange }) },
  ];
  if (time) {
    arbitraries.push(
      {
        weight: 2,
        arbitrary: fc.record({ kind: fc.constant('tick' as const), seconds: fc.integer({ min: 1, max: 120 }) }),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const) }) },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('monitoring' as const),
          start: fc.integer({ min: 30, max: 120 }),
          cancel: fc.integer({ min: 30, max: 120 }),
        }),
      },
    );
  }
  return fc.oneof(...arbitraries);
}

/**
 * Limits to start from, tight so that runs queue and are held by several limits at once;
 * histories then edit them at random.
 */
export const setupCommands: fc.Arbitrary<Command[]> = fc
  .tuple(fc.integer({ min: 1, max: 3 }), tagLimits, fc.constantFrom('OP', 'RUN'), fc.option(smallLimit, { nil: null }))
  .map(([maxRuns, limits, granularity, defaultPoolLimit]): Command[] => [
    { type: 'SetMaxConcurrentRuns', limit: maxRuns },
    { type: 'SetTagConcurrencyLimits', limits },
    { type: 'SetPoolGranularity', granularity },
    { type: 'SetDefaultPoolLimit', limit: defaultPoolLimit },
    { type: 'SetPoolLimit', pool: 'db', limit: 1 },
  ]);

/** The command an operation stands for in this state, or null when it has nothing to act on. */
export function commandOf(op: Op, state: State, newRunId: () => string): Command | null {
  // Runs the live state still knows, finished ones included, in enqueue order.
  const known = [...state.runs.values(), ...state.recentlyFinished.values()].sort((a, b) => a.seq - b.seq);
  const picked = (n: number): RunRecord | null => known[n % Math.max(1, known.length)] ?? null;
  switch (op.kind) {
    case 'enqueue': {
      const tags: Array<{ key: string; value: string }> = [];
      if (op.team !== null) tags.push({ key: 'team', value: op.team });
      if (op.env !== null) tags.push({ key: 'env', value: op.env });
      return {
        type: 'EnqueueRun',
        input: {
          runId: newRunId(),
          jobName: 'job',
          tags,
          steps: op.steps.map((s, i) => ({ key: `s${i}`, pool: s.pool, priority: s.priority })),
          priority: op.priority,
          maxConcurrentSteps: op.maxSteps,
        },
      };
    }
    case 'start': {
      const run = picked(op.pick);
      return run && { type: 'MarkRunStarted', runId: run.id };
    }
    case 'finish': {
      const run = picked(op.pick);
      return run && { type: 'MarkRunFinished', runId: run.id, status: op.status };
    }
    case 'terminate': {
      const run = picked(op.pick);
      return run && { type: 'TerminateRun', runId: run.id, force: op.force };
    }
    case 'claim':
    case 'release': {
      const run = picked(op.pick);
      const step = run?.steps[op.step % Math.max(1, run.steps.length)];
      if (!run || !step) return null;
      return { type: op.kind === 'claim' ? 'ClaimStepSlot' : 'ReleaseStepSlot', runId: run.id, stepKey: step.key };
    }
    case 'maxRuns':
      return { type: 'SetMaxConcurrentRuns', limit: op.limit };
    case 'tagLimits':
      return { type: 'SetTagConcurrencyLimits', limits: op.limits };
    case 'granularity':
      return { type: 'SetPoolGranularity', granularity: op.granularity };
    case 'defaultPoolLimit':
      return { type: 'SetDefaultPoolLimit', limit: op.limit };
    case 'poolLimit':
      return { type: 'SetPoolLimit', pool: op.pool, limit: op.limit };
    case 'deletePoolLimit':
      return { type: 'DeletePoolLimit', pool: op.pool };
    case 'change':
      return { type: 'ChangeConcurrencyConfig', change: op.change };
    case 'expire':
      return { type: 'ExpireDeadlines' };
    case 'monitoring':
      return { type: 'SetRunMonitoring', startTimeoutSeconds: op.start, cancelTimeoutSeconds: op.cancel };
    case 'tick':
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// What a reader sees

/**
 * Everything a reader can see of a state, as a deep copy taken now (the state's records move
 * on with later events). Orders are kept where the API shows them in that order.
 */
export function views(state: State) {
  const run = (id: string) => (state.runs.get(id) ?? state.recentlyFinished.get(id)) as RunRecord;
  const byKey = <V>(entries: Iterable<[string, V]>) => [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return structuredClone({
    revision: state.revision,
    lastEventAt: state.lastEventAt,
    config: { ...state.config, poolLimits: byKey(state.config.poolLimits) },
    monitoring: state.monitoring,
    queue: [...state.queue.inOrder()].map((id) => ({ id, blockedBy: currentHolds(state, run(id)) })),
    inProgress: [...state.inProgress]
      .map(run)
      .sort((a, b) => a.seq - b.seq)
      .map((r) => ({ id: r.id, status: r.status })),
    pools: poolViews(state),
    runs: [...state.runs.values(), ...state.recentlyFinished.values()].map((r) => {
      const id = r.id;
      return {
        id,
        status: r.status,
        priority: r.priority,
        tags: r.tags,
        pools: r.pools,
        enqueuedAt: r.enqueuedAt,
        admittedAt: r.admittedAt,
        startedAt: r.startedAt,
        cancelRequestedAt: r.cancelRequestedAt,
        finishedAt: r.finishedAt,
        finishReason: r.finishReason,
        stepsHolding: r.stepsHolding,
        activeClaims: [...r.activeClaims].sort(),
        blockedBy: currentHolds(state, r),
      };
    }),
    runCount: state.runCount,
    held: byKey(state.held),
    claims: byKey(state.claims).map(([, c]) => c),
  });
}

export type Views = ReturnType<typeof views>;

/** A fake clock: `read` moves it one second on at every reading; `advance` jumps. */
export class FakeClock {
  private ms: number;
  constructor(start = '2024-06-01T00:00:00.000Z') {
    this.ms = Date.parse(start);
  }
  readonly read = (): Date => {
    const now = new Date(this.ms);
    this.ms += 1000;
    return now;
  };
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

// ---------------------------------------------------------------------------------------------
// The pure core, driven by operations

/** What a command did: its events, or the domain's refusal (as `Name: message`). */
export type Outcome = { events: DomainEvent[] } | { refused: string };

/**
 * A state driven by decide + evolve with a clock one second further on at every command; events
 * are folded in as a store hands them back (JSON, then their zod schemas).
 */
export class Lane {
  state: State = initialState();
  /** Every event folded into the state, in order, as the log would hold it. */
  readonly log: LoggedEvent[] = [];
  private ms: number;
  private nextRun = 0;

  constructor(start = '2024-06-01T00:00:00.000Z') {
    this.ms = Date.parse(start);
  }

  get now(): string {
    return new Date(this.ms).toISOString();
  }

  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }

  /** Decides and folds a command; a domain refusal is an outcome, anything else throws. */
  run(command: Command): Outcome {
    this.ms += 1000;
    let events: DomainEvent[];
    try {
      events = decide(command, this.state, { now: this.now, newRunId: `auto-${this.nextRun}` });
    } catch (error) {
      if (error instanceof DomainError) return { refused: `${error.name}: ${error.message}` };
      throw error;
    }
    for (const event of events) {
      const logged = { ...event, revision: this.state.revision + 1n, at: this.now, actor: 'test' } as LoggedEvent;
      this.log.push(logged);
      evolve(this.state, readBack(logged));
    }
    return { events };
  }

  /** Runs an operation: a tick moves the clock, others become commands (or nothing). */
  play(op: Op): Outcome | null {
    if (op.kind === 'tick') {
      this.advance(op.seconds);
      return null;
    }
    const command = commandOf(op, this.state, () => `r${this.nextRun++}`);
    return command ? this.run(command) : null;
  }

  /** A copy of this lane at the same time, with another state (a round trip, say). */
  fork(state: State): Lane {
    const lane = new Lane();
    lane.ms = this.ms;
    lane.nextRun = this.nextRun;
    lane.state = state;
    return lane;
  }
}

/** A lane after setup commands and a history of operations. */
export function laneAfter(setup: readonly Command[], ops: readonly Op[]): Lane {
  const lane = new Lane();
  for (const command of setup) lane.run(command);
  for (const op of ops) lane.play(op);
  return lane;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/** Lets a checkpoint that a command made due be written (they are written after it answers). */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Where checkpoints fall, by the rule of app/sluice: one is written at a moment (after each
 * event while replaying, after each command while serving) once the log has grown by the
 * spacing since the last one: checkpointEvery events, or a quarter of the log when more.
 */
export function checkpointModel(moments: Iterable<bigint>, every: number, last = -1n): bigint[] {
  const written: bigint[] = [];
  for (const revision of moments) {
    const quarter = (last + 1n) / 4n;
    const spacing = quarter > BigInt(every) ? quarter : BigInt(every);
    if (revision - last >= spacing) {
      written.push(revision);
      last = revision;
    }
  }
  return written;
}

/** Revisions from `from` to `to`, both included: the moments of a replay. */
export function revisionsBetween(from: bigint, to: bigint): bigint[] {
  const list: bigint[] = [];
  for (let r = from; r <= to; r++) list.push(r);
  return list;
}
