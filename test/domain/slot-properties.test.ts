/**
 * Property tests for step slots, leases and timeouts: random sequences of enqueues (steps in
 * pools p1 / p2 / none, random step priorities and maxConcurrentSteps, some with leases), starts,
 * claims, releases, run ends, pool limit edits, clock steps with ExpireDeadlines and heartbeats.
 *
 * SlotScenario checks after every command: each StepSlotGranted against a brute-force recount
 * of the state just before it was folded in (pool limit, run step limit), the order of grants,
 * that no ended run holds or waits, that every waiting claim is held by a full limit (and records
 * exactly those limits), and that a replay of the log equals the live state. On top, a small
 * model here checks each command's outcome (error class, granted or not, heartbeat recorded or
 * not, which runs a deadline ended).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { initialState, type RunRecord, type State } from '../../projections/state.js';
import type { Command } from '../../src/domain/commands.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { isFinished, isInProgress } from '../../src/domain/run.js';
import { comparableWaits, ReferenceWaits } from '../support/reference-waits.js';
import { cmd, replay } from '../support/scenario.js';
import {
  claimOf,
  grantViolations,
  orderViolations,
  referenceHolds,
  SlotScenario,
  slotCmd,
  slotFingerprint,
  slotInvariantProblems,
} from '../support/slots.js';

// ---------------------------------------------------------------------------------------------
// Operations, generated before the runs they refer to exist: `pick` chooses among the runs
// enqueued so far when the operation runs.

type Pool = 'p1' | 'p2' | null;
type Op =
  | {
      kind: 'enqueue';
      /** `after`: the step depends on the one before it (so is not a root step). */
      steps: Array<{ pool: Pool; priority: number; after: boolean }>;
      priority: number;
      maxSteps: number | null;
      lease: number | null;
      maxRuntime: number | null;
    }
  | { kind: 'start'; pick: number }
  | { kind: 'claim'; pick: number; step: number }
  /** A claim naming a pool, for a declared step or for a new one it adds (`sluice slot`). */
  | { kind: 'claimIn'; pick: number; step: number; pool: 'p1' | 'p2' | 'p3' }
  | { kind: 'release'; pick: number; step: number }
  | { kind: 'finish'; pick: number; status: 'SUCCESS' | 'FAILURE' | 'CANCELED' }
  | { kind: 'terminate'; pick: number; force: boolean }
  | { kind: 'heartbeat'; pick: number }
  | { kind: 'poolLimit'; pool: 'p1' | 'p2'; limit: number }
  | { kind: 'deletePoolLimit'; pool: 'p1' | 'p2' }
  | { kind: 'defaultPoolLimit'; limit: number | null }
  | { kind: 'granularity'; granularity: 'OP' | 'RUN' }
  | { kind: 'maxRuns'; limit: number }
  | { kind: 'monitoring'; start: number; cancel: number }
  | { kind: 'tick'; seconds: number }
  | { kind: 'hold'; enabled: boolean; runBuffer: number; allotment: number };

