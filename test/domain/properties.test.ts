/**
 * Property tests: random command sequences against the pure core, every step checked against
 * the brute-force reference (test/support/reference.ts) and against a replay of the log.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evolve } from '../../projections/evolve.js';
import { initialState } from '../../projections/state.js';
import type { Command, TagConcurrencyLimitInput } from '../../src/domain/commands.js';
import {
  DomainError,
  InvalidInputError,
  RunNotFoundError,
  TransitionNotAllowedError,
} from '../../src/domain/errors.js';
import type { DomainEvent, LoggedEvent } from '../../src/domain/events.js';
import { isFinished, type RunStatus } from '../../src/domain/run.js';
import { comparableWaits, ReferenceWaits } from '../support/reference-waits.js';
import {
  admissionViolations,
  cmd,
  invariantProblems,
  readBack,
  replay,
  Scenario,
  snapshot,
  stateDifference,
} from '../support/scenario.js';

// ---------------------------------------------------------------------------------------------
// Operations, generated before the run ids they refer to exist: a `pick` chooses among the
// runs enqueued so far at execution time, `ghost` names a run that does not exist.

type RunRef = { pick: number; ghost: boolean };
type Op =
  | {
      kind: 'enqueue';
      reuse: number | null;
      team: string | undefined;
      db: string | undefined;
      priorityTag: string | undefined;
      pools: Array<string | null>;
      priority: number | undefined;
    }
  | ({ kind: 'start' } & RunRef)
  | ({ kind: 'finish'; status: string } & RunRef)
  | ({ kind: 'terminate'; force: boolean | undefined } & RunRef)
  | { kind: 'maxRuns'; limit: number }
  | { kind: 'tagLimits'; limits: TagConcurrencyLimitInput[] }
  | { kind: 'granularity'; granularity: string }
  | { kind: 'defaultPoolLimit'; limit: number | null }
  | { kind: 'poolLimit'; pool: string; limit: number }
  | { kind: 'deletePoolLimit'; pool: string }
  | { kind: 'advance'; seconds: number };

const undef = <T>(arb: fc.Arbitrary<T>, freq = 3) => fc.option(arb, { nil: undefined, freq });
const runRef = { pick: fc.nat(), ghost: fc.integer({ min: 0, max: 9 }).map((n) => n === 0) };
const pool = fc.constantFrom('p1', 'p2', 'p3');
const smallLimit = fc.integer({ min: 0, max: 3 });

const tagLimit: fc.Arbitrary<TagConcurrencyLimitInput> = fc.oneof(
  fc.record({ key: fc.constant('team'), value: fc.constantFrom('a', 'b', 'c'), limit: smallLimit }),
  fc.record({ key: fc.constant('db'), value: fc.constantFrom('x', 'y'), limit: smallLimit }),
  fc.record({ key: fc.constantFrom('team', 'db'), limit: smallLimit }),
  fc.record({ key: fc.constantFrom('team', 'db'), applyLimitPerUniqueValue: fc.constant(true), limit: smallLimit }),
);
const tagLimitIdentity = (l: TagConcurrencyLimitInput) =>
  JSON.stringify([l.key, l.value ?? null, l.applyLimitPerUniqueValue ?? false]);

const validTagLimits = fc.uniqueArray(tagLimit, { selector: tagLimitIdentity, maxLength: 4 });
/** Occasionally a list the validator must refuse. */
const badTagLimits: fc.Arbitrary<TagConcurrencyLimitInput[]> = fc.oneof(
  validTagLimits.filter((ls) => ls.length > 0).map((ls) => [...ls, { ...ls[0]!, limit: 1 }]),
  fc.constant<TagConcurrencyLimitInput[]>([{ key: 'team', value: 'a', applyLimitPerUniqueValue: true, limit: 1 }]),
  fc.constant<TagConcurrencyLimitInput[]>([{ key: 'team', limit: -1 }]),
  fc.constant<TagConcurrencyLimitInput[]>([{ key: '', limit: 1 }]),
);

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('enqueue' as const),
      reuse: fc.oneof({ weight: 12, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }),
      team: undef(fc.constantFrom('a', 'b', 'c')),
      db: undef(fc.constantFrom('x', 'y')),
      priorityTag: fc.oneof(
        { weight: 10, arbitrary: fc.constant(undefined) },
        { weight: 3, arbitrary: fc.constantFrom('2', '-1', ' 1 ') },
        { weight: 1, arbitrary: fc.constant('high') },
      ),
      pools: fc.array(fc.option(pool, { freq: 5 }), { maxLength: 3 }),
      priority: fc.option(fc.integer({ min: -1, max: 2 }), { nil: undefined, freq: 2 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('start' as const), ...runRef }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('finish' as const),
      ...runRef,
      status: fc.oneof(
        { weight: 12, arbitrary: fc.constantFrom('SUCCESS', 'FAILURE', 'CANCELED') },
        { weight: 1, arbitrary: fc.constantFrom('QUEUED', 'STARTED', 'garbage') },
      ),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('terminate' as const), ...runRef, force: undef(fc.boolean(), 4) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('maxRuns' as const), limit: fc.integer({ min: -2, max: 4 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('tagLimits' as const),
      limits: fc.oneof({ weight: 8, arbitrary: validTagLimits }, { weight: 1, arbitrary: badTagLimits }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('granularity' as const),
      granularity: fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom('OP', 'RUN') },
        { weight: 1, arbitrary: fc.constant('STEP') },
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('defaultPoolLimit' as const),
      limit: fc.option(fc.integer({ min: -1, max: 3 }), { nil: null }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('poolLimit' as const), pool, limit: fc.integer({ min: -1, max: 3 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deletePoolLimit' as const), pool }) },
  {
    weight: 1,
    // Up to a second at a time: a sequence never reaches a run-monitoring deadline (180 s), which
    // is tested on its own; here the clock only makes wait intervals and times differ.
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      seconds: fc.integer({ min: 1, max: 1000 }).map((ms) => ms / 1000),
    }),
  },
);

// ---------------------------------------------------------------------------------------------
// A small model of what each command must do, to check outcomes beyond the invariants.

type ErrorClass = typeof InvalidInputError | typeof RunNotFoundError | typeof TransitionNotAllowedError;
type Expected = { ok: true; status?: RunStatus | 'unchanged'; runId?: string } | { ok: false; error: ErrorClass };

function pickRun(s: Scenario, ref: RunRef): string {
  if (ref.ghost || s.runIds.length === 0) return 'ghost';
  return s.runIds[ref.pick % s.runIds.length]!;
}

function toCommand(s: Scenario, o: Op, nextId: () => string): { command: Command; expected: Expected } {
  const statusOf = (id: string) => (s.runIds.includes(id) ? s.status(id) : undefined);
  switch (o.kind) {
    case 'enqueue': {
      const reuse = o.reuse !== null && s.runIds.length > 0;
      const runId = reuse ? s.runIds[(o.reuse ?? 0) % s.runIds.length]! : nextId();
      const tags: Record<string, string> = {};
      if (o.team) tags.team = o.team;
      if (o.db) tags.db = o.db;
      if (o.priorityTag !== undefined) tags['dagster/priority'] = o.priorityTag;
      const command = cmd.enqueue(runId, {
        tags,
        steps: o.pools.map((p, i) => ({ key: `step-${i}`, pool: p })),
        priority: o.priority ?? null,
      });
      // A tag that is not an integer counts as 0, as in Dagster (the run notes it was ignored).
      return { command, expected: { ok: true, runId, status: reuse ? 'unchanged' : undefined } };
    }
    case 'start': {
      const runId = pickRun(s, o);
      const status = statusOf(runId);
      const command = cmd.start(runId);
      if (status === undefined) return { command, expected: { ok: false, error: RunNotFoundError } };
      if (status === 'STARTING') return { command, expected: { ok: true, runId, status: 'STARTED' } };
      if (status === 'STARTED') return { command, expected: { ok: true, runId, status: 'unchanged' } };
      return { command, expected: { ok: false, error: TransitionNotAllowedError } };
    }
    case 'finish': {
      const runId = pickRun(s, o);
      const status = statusOf(runId);
      const command = cmd.finish(runId, o.status);
      if (!['SUCCESS', 'FAILURE', 'CANCELED'].includes(o.status)) {
        return { command, expected: { ok: false, error: InvalidInputError } };
      }
      if (status === undefined) return { command, expected: { ok: false, error: RunNotFoundError } };
      if (status === 'QUEUED') return { command, expected: { ok: false, error: TransitionNotAllowedError } };
      if (isFinished(status)) {
        return status === o.status
          ? { command, expected: { ok: true, runId, status: 'unchanged' } }
          : { command, expected: { ok: false, error: TransitionNotAllowedError } };
      }
      return { command, expected: { ok: true, runId, status: o.status as RunStatus } };
    }
    case 'terminate': {
      const runId = pickRun(s, o);
      const status = statusOf(runId);
      const command = cmd.terminate(runId, o.force);
      if (status === undefined) return { command, expected: { ok: false, error: RunNotFoundError } };
      if (isFinished(status)) return { command, expected: { ok: false, error: TransitionNotAllowedError } };
      if (status === 'QUEUED' || o.force) return { command, expected: { ok: true, runId, status: 'CANCELED' } };
      if (status === 'CANCELING') return { command, expected: { ok: true, runId, status: 'unchanged' } };
      return { command, expected: { ok: true, runId, status: 'CANCELING' } };
    }
    case 'maxRuns':
      return {
        command: cmd.maxRuns(o.limit),
        expected: o.limit < -1 ? { ok: false, error: InvalidInputError } : { ok: true },
      };
    case 'tagLimits': {
      const ids = o.limits.map(tagLimitIdentity);
      const bad =
        new Set(ids).size !== ids.length ||
        o.limits.some((l) => l.limit < 0 || l.key === '' || (l.applyLimitPerUniqueValue && l.value != null));
      return {
        command: cmd.tagLimits(...o.limits),
        expected: bad ? { ok: false, error: InvalidInputError } : { ok: true },
      };
    }
    case 'granularity':
      return {
        command: cmd.granularity(o.granularity),
        expected: o.granularity === 'STEP' ? { ok: false, error: InvalidInputError } : { ok: true },
      };
    case 'defaultPoolLimit':
      return {
        command: cmd.defaultPoolLimit(o.limit),
        expected: o.limit !== null && o.limit < 0 ? { ok: false, error: InvalidInputError } : { ok: true },
      };
    case 'poolLimit':
      return {
        command: cmd.poolLimit(o.pool, o.limit),
        expected: o.limit < 0 ? { ok: false, error: InvalidInputError } : { ok: true },
      };
    case 'deletePoolLimit':
      return { command: cmd.deletePoolLimit(o.pool), expected: { ok: true } };
    case 'advance':
      throw new Error('advance is not a command');
  }
}

/** Runs a sequence, checking everything after every step. */
function runSequence(ops: Op[]): void {
  // No purity check here: a decide that touched the state would show as a live state that its own
  // log does not replay to, checked below.
  const s = new Scenario({ check: 'decisions' });
  const enqueued = new Set<string>();
  let ids = 0;
  const nextId = () => `r${ids++}`;
  const readBackState = initialState();
  let readBackCount = 0;
  const referenceWaits = new ReferenceWaits();

  for (const [step, o] of ops.entries()) {
    if (o.kind === 'advance') {
      s.advance(o.seconds);
      continue;
    }
    const { command, expected } = toCommand(s, o, nextId);
    const where = `step ${step}: ${JSON.stringify(command)}`;
    const statusBefore =
      expected.ok && expected.runId && s.runIds.includes(expected.runId) ? s.status(expected.runId) : undefined;
    const logBefore = s.log.length;

    let events: DomainEvent[] | undefined;
    let error: unknown;
    if (expected.ok) {
      // Scenario.when checks each admission (a) and decision against the reference; any throw fails.
      events = s.when(command);
    } else {
      error = s.rejects(command); // checks the state is unchanged; rethrows non-domain errors
      expect(error, where).toBeInstanceOf(DomainError);
      expect(error, where).toBeInstanceOf(expected.error);
      expect(s.log.length, where).toBe(logBefore);
    }

    if (events && expected.ok) {
      if (command.type === 'EnqueueRun' && expected.runId) {
        if (expected.status === 'unchanged') expect(events, `${where}: re-enqueue appends nothing`).toEqual([]);
        else {
          expect(events[0]?.type, where).toBe('RunEnqueued');
          enqueued.add(expected.runId);
        }
      } else if (expected.runId) {
        const after = s.status(expected.runId);
        if (expected.status === 'unchanged') {
          expect(events, `${where}: a repeated command appends nothing`).toEqual([]);
          expect(after, where).toBe(statusBefore);
        } else expect(after, where).toBe(expected.status);
      }
    }

    // (e) nothing lost: every enqueued run is known (live, or finished in the history), and nothing
    // else is; the live state holds exactly the runs that are not finished.
    expect(new Set(s.runIds), where).toEqual(enqueued);
    expect(new Set(s.state.runs.keys()), where).toEqual(new Set(s.runIds.filter((id) => !isFinished(s.status(id)))));
    // Waits derived from the log equal a model that records every queued run's reasons after every command.
    referenceWaits.record(s);
    for (const id of referenceWaits.changed()) {
      expect(comparableWaits(s.waits(id)), `${where}: waits of ${id}`).toEqual(comparableWaits(referenceWaits.of(id)));
    }
    // (b), (c), (e): no queued run could go, blockedBy is right, indexes match a recount.
    expect(invariantProblems(s.state), where).toEqual([]);
    // (d) replaying the whole log gives the live state; so does folding the events as a store
    // hands them back (JSON, then the zod schemas). Compared field by field, diffed on failure.
    const replayed = replay(s.log);
    if (stateDifference(replayed, s.state) !== null) {
      expect(snapshot(replayed), `${where}: replay differs at ${stateDifference(replayed, s.state)}`).toEqual(
        snapshot(s.state),
      );
    }
    for (const event of s.log.slice(readBackCount)) evolve(readBackState, readBack(event));
    readBackCount = s.log.length;
    if (stateDifference(readBackState, s.state) !== null) {
      expect(snapshot(readBackState), `${where}: read-back replay differs`).toEqual(snapshot(s.state));
    }
  }
  // Revisions are dense from 0.
  expect(s.log.map((e) => e.revision)).toEqual(s.log.map((_, i) => BigInt(i)));
  for (const id of referenceWaits.all()) {
    expect(comparableWaits(s.waits(id)), `waits of ${id} at the end`).toEqual(comparableWaits(referenceWaits.of(id)));
  }
}

/**
 * Limits to start from: tight, so that runs queue, and of every kind, so that runs are held by
 * several limits at once. Sequences then edit them at random.
 */
const setup: fc.Arbitrary<Op[]> = fc
  .tuple(
    fc.integer({ min: 0, max: 4 }),
    fc.uniqueArray(tagLimit, { selector: tagLimitIdentity, minLength: 1, maxLength: 4 }),
    fc.constantFrom('OP', 'RUN'),
    fc.option(fc.integer({ min: 0, max: 3 }), { nil: null }),
    fc.uniqueArray(fc.tuple(pool, smallLimit), { selector: ([p]) => p, maxLength: 3 }),
  )
  .map(([maxRuns, limits, granularity, defaultPoolLimit, pools]): Op[] => [
    { kind: 'maxRuns', limit: maxRuns },
    { kind: 'tagLimits', limits },
    { kind: 'granularity', granularity },
    { kind: 'defaultPoolLimit', limit: defaultPoolLimit },
    ...pools.map(([p, limit]): Op => ({ kind: 'poolLimit', pool: p, limit })),
  ]);

const sequence = (min: number, max: number, ops: fc.Arbitrary<Op> = op) =>
  fc
    .tuple(setup, fc.array(ops, { minLength: min, maxLength: max, size: 'max' }))
    .map(([first, rest]) => [...first, ...rest]);

/** SLUICE_PROPERTY_SCALE=10 runs ten times as many sequences (for a longer hunt). */
const scale = Number(process.env.SLUICE_PROPERTY_SCALE ?? 1);
// Generous: a loaded CI machine runs the 250 sequences several times slower than an idle one.
const timeout = 240_000 * scale;

describe('random command sequences', () => {
  it(
    'keep every admission rule, every recorded hold, and replay to the live state',
    () => {
      fc.assert(
        fc.property(sequence(1, 60), (ops) => {
          runSequence(ops);
        }),
        { numRuns: Math.round(250 * scale) },
      );
    },
    timeout,
  );

  it(
    'hold under tight limits with long queues',
    () => {
      // Fewer edits, more runs: long queues held by several limits at once.
      const busy = fc.oneof(
        { weight: 6, arbitrary: op.filter((o) => o.kind === 'enqueue') },
        { weight: 5, arbitrary: op.filter((o) => o.kind === 'finish' || o.kind === 'start') },
        { weight: 2, arbitrary: op },
      );
      fc.assert(
        fc.property(sequence(20, 120, busy), (ops) => {
          runSequence(ops);
        }),
        { numRuns: Math.round(30 * scale) },
      );
    },
    timeout,
  );
});

describe('the reference checker', () => {
  // Hand-written logs that break a rule: the checks the properties rely on must see it.
  const log = (...events: DomainEvent[]): LoggedEvent[] =>
    events.map((e, i) => ({ ...e, revision: BigInt(i), at: '2024-01-01T00:00:00.000Z', actor: 'test' }) as LoggedEvent);
  const enqueued = (runId: string, team?: string): DomainEvent => ({
    type: 'RunEnqueued',
    data: {
      runId,
      jobName: 'job',
      tags: team ? [{ key: 'team', value: team }] : [],
      steps: [],
      priority: 0,
      maxConcurrentSteps: null,
      leaseSeconds: null,
    },
  });
  const admitted = (runId: string): DomainEvent => ({ type: 'RunAdmitted', data: { runId } });

  it('catches an admission over a limit', () => {
    const state = replay(
      log(
        {
          type: 'TagConcurrencyLimitsSet',
          data: { limits: [{ key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 1 }] },
        },
        enqueued('a', 'x'),
        admitted('a'),
        enqueued('b', 'y'),
      ),
    );
    expect(admissionViolations(state, 'b')).toHaveLength(1);
    expect(admissionViolations(state, 'a')).toHaveLength(1); // not QUEUED
  });

  it('catches a queued run that had room', () => {
    expect(invariantProblems(replay(log(enqueued('a'))))).toEqual([expect.stringMatching(/every limit .* has room/)]);
  });

  it('catches a held run with no recorded hold, and a stale one', () => {
    const held = replay(log({ type: 'MaxConcurrentRunsSet', data: { limit: 0 } }, enqueued('a')));
    expect(invariantProblems(held)).toEqual([expect.stringMatching(/run a recorded holds/)]);
    const stale = replay(
      log({ type: 'MaxConcurrentRunsSet', data: { limit: 1 } }, enqueued('a'), admitted('a'), enqueued('b', 'x'), {
        type: 'RunBlocked',
        data: {
          runId: 'b',
          reasons: [
            {
              kind: 'TAG_LIMIT',
              key: 'team',
              value: null,
              pool: null,
              perUniqueValue: false,
              limit: 0,
              inUse: 0,
              message: 'tag team (any value): 0 of 0 runs in progress',
            },
          ],
        },
      }),
    );
    expect(invariantProblems(stale)).toEqual([expect.stringMatching(/run b recorded holds/)]);
  });
});
