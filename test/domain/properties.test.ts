/**
 * Property tests: random command sequences against the pure core, every step checked against
 * the brute-force reference (test/support/reference.ts) and against a replay of the log.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Command, TagConcurrencyLimitInput } from '../../src/domain/commands.js';
import {
  DomainError,
  InvalidInputError,
  RunNotFoundError,
  TransitionNotAllowedError,
} from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { isFinished, type RunStatus } from '../../src/domain/run.js';
import { cmd, invariantProblems, readBack, replay, Scenario, snapshot } from '../support/scenario.js';

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
  fc.constant([{ key: 'team', value: 'a', applyLimitPerUniqueValue: true, limit: 1 }]),
  fc.constant([{ key: 'team', limit: -1 }]),
  fc.constant([{ key: '', limit: 1 }]),
);

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('enqueue' as const),
      reuse: fc.option(fc.nat(), { freq: 8 }),
      team: undef(fc.constantFrom('a', 'b', 'c')),
      db: undef(fc.constantFrom('x', 'y')),
      priorityTag: fc.option(fc.constantFrom('2', '-1', ' 1 ', 'high'), { nil: undefined, freq: 6 }),
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
    arbitrary: fc.record({ kind: fc.constant('granularity' as const), granularity: fc.constantFrom('OP', 'RUN') }),
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
    arbitrary: fc.record({ kind: fc.constant('advance' as const), seconds: fc.integer({ min: 1, max: 600 }) }),
  },
);

// ---------------------------------------------------------------------------------------------
// A small model of what each command must do, to check outcomes beyond the invariants.

type ErrorClass = typeof InvalidInputError | typeof RunNotFoundError | typeof TransitionNotAllowedError;
type Expected = { ok: true; status?: RunStatus | 'unchanged'; runId?: string } | { ok: false; error: ErrorClass };

function pickRun(s: Scenario, ref: RunRef): string {
  if (ref.ghost || s.state.runIds.length === 0) return 'ghost';
  return s.state.runIds[ref.pick % s.state.runIds.length]!;
}

function toCommand(s: Scenario, o: Op, nextId: () => string): { command: Command; expected: Expected } {
  const statusOf = (id: string) => s.state.runs.get(id)?.status;
  switch (o.kind) {
    case 'enqueue': {
      const reuse = o.reuse !== null && s.state.runIds.length > 0;
      const runId = reuse ? s.state.runIds[(o.reuse ?? 0) % s.state.runIds.length]! : nextId();
      const tags: Record<string, string> = {};
      if (o.team) tags.team = o.team;
      if (o.db) tags.db = o.db;
      if (o.priorityTag !== undefined) tags['dagster/priority'] = o.priorityTag;
      const command = cmd.enqueue(runId, {
        tags,
        steps: o.pools.map((p, i) => ({ key: `step-${i}`, pool: p })),
        priority: o.priority ?? null,
      });
      if (o.priorityTag === 'high') return { command, expected: { ok: false, error: InvalidInputError } };
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
      return { command: cmd.granularity(o.granularity), expected: { ok: true } };
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
  const s = new Scenario({ check: 'full', checkPurity: true });
  const enqueued = new Set<string>();
  let ids = 0;
  const nextId = () => `r${ids++}`;

  for (const [step, o] of ops.entries()) {
    if (o.kind === 'advance') {
      s.advance(o.seconds);
      continue;
    }
    const { command, expected } = toCommand(s, o, nextId);
    const where = `step ${step}: ${JSON.stringify(command)}`;
    const statusBefore = expected.ok && expected.runId ? s.state.runs.get(expected.runId)?.status : undefined;
    const logBefore = s.log.length;

    let events: DomainEvent[] | undefined;
    let error: unknown;
    if (expected.ok) {
      // Scenario.when runs the reference checks (a)-(c) and (e) while folding; any throw fails.
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
        const after = s.state.runs.get(expected.runId)?.status;
        if (expected.status === 'unchanged') {
          expect(events, `${where}: a repeated command appends nothing`).toEqual([]);
          expect(after, where).toBe(statusBefore);
        } else expect(after, where).toBe(expected.status);
      }
    }

    // (e) nothing lost: every enqueued run is in the state, and nothing else is.
    expect(new Set(s.state.runs.keys()), where).toEqual(enqueued);
    // (a)-(c) and (e) again, outside the harness, so a disabled check cannot hide a failure.
    expect(invariantProblems(s.state), where).toEqual([]);
    // (d) replaying the whole log gives the live state, also when read back through the schemas.
    const live = snapshot(s.state);
    expect(snapshot(replay(s.log)), `${where}: replay`).toEqual(live);
    expect(snapshot(replay(s.log.map(readBack))), `${where}: replay read back`).toEqual(live);
  }
  // Revisions are dense from 0.
  expect(s.log.map((e) => e.revision)).toEqual(s.log.map((_, i) => BigInt(i)));
}

/** SLUICE_PROPERTY_SCALE=10 runs ten times as many sequences (for a longer hunt). */
const scale = Number(process.env.SLUICE_PROPERTY_SCALE ?? 1);

describe('random command sequences', () => {
  it('keep every admission rule, every recorded hold, and replay to the live state', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        runSequence(ops);
      }),
      { numRuns: Math.round(800 * scale) },
    );
  });

  it('hold under tight limits with long queues', () => {
    // Fewer edits, more runs: long queues held by several limits at once.
    const busy = fc.array(
      fc.oneof(
        { weight: 6, arbitrary: op.filter((o) => o.kind === 'enqueue') },
        { weight: 5, arbitrary: op.filter((o) => o.kind === 'finish' || o.kind === 'start') },
        { weight: 2, arbitrary: op },
      ),
      { minLength: 20, maxLength: 120 },
    );
    fc.assert(
      fc.property(busy, (ops) => {
        runSequence([{ kind: 'maxRuns', limit: 3 }, ...ops]);
      }),
      { numRuns: Math.round(150 * scale) },
    );
  });
});