/** Even: among the runs in progress (when there are any); odd: among every run. */
const pick = fc.nat({ max: 1_000 });
const step = fc.nat({ max: 1_000 });
const poolName = fc.constantFrom<'p1' | 'p2'>('p1', 'p2');

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('enqueue' as const),
      steps: fc.array(
        fc.record({
          pool: fc.constantFrom<Pool>('p1', 'p1', 'p2', null),
          priority: fc.oneof(
            { weight: 3, arbitrary: fc.constant(0) },
            { weight: 2, arbitrary: fc.integer({ min: -2, max: 2 }) },
          ),
          after: fc.boolean(),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      priority: fc.integer({ min: -1, max: 2 }),
      maxSteps: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
      lease: fc.option(fc.integer({ min: 10, max: 120 }), { nil: null, freq: 2 }),
      maxRuntime: fc.option(fc.integer({ min: 30, max: 600 }), { nil: null, freq: 4 }),
    }),
  },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('start' as const), pick }) },
  { weight: 14, arbitrary: fc.record({ kind: fc.constant('claim' as const), pick, step }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('claimIn' as const),
      pick,
      step,
      pool: fc.constantFrom<'p1' | 'p2' | 'p3'>('p1', 'p2', 'p3'),
    }),
  },
  { weight: 7, arbitrary: fc.record({ kind: fc.constant('release' as const), pick, step }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('finish' as const),
      pick,
      status: fc.constantFrom<'SUCCESS' | 'FAILURE' | 'CANCELED'>('SUCCESS', 'FAILURE', 'CANCELED'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('terminate' as const), pick, force: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('heartbeat' as const), pick }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('poolLimit' as const),
      pool: poolName,
      limit: fc.integer({ min: 0, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deletePoolLimit' as const), pool: poolName }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('defaultPoolLimit' as const),
      limit: fc.option(fc.integer({ min: 0, max: 3 }), { nil: null }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('granularity' as const),
      granularity: fc.constantFrom<'OP' | 'RUN'>('OP', 'RUN'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('maxRuns' as const), limit: fc.integer({ min: -1, max: 5 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('monitoring' as const),
      start: fc.integer({ min: 20, max: 300 }),
      cancel: fc.integer({ min: 20, max: 300 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('tick' as const), seconds: fc.integer({ min: 0, max: 90 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('hold' as const),
      enabled: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      runBuffer: fc.integer({ min: 0, max: 2 }),
      allotment: fc.constantFrom(0, 5, 30),
    }),
  },
);

// ---------------------------------------------------------------------------------------------
// What each command must do, from a small model of the rules.

type ErrorClass = typeof InvalidInputError | typeof RunNotFoundError | typeof TransitionNotAllowedError;

interface Planned {
  command: Command;
  error: ErrorClass | null;
  /** Checks on the events (the state has moved on by then). */
  check?: (events: DomainEvent[], after: State) => void;
}

/** A run the scenario enqueued, live or finished. */
function known(s: SlotScenario, runId: string): RunRecord | undefined {
  return s.runIds.includes(runId) ? s.run(runId) : undefined;
}

function runAt(s: SlotScenario, n: number): string | null {
  const live = s.runIds.filter((id) => s.state.inProgress.has(id));
  const ids = n % 2 === 0 && live.length > 0 ? live : s.runIds;
  return ids.length === 0 ? null : (ids[Math.floor(n / 2) % ids.length] as string);
}

/** The deadlines of a run that have passed at `now`, recomputed from the rules. */
function passedDeadlines(state: State, runId: string, now: number): string[] {
  const run = state.runs.get(runId);
  if (!run || !isInProgress(run.status)) return [];
  const passed: string[] = [];
  const t = (iso: string | null) => (iso === null ? Number.NaN : Date.parse(iso));
  if (run.status === 'STARTING' && t(run.admittedAt) + state.monitoring.startTimeoutSeconds * 1000 <= now) {
    passed.push('start timeout');
  }
  if (run.status === 'CANCELING' && t(run.cancelRequestedAt) + state.monitoring.cancelTimeoutSeconds * 1000 <= now) {
    passed.push('cancel timeout');
  }
  const maxRuntime = run.tags.find((tag) => tag.key === 'dagster/max_runtime');
  if (run.status === 'STARTED' && maxRuntime && t(run.startedAt) + Number(maxRuntime.value) * 1000 <= now) {
    passed.push('max runtime');
  }
  if (run.leaseSeconds !== null) {
    const renewed = Math.max(t(run.admittedAt), run.lastHeartbeatAt === null ? 0 : t(run.lastHeartbeatAt));
    if (renewed + run.leaseSeconds * 1000 <= now) passed.push('lease expired');
  }
  return passed;
}

function plan(s: SlotScenario, o: Op, nextId: () => string): Planned {
  const state = s.state;
  const now = Date.parse(s.now);
  switch (o.kind) {
    case 'enqueue': {
      const runId = nextId();
      const command = cmd.enqueue(runId, {
        steps: o.steps.map((st, i) => ({
          key: `s${i}`,
          pool: st.pool,
          priority: st.priority,
          dependsOn: st.after && i > 0 ? [`s${i - 1}`] : [],
        })),
        priority: o.priority,
        maxConcurrentSteps: o.maxSteps,
        leaseSeconds: o.lease,
        tags: o.maxRuntime === null ? [] : [{ key: 'dagster/max_runtime', value: String(o.maxRuntime) }],
      });
      return { command, error: null, check: () => expect(known(s, runId)).toBeDefined() };
    }
    case 'start': {
      const runId = runAt(s, o.pick) ?? 'ghost';
      const status = known(s, runId)?.status;
      const error =
        status === undefined
          ? RunNotFoundError
          : status === 'STARTING' || status === 'STARTED'
            ? null
            : TransitionNotAllowedError;
      return { command: cmd.start(runId), error };
    }
    case 'claim':
    case 'release': {
      const runId = runAt(s, o.pick) ?? 'ghost';
      const run = known(s, runId);
      const steps = run?.steps ?? [];
      // One index past the declared steps names a step the run does not declare.
      const index = o.step % (steps.length + 1);
      const stepKey = steps[index]?.key ?? 'undeclared';
      const existing = claimOf(state, runId, stepKey);
      const active = existing !== undefined && existing.status !== 'RELEASED';
      if (o.kind === 'claim') {
        const command = slotCmd.claim(runId, stepKey);
        if (!run) return { command, error: RunNotFoundError };
        if (index === steps.length) return { command, error: InvalidInputError };
        if (active) return { command, error: null, check: (events) => expect(events).toEqual([]) };
        if (run.status !== 'STARTING' && run.status !== 'STARTED') return { command, error: TransitionNotAllowedError };
        const pool = steps[index]?.pool ?? null;
        const held = referenceHolds(state, { runId, pool }).length > 0;
        return {
          command,
          error: null,
          check: (events, after) => {
            expect(events[0]?.type).toBe(held ? 'StepSlotPending' : 'StepSlotGranted');
            expect(claimOf(after, runId, stepKey)?.status).toBe(held ? 'PENDING' : 'GRANTED');
          },
        };
      }
      const command = slotCmd.release(runId, stepKey);
      if (!run) return { command, error: RunNotFoundError };
      if (index === steps.length) return { command, error: InvalidInputError };
      // A finished run's claims were all released at its end; the live state no longer lists them.
      if (!existing && isFinished(run.status))
        return { command, error: null, check: (events) => expect(events).toEqual([]) };
      if (!existing) return { command, error: TransitionNotAllowedError };
      if (!active) return { command, error: null, check: (events) => expect(events).toEqual([]) };
      const wasHeld = existing.status === 'GRANTED';
      return {
        command,
        error: null,
        check: (events, after) => {
          expect(events[0]).toMatchObject({ type: 'StepSlotReleased', data: { runId, stepKey, held: wasHeld } });
          expect(claimOf(after, runId, stepKey)?.status).toBe('RELEASED');
        },
      };
    }
    case 'claimIn': {
      const runId = runAt(s, o.pick) ?? 'ghost';
      const run = known(s, runId);
      const steps = run?.steps ?? [];
      // Past the declared steps: a new step, keyed by the pool so repeats find it again.
      const index = o.step % (steps.length + 1);
      const declared = steps[index];
      const stepKey = declared?.key ?? `added-${o.pool}`;
      const command: Command = { type: 'ClaimStepSlot', runId, stepKey, pool: o.pool };
      if (!run) return { command, error: RunNotFoundError };
      const existing = steps.find((st) => st.key === stepKey);
      if (existing && existing.pool !== o.pool) return { command, error: TransitionNotAllowedError };
      const claim = claimOf(state, runId, stepKey);
      if (claim !== undefined && claim.status !== 'RELEASED') {
        return { command, error: null, check: (events) => expect(events).toEqual([]) };
      }
      if (run.status !== 'STARTING' && run.status !== 'STARTED') return { command, error: TransitionNotAllowedError };
      const adds = existing === undefined;
      if (adds && state.config.poolGranularity === 'RUN' && !run.pools.includes(o.pool)) {
        return { command, error: TransitionNotAllowedError };
      }
      const held = referenceHolds(state, { runId, pool: o.pool }).length > 0;
      const counted = (after: State) => after.counts.get(`p\u0000${o.pool}`) ?? 0;
      const before = counted(state);
      const newPool = !run.pools.includes(o.pool);
      return {
        command,
        error: null,
        check: (events, after) => {
          const expected = held ? 'StepSlotPending' : 'StepSlotGranted';
          // Then, possibly, new reasons for the run's other waiting claims (its step limit filled).
          const own = adds ? ['RunStepAdded', expected] : [expected];
          expect(events.slice(0, own.length).map((e) => e.type)).toEqual(own);
          expect(after.runs.get(runId)?.pools).toContain(o.pool);
          // A pool new to an in-progress run counts it once more, from now on.
          expect(counted(after)).toBe(before + (newPool ? 1 : 0));
        },
      };
    }
    case 'finish': {
      const runId = runAt(s, o.pick) ?? 'ghost';
      const status = known(s, runId)?.status;
      const command = cmd.finish(runId, o.status);
      if (status === undefined) return { command, error: RunNotFoundError };
      if (status === 'QUEUED') return { command, error: TransitionNotAllowedError };
      if (isFinished(status)) return { command, error: status === o.status ? null : TransitionNotAllowedError };
      return { command, error: null, check: (_e, _after) => expect(known(s, runId)?.status).toBe(o.status) };
    }
    case 'terminate': {
      const runId = runAt(s, o.pick) ?? 'ghost';
      const status = known(s, runId)?.status;
      const command = cmd.terminate(runId, o.force);
      if (status === undefined) return { command, error: RunNotFoundError };
      if (isFinished(status)) return { command, error: TransitionNotAllowedError };
      const expected = status === 'QUEUED' || o.force ? 'CANCELED' : 'CANCELING';
      return { command, error: null, check: (_e, _after) => expect(known(s, runId)?.status).toBe(expected) };
    }
    case 'heartbeat': {
      const runId = runAt(s, o.pick) ?? 'ghost';
      const run = known(s, runId);
      const command = slotCmd.heartbeat(runId);
      if (!run) return { command, error: RunNotFoundError };
      if (isFinished(run.status)) return { command, error: TransitionNotAllowedError };
      // A heartbeat after a deadline passed does not bring the run back: it ends the run.
      const passed = passedDeadlines(state, runId, now);
      if (passed.length > 0) {
        return {
          command,
          error: null,
          check: (events, after) => {
            expect(events[0]).toMatchObject({ type: 'RunFinished', data: { runId } });
            const reason = events[0]?.type === 'RunFinished' ? (events[0].data.reason ?? '') : '';
            expect(passed).toContain(reason.split(':')[0]);
            expect(after.inProgress.has(runId)).toBe(false);
          },
        };
      }
      let due = false;
      if (run.leaseSeconds !== null && run.admittedAt !== null) {
        const renewed = Math.max(
          Date.parse(run.admittedAt),
          run.lastHeartbeatAt === null ? 0 : Date.parse(run.lastHeartbeatAt),
        );
        due = now - renewed >= (run.leaseSeconds * 1000) / 3;
      }
      return {
        command,
        error: null,
        check: (events) => expect(events).toEqual(due ? [{ type: 'RunHeartbeatRecorded', data: { runId } }] : []),
      };
    }
    case 'poolLimit':
      return { command: cmd.poolLimit(o.pool, o.limit), error: null };
    case 'deletePoolLimit':
      return { command: cmd.deletePoolLimit(o.pool), error: null };
    case 'defaultPoolLimit':
      return { command: cmd.defaultPoolLimit(o.limit), error: null };
    case 'granularity':
      return { command: cmd.granularity(o.granularity), error: null };
    case 'maxRuns':
      return { command: cmd.maxRuns(o.limit), error: null };
    case 'monitoring':
      return { command: slotCmd.monitoring(o.start, o.cancel), error: null };
    case 'hold':
      return {
        command: {
          type: 'ChangeConcurrencyConfig',
          change: {
            rootStepHold: { enabled: o.enabled, runBuffer: o.runBuffer, startedRunAllotmentSeconds: o.allotment },
          },
        },
        error: null,
      };
    case 'tick': {
      s.advance(o.seconds);
      const at = Date.parse(s.now);
      const due = new Map(
        [...state.runs.keys()].flatMap((id) => {
          const passed = passedDeadlines(state, id, at);
          return passed.length > 0 ? [[id, passed] as const] : [];
        }),
      );
      return {
        command: slotCmd.expire(),
        error: null,
        check: (events, after) => {
          const ended = events.flatMap((e) => (e.type === 'RunFinished' ? [e.data] : []));
          expect(new Set(ended.map((e) => e.runId))).toEqual(new Set(due.keys()));
          for (const { runId, reason } of ended) {
            const why = (reason ?? '').split(':')[0] as string;
            expect(due.get(runId), `${runId} ended with reason ${reason}`).toContain(why);
          }
          for (const id of after.runs.keys())
            expect(passedDeadlines(after, id, at), `run ${id} outlived a deadline`).toEqual([]);
        },
      };
    }
  }
}

/**
 * Runs a sequence; SlotScenario checks every rule after every command. With the root-step hold
 * on, every invariant is checked after every command (the reference recounts the root-step hold
 * from the claims and the runs), and every run's derived waits against a model that records
 * every queued run's reasons after every command.
 */
function runSequence(ops: Op[], rootStepHold = false): void {
  const s = new SlotScenario({ check: rootStepHold ? 'full' : 'decisions', rootStepHold });
  const referenceWaits = rootStepHold ? new ReferenceWaits() : null;
  let ids = 0;
  const nextId = () => `r${ids++}`;
  for (const [i, o] of ops.entries()) {
    // A command about a run whose deadline has passed (not yet swept by ExpireDeadlines) may be
    // refused, or may end the run for its deadline (as a late heartbeat does); either way its
    // usual outcome no longer applies, while every rule SlotScenario checks still does.
    const target = 'pick' in o && o.kind !== 'heartbeat' ? runAt(s, o.pick) : null;
    const late = target !== null && passedDeadlines(s.state, target, Date.parse(s.now)).length > 0;
    const { command, error, check } = plan(s, o, nextId);
    const where = `op ${i}: ${JSON.stringify(command)}`;
    if (error) {
      const refused = s.rejects(command);
      expect(refused, where).toBeInstanceOf(error);
      continue;
    }
    let events: DomainEvent[];
    try {
      events = s.when(command);
    } catch (failure) {
      if (late && failure instanceof TransitionNotAllowedError) continue;
      throw failure;
    }
    if (referenceWaits) {
      referenceWaits.record(s);
      for (const id of referenceWaits.changed()) {
        expect(comparableWaits(s.waits(id)), `${where}: waits of ${id}`).toEqual(
          comparableWaits(referenceWaits.of(id)),
        );
      }
    }
    if (late && !s.state.inProgress.has(target)) continue;
    try {
      check?.(events, s.state);
    } catch (failure) {
      throw new Error(`${where}: ${(failure as Error).message}`);
    }
  }
  for (const id of referenceWaits?.all() ?? []) {
    expect(comparableWaits(s.waits(id)), `waits of ${id} at the end`).toEqual(
      comparableWaits(referenceWaits?.of(id) ?? []),
    );
  }
  // A replay of the whole log, from scratch, equals the live state.
  expect(slotFingerprint(replay(s.log))).toBe(slotFingerprint(s.state));
}

/** Limits to start from: tight, so that steps wait. */
const setup: fc.Arbitrary<Op[]> = fc
  .tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 2, max: 6 }))
  .map(([p1, p2, maxRuns]): Op[] => [
    { kind: 'poolLimit', pool: 'p1', limit: p1 },
    { kind: 'poolLimit', pool: 'p2', limit: p2 },
    { kind: 'maxRuns', limit: maxRuns },
  ]);

const sequence = (min: number, max: number, ops: fc.Arbitrary<Op> = op) =>
  fc.tuple(setup, fc.array(ops, { minLength: min, maxLength: max, size: 'max' })).map(([a, b]) => [...a, ...b]);

/** SLUICE_PROPERTY_SCALE=10 runs ten times as many sequences. */
const scale = Number(process.env.SLUICE_PROPERTY_SCALE ?? 1);

describe('random slot sequences', () => {
  it(
    'never over-grant, serve waiting claims in order, leak nothing, and replay to the live state',
    () => {
      fc.assert(
        fc.property(sequence(1, 80), (ops) => runSequence(ops)),
        { numRuns: Math.round(200 * scale) },
      );
    },
    60_000 * scale,
  );

  it(
    'hold with many runs contending for few slots',
    () => {
      const busy = fc.oneof(
        { weight: 3, arbitrary: op.filter((o) => o.kind === 'enqueue' || o.kind === 'start') },
        { weight: 6, arbitrary: op.filter((o) => o.kind === 'claim' || o.kind === 'release') },
        { weight: 2, arbitrary: op },
      );
      fc.assert(
        fc.property(sequence(40, 150, busy), (ops) => runSequence(ops)),
        { numRuns: Math.round(20 * scale) },
      );
    },
    60_000 * scale,
  );
});

describe('random sequences with the root-step hold on (Dagster OP granularity)', () => {
  // Admissions equal a from-scratch pass that holds a run only when every root pool is full
  // (never over-admitting, never holding a run with a free root slot), claims and allotment
  // windows move the counts, and the waits derived from the log equal the reference model.
  it(
    'admit exactly what the rule allows, record every hold, and replay to the live state',
    () => {
      fc.assert(
        fc.property(sequence(1, 60), (ops) => runSequence(ops, true)),
        { numRuns: Math.round(120 * scale) },
      );
    },
    120_000 * scale,
  );

  it(
    'hold with many runs contending for few root slots',
    () => {
      const busy = fc.oneof(
        { weight: 3, arbitrary: op.filter((o) => o.kind === 'enqueue' || o.kind === 'start') },
        { weight: 5, arbitrary: op.filter((o) => o.kind === 'claim' || o.kind === 'release') },
        { weight: 2, arbitrary: op.filter((o) => o.kind === 'tick' || o.kind === 'hold') },
        { weight: 2, arbitrary: op },
      );
      fc.assert(
        fc.property(sequence(40, 120, busy), (ops) => runSequence(ops, true)),
        { numRuns: Math.round(15 * scale) },
      );
    },
    120_000 * scale,
  );
});

// ---------------------------------------------------------------------------------------------
// The reference must catch what it is there to catch.

describe('the slot reference itself', () => {
  function contended(): SlotScenario {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    s.given(cmd.enqueue('a', { steps: ['x@db'] }), cmd.enqueue('b', { steps: ['x@db'], priority: 5 }));
    s.given(cmd.enqueue('c', { steps: ['x@db'] }));
    s.given(slotCmd.claim('a', 'x'), slotCmd.claim('b', 'x'), slotCmd.claim('c', 'x'));
    return s;
  }

  it('flags a grant beyond the pool limit or the run step limit', () => {
    const s = contended();
    expect(grantViolations(s.state, { runId: 'b', stepKey: 'x', pool: 'db' })).toEqual([
      'StepSlotGranted b/x: granted while POOL_LIMIT:db had 1 of 1 in use',
    ]);
    expect(grantViolations(s.state, { runId: 'a', stepKey: 'x', pool: 'db' })).toContain(
      'StepSlotGranted a/x: the step already holds a slot',
    );
  });

  it('flags a grant that jumps a waiting claim ahead of it', () => {
    const s = contended();
    // Pretend c/x was granted while b/x (priority 5) still waits.
    const c = claimOf(s.state, 'c', 'x')!;
    c.status = 'GRANTED';
    expect(
      orderViolations(s.state, [{ type: 'StepSlotGranted', data: { runId: 'c', stepKey: 'x', pool: 'db' } }]),
    ).toHaveLength(1);
  });

  it('flags indexes that disagree with the claims, a leak, and a claim waiting with room', () => {
    const s = contended();
    expect(slotInvariantProblems(s.state)).toEqual([]);
    s.state.slotHolders.get('db')?.clear();
    expect(slotInvariantProblems(s.state).join('\n')).toContain('slotHolders');
    const leaked = contended();
    leaked.state.runs.get('a')!.status = 'SUCCESS';
    expect(slotInvariantProblems(leaked.state).join('\n')).toContain('run a is SUCCESS but x is GRANTED');
    const roomy = contended();
    roomy.state.config = { ...roomy.state.config, poolLimits: new Map([['db', 5]]) };
    expect(slotInvariantProblems(roomy.state).join('\n')).toContain('waits, but its pool and its run both have room');
    expect(slotFingerprint(initialState())).toBe(slotFingerprint(replay([])));
  });
});
