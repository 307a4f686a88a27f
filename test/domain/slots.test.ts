/**
 * Step slots (DESIGN section 1, "Step slots" and "Termination"), on the pure core: claims,
 * releases, the order in which waiting claims are served, the limits that hold them, and slots
 * never leaking when a run ends. Every command also goes through the SlotScenario checks (each
 * grant against a brute-force recount, grant order, slot invariants, replay = live state).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { poolView } from '../../projections/pools.js';
import type { Constraint } from '../../src/domain/constraints.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { claimQueuePosition, suggestedRetrySeconds } from '../../src/domain/slots.js';
import { cmd, type EnqueueOptions, summary, types } from '../support/scenario.js';
import { claimOf, claimStatus, SlotScenario, slotCmd, slotSummary } from '../support/slots.js';

const { claim, release } = slotCmd;

/** Enqueues and (default config: 10 runs at once) admits a run, then marks it started. */
function running(s: SlotScenario, runId: string, options: EnqueueOptions = {}): void {
  s.given(cmd.enqueue(runId, options), cmd.start(runId));
  expect(s.status(runId)).toBe('STARTED');
}

const poolHold = (pool: string, limit: number, inUse: number): Constraint => ({
  kind: 'POOL_LIMIT',
  key: null,
  value: null,
  pool,
  perUniqueValue: false,
  limit,
  inUse,
  message: `pool ${pool}: ${inUse} of ${limit} slots in use`,
});

const runHold = (limit: number, inUse: number): Constraint => ({
  kind: 'RUN_STEP_LIMIT',
  key: null,
  value: null,
  pool: null,
  perUniqueValue: false,
  limit,
  inUse,
  message: `run's max concurrent steps: ${inUse} of ${limit} steps hold slots`,
});

const pendingReasons = (events: DomainEvent[]) =>
  events.flatMap((e) => (e.type === 'StepSlotPending' ? [e.data.reasons] : []));

// ---------------------------------------------------------------------------------------------

describe('claimStepSlot grants at once when there is room', () => {
  it('under the pool’s own limit', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 2));
    running(s, 'a', { steps: ['x@db', 'y@db'] });
    expect(s.when(claim('a', 'x'))).toEqual([
      { type: 'StepSlotGranted', data: { runId: 'a', stepKey: 'x', pool: 'db' } },
    ]);
    expect(slotSummary(s.when(claim('a', 'y')))).toEqual(['StepSlotGranted:a/y']);
    expect(claimStatus(s.state, 'a', 'x')).toBe('GRANTED');
    expect(poolView(s.state, 'db')).toMatchObject({ limit: 2, explicitLimit: 2, inUse: 2, pending: 0 });
  });

  it('for a STARTING run as well as a STARTED one', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1), cmd.enqueue('a', { steps: ['x@db'] }));
    expect(s.status('a')).toBe('STARTING');
    expect(slotSummary(s.when(claim('a', 'x')))).toEqual(['StepSlotGranted:a/x']);
  });

  it('under the default pool limit when the pool has none of its own', () => {
    const s = new SlotScenario();
    s.given(cmd.defaultPoolLimit(1));
    running(s, 'a', { steps: ['x@db'] });
    running(s, 'b', { steps: ['y@db'] });
    expect(slotSummary(s.when(claim('a', 'x')))).toEqual(['StepSlotGranted:a/x']);
    expect(pendingReasons(s.when(claim('b', 'y')))).toEqual([[poolHold('db', 1, 1)]]);
  });

  it('under the pool’s own limit rather than the default', () => {
    const s = new SlotScenario();
    s.given(cmd.defaultPoolLimit(0), cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db', 'y@other'] });
    expect(slotSummary(s.when(claim('a', 'x')))).toEqual(['StepSlotGranted:a/x']);
    expect(pendingReasons(s.when(claim('a', 'y')))).toEqual([[poolHold('other', 0, 0)]]);
  });

  it('always in a pool with no limit and no default (unlimited)', () => {
    const s = new SlotScenario();
    for (const id of ['a', 'b', 'c', 'd']) running(s, id, { steps: ['x@db', 'y@db'] });
    for (const id of ['a', 'b', 'c', 'd']) {
      expect(slotSummary(s.when(claim(id, 'x')))).toEqual([`StepSlotGranted:${id}/x`]);
      expect(slotSummary(s.when(claim(id, 'y')))).toEqual([`StepSlotGranted:${id}/y`]);
    }
    expect(poolView(s.state, 'db')).toMatchObject({ limit: null, inUse: 8, pending: 0 });
  });

  it('records a SLOT_GRANTED decision with the step and the pool', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db'] });
    s.when(claim('a', 'x'));
    expect(s.decisions('a').at(-1)).toMatchObject({
      kind: 'SLOT_GRANTED',
      runId: 'a',
      stepKey: 'x',
      pool: 'db',
      reasons: [],
      message: 'step x of run a holds a slot of pool db',
      at: s.now,
    });
  });
});

describe('a claim waits, naming every limit that holds it', () => {
  it('POOL_LIMIT when the pool is full, with limit, count and a sentence', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db'] });
    running(s, 'b', { steps: ['y@db'] });
    s.when(claim('a', 'x'));
    const events = s.when(claim('b', 'y'));
    expect(events).toEqual([
      { type: 'StepSlotPending', data: { runId: 'b', stepKey: 'y', pool: 'db', reasons: [poolHold('db', 1, 1)] } },
    ]);
    expect(claimOf(s.state, 'b', 'y')).toMatchObject({ status: 'PENDING', reasons: [poolHold('db', 1, 1)] });
    expect(s.decisions('b').at(-1)).toMatchObject({
      kind: 'SLOT_PENDING',
      stepKey: 'y',
      pool: 'db',
      reasons: [poolHold('db', 1, 1)],
      message: 'step y of run b waits: pool db: 1 of 1 slots in use',
    });
    expect(poolView(s.state, 'db')).toEqual({
      name: 'db',
      limit: 1,
      explicitLimit: 1,
      inUse: 1,
      pending: 1,
      activeRunIds: ['a'],
      promised: 0,
    });
  });

  it('RUN_STEP_LIMIT when the run already holds maxConcurrentSteps slots', () => {
    const s = new SlotScenario();
    running(s, 'a', { steps: ['x', 'y@db'], maxConcurrentSteps: 1 });
    expect(slotSummary(s.when(claim('a', 'x')))).toEqual(['StepSlotGranted:a/x']);
    expect(pendingReasons(s.when(claim('a', 'y')))).toEqual([[runHold(1, 1)]]);
    expect(s.decisions('a').at(-1)?.message).toBe(
      "step y of run a waits: run's max concurrent steps: 1 of 1 steps hold slots",
    );
  });

  it('both at once, each with its own count', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'b', { steps: ['y@db'] });
    running(s, 'a', { steps: ['q', 'x@db'], maxConcurrentSteps: 1 });
    s.given(claim('b', 'y'), claim('a', 'q'));
    expect(pendingReasons(s.when(claim('a', 'x')))).toEqual([[poolHold('db', 1, 1), runHold(1, 1)]]);
  });

  it('records a new SLOT_PENDING only when the set of limits holding it changes', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'h', { steps: ['x@db'] });
    running(s, 'v', { steps: ['x@db'] });
    running(s, 'w', { steps: ['q', 'x@db'], maxConcurrentSteps: 1 });
    s.given(claim('h', 'x'), claim('w', 'q'), claim('v', 'x'), claim('w', 'x'));
    expect(claimOf(s.state, 'w', 'x')?.reasons).toEqual([poolHold('db', 1, 1), runHold(1, 1)]);
    // The pool frees and fills again (v takes the slot): w/x is held by the same two limits.
    expect(slotSummary(s.when(release('h', 'x')))).toEqual(['StepSlotReleased:h/x', 'StepSlotGranted:v/x']);
    // The pool gets room, but w/x is still held by its own run: only the pool reason goes.
    const raised = s.when(cmd.poolLimit('db', 5));
    expect(raised).toEqual([
      { type: 'PoolLimitSet', data: { pool: 'db', limit: 5 } },
      { type: 'StepSlotPending', data: { runId: 'w', stepKey: 'x', pool: 'db', reasons: [runHold(1, 1)] } },
    ]);
    expect(s.when(release('w', 'q'))).toEqual([
      { type: 'StepSlotReleased', data: { runId: 'w', stepKey: 'q', pool: null, held: true, reason: null } },
      { type: 'StepSlotGranted', data: { runId: 'w', stepKey: 'x', pool: 'db' } },
    ]);
  });
});

describe('waiting claims are served by run priority plus step priority, then first come', () => {
  function fullPool(s: SlotScenario): void {
    s.given(cmd.poolLimit('db', 1));
    running(s, 'holder', { steps: ['x@db'] });
    s.when(claim('holder', 'x'));
  }

  /** Releases the slot each time and returns who got it, until nobody waits. */
  function serveAll(s: SlotScenario, first: string): string[] {
    const served: string[] = [];
    let [runId, stepKey] = first.split('/') as [string, string];
    for (;;) {
      const granted = s.when(release(runId, stepKey)).flatMap((e) => (e.type === 'StepSlotGranted' ? [e.data] : []));
      expect(granted.length).toBeLessThanOrEqual(1);
      if (granted.length === 0) return served;
      runId = granted[0]!.runId;
      stepKey = granted[0]!.stepKey;
      served.push(`${runId}/${stepKey}`);
    }
  }

  it('higher run priority first', () => {
    const s = new SlotScenario();
    fullPool(s);
    running(s, 'low', { steps: ['x@db'], priority: 0 });
    running(s, 'high', { steps: ['x@db'], priority: 5 });
    running(s, 'mid', { steps: ['x@db'], priority: 2 });
    s.given(claim('low', 'x'), claim('high', 'x'), claim('mid', 'x'));
    expect(serveAll(s, 'holder/x')).toEqual(['high/x', 'mid/x', 'low/x']);
  });

  it('the step priority is added to the run priority (and may be negative)', () => {
    const s = new SlotScenario();
    fullPool(s);
    running(s, 'r3', { priority: 3, steps: [{ key: 'plain', pool: 'db' }] });
    running(s, 'r0', { priority: 0, steps: [{ key: 'urgent', pool: 'db', priority: 5 }] });
    running(s, 'r4', { priority: 4, steps: [{ key: 'sunk', pool: 'db', priority: -3 }] });
    s.given(claim('r3', 'plain'), claim('r4', 'sunk'), claim('r0', 'urgent'));
    expect(claimOf(s.state, 'r0', 'urgent')?.priority).toBe(5);
    expect(claimOf(s.state, 'r4', 'sunk')?.priority).toBe(1);
    expect(serveAll(s, 'holder/x')).toEqual(['r0/urgent', 'r3/plain', 'r4/sunk']);
  });

  it('ties in claim order, not enqueue order', () => {
    const s = new SlotScenario();
    fullPool(s);
    running(s, 'e1', { steps: ['x@db'] });
    running(s, 'e2', { steps: ['x@db'] });
    running(s, 'e3', { steps: ['x@db'] });
    s.given(claim('e3', 'x'), claim('e1', 'x'), claim('e2', 'x'));
    expect(serveAll(s, 'holder/x')).toEqual(['e3/x', 'e1/x', 'e2/x']);
  });

  it('a step that releases and claims again goes to the back of its priority', () => {
    const s = new SlotScenario();
    fullPool(s);
    running(s, 'a', { steps: ['x@db'] });
    running(s, 'b', { steps: ['x@db'] });
    s.given(claim('a', 'x'), claim('b', 'x'), release('a', 'x'));
    expect(claimStatus(s.state, 'a', 'x')).toBe('RELEASED');
    s.when(claim('a', 'x'));
    expect(claimOf(s.state, 'a', 'x')?.seq).toBeGreaterThan(claimOf(s.state, 'b', 'x')!.seq);
    expect(serveAll(s, 'holder/x')).toEqual(['b/x', 'a/x']);
  });

  it('a full pool makes a new claim wait even when it outranks every waiting one', () => {
    const s = new SlotScenario();
    fullPool(s);
    running(s, 'low', { steps: ['x@db'] });
    running(s, 'vip', { steps: ['x@db'], priority: 100 });
    s.when(claim('low', 'x'));
    expect(types(s.when(claim('vip', 'x')))).toEqual(['StepSlotPending']);
    expect(claimStatus(s.state, 'holder', 'x')).toBe('GRANTED');
    expect(serveAll(s, 'holder/x')).toEqual(['vip/x', 'low/x']);
  });

  it('a claim held only by its own run’s step limit does not block other runs’ claims', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'busy', { steps: ['q', 'x@db'], maxConcurrentSteps: 1, priority: 10 });
    running(s, 'other', { steps: ['y@db', 'z@db'] });
    s.when(claim('busy', 'q'));
    expect(pendingReasons(s.when(claim('busy', 'x')))).toEqual([[runHold(1, 1)]]);
    // busy/x waits ahead of it (priority 10 > 0), but only its own run holds it back; now the
    // pool is full for busy/x too, which is recorded.
    expect(slotSummary(s.when(claim('other', 'y')))).toEqual(['StepSlotGranted:other/y', 'StepSlotPending:busy/x']);
    expect(claimOf(s.state, 'busy', 'x')?.reasons).toEqual([poolHold('db', 1, 1), runHold(1, 1)]);
    expect(pendingReasons(s.when(claim('other', 'z')))).toEqual([[poolHold('db', 1, 1)]]);
    // The slot frees: busy/x is first in line but its run is still full, so other/z gets it.
    expect(slotSummary(s.when(release('other', 'y')))).toEqual(['StepSlotReleased:other/y', 'StepSlotGranted:other/z']);
    // busy releases its own step: busy/x is now held by the pool alone.
    expect(slotSummary(s.when(release('busy', 'q')))).toEqual(['StepSlotReleased:busy/q', 'StepSlotPending:busy/x']);
    expect(claimOf(s.state, 'busy', 'x')?.reasons).toEqual([poolHold('db', 1, 1)]);
    expect(slotSummary(s.when(release('other', 'z')))).toEqual(['StepSlotReleased:other/z', 'StepSlotGranted:busy/x']);
  });
});

describe('releaseStepSlot', () => {
  it('frees the slot and grants the next waiting claim in the same append', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db'] });
    running(s, 'b', { steps: ['y@db'] });
    s.given(claim('a', 'x'), claim('b', 'y'));
    expect(s.when(release('a', 'x'))).toEqual([
      { type: 'StepSlotReleased', data: { runId: 'a', stepKey: 'x', pool: 'db', held: true, reason: null } },
      { type: 'StepSlotGranted', data: { runId: 'b', stepKey: 'y', pool: 'db' } },
    ]);
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 1, pending: 0, activeRunIds: ['b'] });
  });

  it('of a waiting claim withdraws it without freeing anything', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db'] });
    running(s, 'b', { steps: ['y@db'] });
    s.given(claim('a', 'x'), claim('b', 'y'));
    expect(s.when(release('b', 'y'))).toEqual([
      { type: 'StepSlotReleased', data: { runId: 'b', stepKey: 'y', pool: 'db', held: false, reason: null } },
    ]);
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 1, pending: 0 });
  });

  it('of a run-limited slot grants the run’s own waiting step', () => {
    const s = new SlotScenario();
    running(s, 'a', { steps: ['x', 'y', 'z'], maxConcurrentSteps: 2 });
    s.given(claim('a', 'x'), claim('a', 'y'));
    expect(pendingReasons(s.when(claim('a', 'z')))).toEqual([[runHold(2, 2)]]);
    expect(slotSummary(s.when(release('a', 'y')))).toEqual(['StepSlotReleased:a/y', 'StepSlotGranted:a/z']);
  });

  it('raising a limit grants several waiting claims in one append, in order', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    for (const id of ['a', 'b', 'c', 'd']) running(s, id, { steps: ['x@db'] });
    s.given(claim('a', 'x'), claim('d', 'x'), claim('b', 'x'), claim('c', 'x'));
    expect(slotSummary(s.when(cmd.poolLimit('db', 3)))).toEqual([
      'PoolLimitSet',
      'StepSlotGranted:d/x',
      'StepSlotGranted:b/x',
    ]);
    // Still held by the same limit: nothing new is recorded (the counts are as of its decision).
    expect(claimOf(s.state, 'c', 'x')?.reasons).toEqual([poolHold('db', 1, 1)]);
  });

  it('deleting a pool’s limit falls back to the default, else unlimited, and grants', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 0), cmd.defaultPoolLimit(1));
    running(s, 'a', { steps: ['x@db'] });
    running(s, 'b', { steps: ['x@db'] });
    s.given(claim('a', 'x'), claim('b', 'x'));
    expect(slotSummary(s.when(cmd.deletePoolLimit('db')))).toEqual(['PoolLimitDeleted', 'StepSlotGranted:a/x']);
    // b/x is held by the same limit as before (db's, now 1 of 1): nothing new is recorded.
    expect(claimOf(s.state, 'b', 'x')?.reasons).toEqual([poolHold('db', 0, 0)]);
    expect(slotSummary(s.when(cmd.defaultPoolLimit(null)))).toEqual(['DefaultPoolLimitSet', 'StepSlotGranted:b/x']);
  });
});

describe('repeats and refusals', () => {
  function setup(): SlotScenario {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db', 'y@db'] });
    s.given(claim('a', 'x'), claim('a', 'y'));
    return s;
  }

  it('a repeated claim, holding or waiting, appends nothing and keeps its place', () => {
    const s = setup();
    const waitingSeq = claimOf(s.state, 'a', 'y')?.seq;
    expect(s.when(claim('a', 'x'))).toEqual([]);
    expect(s.when(claim('a', 'y'))).toEqual([]);
    expect(claimStatus(s.state, 'a', 'x')).toBe('GRANTED');
    expect(claimOf(s.state, 'a', 'y')).toMatchObject({ status: 'PENDING', seq: waitingSeq });
  });

  it('a repeated claim keeps its place in line and its suggested backoff', () => {
    const s = setup();
    running(s, 'b', { steps: ['z@db'] });
    s.given(claim('b', 'z'));
    const places = () =>
      (['x', 'y', 'z'] as const).map((step) => {
        const c = claimOf(s.state, step === 'z' ? 'b' : 'a', step);
        return c ? claimQueuePosition(s.state, c) : undefined;
      });
    expect(places()).toEqual([null, 1, 2]);
    expect(s.when(claim('b', 'z'))).toEqual([]);
    expect(s.when(claim('a', 'y'))).toEqual([]);
    expect(places()).toEqual([null, 1, 2]);
    s.given(release('a', 'x'));
    expect(places()).toEqual([null, null, 1]);
  });

  it('the suggested backoff grows with the claims ahead, within bounds, and is null unless waiting', () => {
    expect(suggestedRetrySeconds(null)).toBeNull();
    expect(suggestedRetrySeconds(1)).toBe(1);
    expect(suggestedRetrySeconds(3)).toBe(2);
    expect(suggestedRetrySeconds(10_000)).toBe(30);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 1, max: 1_000_000 }), (a, b) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const lowWait = suggestedRetrySeconds(low) as number;
        return lowWait >= 1 && lowWait <= (suggestedRetrySeconds(high) as number) && lowWait <= 30;
      }),
    );
  });

  it('a repeated release appends nothing', () => {
    const s = setup();
    expect(types(s.when(release('a', 'x')))).toEqual(['StepSlotReleased', 'StepSlotGranted']);
    expect(s.when(release('a', 'x'))).toEqual([]);
    expect(types(s.when(release('a', 'y')))).toEqual(['StepSlotReleased']);
    expect(s.when(release('a', 'y'))).toEqual([]);
  });

  it('a release without a claim is a conflict', () => {
    const s = new SlotScenario();
    running(s, 'a', { steps: ['x@db'] });
    const error = s.rejects(release('a', 'x'));
    expect(error).toBeInstanceOf(TransitionNotAllowedError);
    expect(error.message).toBe('step x of run a has not claimed a slot');
  });

  it('a step the run does not declare is bad input naming stepKey', () => {
    const s = setup();
    for (const command of [claim('a', 'nope'), release('a', 'nope'), claim('a', '')]) {
      const error = s.rejects(command);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).field).toBe('stepKey');
    }
    expect(s.rejects(claim('a', 'nope')).message).toContain('declares no step "nope"');
  });

  it('an unknown run is not found', () => {
    const s = setup();
    expect(s.rejects(claim('ghost', 'x'))).toBeInstanceOf(RunNotFoundError);
    expect(s.rejects(release('ghost', 'x'))).toBeInstanceOf(RunNotFoundError);
  });

  it('a QUEUED run cannot claim', () => {
    const s = new SlotScenario();
    s.given(cmd.maxRuns(0), cmd.enqueue('q', { steps: ['x@db'] }));
    expect(s.status('q')).toBe('QUEUED');
    const error = s.rejects(claim('q', 'x'));
    expect(error).toBeInstanceOf(TransitionNotAllowedError);
    expect(error.message).toContain('is QUEUED');
  });

  it('a CANCELING run cannot make a new claim, but a repeat answers as the claim stands', () => {
    const s = setup();
    s.when(cmd.terminate('a'));
    expect(s.status('a')).toBe('CANCELING');
    s.given(release('a', 'y'));
    expect(s.rejects(claim('a', 'y'))).toBeInstanceOf(TransitionNotAllowedError);
    expect(s.when(claim('a', 'x'))).toEqual([]);
  });

  it.each(['SUCCESS', 'FAILURE', 'CANCELED'])('a run finished as %s cannot claim', (status) => {
    const s = setup();
    s.when(cmd.finish('a', status));
    for (const step of ['x', 'y']) expect(s.rejects(claim('a', step))).toBeInstanceOf(TransitionNotAllowedError);
    // Its claims were released when it finished: releasing again appends nothing.
    expect(s.when(release('a', 'x'))).toEqual([]);
  });
});

describe('what a claim obeys besides its pool', () => {
  it('at RUN granularity, claims only obey maxConcurrentSteps', () => {
    const s = new SlotScenario();
    s.given(cmd.granularity('RUN'), cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db', 'y@db', 'z@db'], maxConcurrentSteps: 2 });
    expect(slotSummary(s.when(claim('a', 'x')))).toEqual(['StepSlotGranted:a/x']);
    expect(slotSummary(s.when(claim('a', 'y')))).toEqual(['StepSlotGranted:a/y']);
    expect(pendingReasons(s.when(claim('a', 'z')))).toEqual([[runHold(2, 2)]]);
    // The pool view counts runs at RUN granularity.
    expect(poolView(s.state, 'db')).toMatchObject({ limit: 1, inUse: 1, activeRunIds: ['a'] });
  });

  it('switching to RUN granularity grants the claims waiting for pools; back to OP preempts nothing', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db'] });
    running(s, 'b', { steps: ['x@db'] });
    running(s, 'c', { steps: ['x@db', 'y@db'], maxConcurrentSteps: 1 });
    s.given(claim('a', 'x'), claim('b', 'x'), claim('c', 'x'), claim('c', 'y'));
    expect(slotSummary(s.when(cmd.granularity('RUN')))).toEqual([
      'PoolGranularitySet',
      'StepSlotGranted:b/x',
      'StepSlotGranted:c/x',
      'StepSlotPending:c/y',
    ]);
    expect(claimOf(s.state, 'c', 'y')?.reasons).toEqual([runHold(1, 1)]);
    expect(slotSummary(s.when(cmd.granularity('OP')))).toEqual(['PoolGranularitySet', 'StepSlotPending:c/y']);
    expect(claimOf(s.state, 'c', 'y')?.reasons).toEqual([poolHold('db', 1, 3), runHold(1, 1)]);
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 3, pending: 1 });
    // The pool drains: no grant until fewer than 1 slot is in use.
    expect(slotSummary(s.when(release('a', 'x')))).toEqual(['StepSlotReleased:a/x']);
    expect(slotSummary(s.when(release('b', 'x')))).toEqual(['StepSlotReleased:b/x']);
    expect(slotSummary(s.when(release('c', 'x')))).toEqual(['StepSlotReleased:c/x', 'StepSlotGranted:c/y']);
  });

  it('a step without a pool only obeys maxConcurrentSteps, whatever the default pool limit', () => {
    const s = new SlotScenario();
    s.given(cmd.defaultPoolLimit(0));
    running(s, 'a', { steps: ['x', 'y', 'z'], maxConcurrentSteps: 2 });
    running(s, 'free', { steps: ['x', 'y', 'z'] });
    expect(types(s.when(claim('a', 'x')))).toEqual(['StepSlotGranted']);
    expect(types(s.when(claim('a', 'y')))).toEqual(['StepSlotGranted']);
    expect(pendingReasons(s.when(claim('a', 'z')))).toEqual([[runHold(2, 2)]]);
    for (const step of ['x', 'y', 'z']) expect(types(s.when(claim('free', step)))).toEqual(['StepSlotGranted']);
    expect(claimOf(s.state, 'free', 'x')?.pool).toBeNull();
    expect(s.decisions('free').at(-1)?.message).toBe('step z of run free holds a slot');
  });

  it('a step in an unlimited pool only obeys maxConcurrentSteps', () => {
    const s = new SlotScenario();
    running(s, 'a', { steps: ['x@big', 'y@big', 'z@big'], maxConcurrentSteps: 2 });
    s.given(claim('a', 'x'), claim('a', 'y'));
    expect(pendingReasons(s.when(claim('a', 'z')))).toEqual([[runHold(2, 2)]]);
    expect(poolView(s.state, 'big')).toMatchObject({ limit: null, inUse: 2, pending: 1 });
  });
});

describe('lowering a pool limit preempts nothing: the pool drains', () => {
  it.each([
    ['its own limit', cmd.poolLimit('db', 1)],
    ['the default limit', cmd.defaultPoolLimit(1)],
  ])('%s', (_what, lower) => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 3));
    for (const id of ['a', 'b', 'c', 'w']) running(s, id, { steps: ['x@db'] });
    s.given(claim('a', 'x'), claim('b', 'x'), claim('c', 'x'));
    if (lower.type === 'SetDefaultPoolLimit') s.when(cmd.deletePoolLimit('db'));
    expect(summary(s.when(lower))).toEqual([lower.type === 'SetPoolLimit' ? 'PoolLimitSet' : 'DefaultPoolLimitSet']);
    expect(poolView(s.state, 'db')).toMatchObject({ limit: 1, inUse: 3 });
    expect(pendingReasons(s.when(claim('w', 'x')))).toEqual([[poolHold('db', 1, 3)]]);
    expect(slotSummary(s.when(release('a', 'x')))).toEqual(['StepSlotReleased:a/x']);
    expect(slotSummary(s.when(release('b', 'x')))).toEqual(['StepSlotReleased:b/x']);
    expect(slotSummary(s.when(release('c', 'x')))).toEqual(['StepSlotReleased:c/x', 'StepSlotGranted:w/x']);
  });
});

describe('slots never leak: a run that ends releases everything in the same append', () => {
  function contended(): SlotScenario {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db', 'y@db', 'q'] });
    running(s, 'b', { steps: ['z@db'] });
    // a holds x and q, waits for y (its own x fills the pool); b waits for z.
    s.given(claim('a', 'x'), claim('a', 'q'), claim('a', 'y'), claim('b', 'z'));
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 1, pending: 2, activeRunIds: ['a'] });
    return s;
  }

  const releasedAll = (status: string) => [
    {
      type: 'StepSlotReleased',
      data: { runId: 'a', stepKey: 'x', pool: 'db', held: true, reason: `run a finished as ${status}` },
    },
    {
      type: 'StepSlotReleased',
      data: { runId: 'a', stepKey: 'q', pool: null, held: true, reason: `run a finished as ${status}` },
    },
    {
      type: 'StepSlotReleased',
      data: { runId: 'a', stepKey: 'y', pool: 'db', held: false, reason: `run a finished as ${status}` },
    },
    { type: 'StepSlotGranted', data: { runId: 'b', stepKey: 'z', pool: 'db' } },
  ];

  it.each(['SUCCESS', 'FAILURE', 'CANCELED'])('markRunFinished(%s)', (status) => {
    const s = contended();
    expect(s.when(cmd.finish('a', status))).toEqual([
      { type: 'RunFinished', data: { runId: 'a', status, reason: null } },
      ...releasedAll(status),
    ]);
    expect(s.run('a')).toMatchObject({ stepsHolding: 0, activeClaims: new Set() });
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 1, pending: 0, activeRunIds: ['b'] });
  });

  it('terminateRun with force', () => {
    const s = contended();
    expect(s.when(cmd.terminate('a', true))).toEqual([
      { type: 'RunFinished', data: { runId: 'a', status: 'CANCELED', reason: 'terminated with force' } },
      ...releasedAll('CANCELED'),
    ]);
  });

  it('terminateRun without force: CANCELING keeps its slots until markRunFinished(CANCELED)', () => {
    const s = contended();
    const requested = s.when(cmd.terminate('a'));
    expect(requested[0]).toEqual({ type: 'RunCancellationRequested', data: { runId: 'a' } });
    // Nothing it holds is released (what happens to its waiting claim a/y is another matter).
    expect(requested.filter((e) => e.type === 'StepSlotReleased' && e.data.held)).toEqual([]);
    expect(s.status('a')).toBe('CANCELING');
    expect(claimStatus(s.state, 'a', 'x')).toBe('GRANTED');
    expect(claimStatus(s.state, 'a', 'q')).toBe('GRANTED');
    expect(claimStatus(s.state, 'b', 'z')).toBe('PENDING');
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 1, activeRunIds: ['a'] });
    expect(s.when(cmd.terminate('a'))).toEqual([]);
    const finished = slotSummary(s.when(cmd.finish('a', 'CANCELED')));
    expect(finished[0]).toBe('RunFinished:a');
    expect(finished).toContain('StepSlotReleased:a/x');
    expect(finished).toContain('StepSlotReleased:a/q');
    expect(finished.at(-1)).toBe('StepSlotGranted:b/z');
    expect(s.run('a')).toMatchObject({ status: 'CANCELED', finishReason: null, stepsHolding: 0 });
  });

  // Regression: a CANCELING run may not make a new claim (ConflictError), yet its claim that was
  // already waiting used to be served: a freed slot went to the run being canceled instead of to
  // the next run's waiting step, and stayed with it until the cancel completed (up to 180 s).
  it('a CANCELING run’s waiting claim does not take a freed slot from another run’s waiting step', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'holder', { steps: ['x@db'] });
    running(s, 'canceling', { steps: ['y@db'], priority: 5 });
    running(s, 'next', { steps: ['z@db'] });
    s.given(claim('holder', 'x'), claim('canceling', 'y'), claim('next', 'z'), cmd.terminate('canceling'));
    expect(s.status('canceling')).toBe('CANCELING');
    s.when(release('holder', 'x'));
    expect(claimStatus(s.state, 'canceling', 'y')).not.toBe('GRANTED');
    expect(claimStatus(s.state, 'next', 'z')).toBe('GRANTED');
  });

  it('the cancel timeout', () => {
    const s = contended();
    s.when(cmd.terminate('a'));
    s.advance(180);
    const events = s.when(slotCmd.expire());
    expect(events[0]).toEqual({
      type: 'RunFinished',
      data: {
        runId: 'a',
        status: 'CANCELED',
        reason: 'cancel timeout: CANCELING for more than 180 s',
        failureReason: 'CANCEL_TIMEOUT',
      },
    });
    // The slots it kept while CANCELING go now (its waiting claim may have gone at the request).
    const held = releasedAll('CANCELED').filter((e) => e.type === 'StepSlotReleased' && e.data.held);
    for (const e of held) expect(events).toContainEqual(e);
    expect(events.at(-1)).toEqual({ type: 'StepSlotGranted', data: { runId: 'b', stepKey: 'z', pool: 'db' } });
    expect(s.run('a').activeClaims.size).toBe(0);
  });

  it('a lease that expires', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    running(s, 'a', { steps: ['x@db'], leaseSeconds: 60 });
    running(s, 'b', { steps: ['z@db'] });
    s.given(claim('a', 'x'), claim('b', 'z'));
    s.advance(60);
    expect(slotSummary(s.when(slotCmd.expire()))).toEqual([
      'RunFinished:a',
      'StepSlotReleased:a/x',
      'StepSlotGranted:b/z',
    ]);
    expect(s.run('a')).toMatchObject({ status: 'FAILURE', finishReason: 'lease expired: no heartbeat for 60 s' });
  });

  it('the freed run capacity is admitted in the same append, after the slot decisions', () => {
    const s = contended();
    s.given(cmd.maxRuns(2), cmd.enqueue('c', { steps: ['w@db'] }));
    expect(s.status('c')).toBe('QUEUED');
    expect(slotSummary(s.when(cmd.finish('a')))).toEqual([
      'RunFinished:a',
      'StepSlotReleased:a/x',
      'StepSlotReleased:a/q',
      'StepSlotReleased:a/y',
      'StepSlotGranted:b/z',
      'RunAdmitted:c',
    ]);
  });

  it('several runs ending in one command release everything, and the grants follow claim order', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 2), cmd.maxRuns(-1));
    for (const id of ['a', 'b', 'c', 'd', 'e']) running(s, id, { steps: ['x@db'], leaseSeconds: id < 'c' ? 30 : null });
    s.given(claim('a', 'x'), claim('b', 'x'), claim('e', 'x'), claim('c', 'x'), claim('d', 'x'));
    s.advance(30);
    expect(slotSummary(s.when(slotCmd.expire()))).toEqual([
      'RunFinished:a',
      'StepSlotReleased:a/x',
      'RunFinished:b',
      'StepSlotReleased:b/x',
      'StepSlotGranted:e/x',
      'StepSlotGranted:c/x',
    ]);
    expect(claimOf(s.state, 'd', 'x')?.reasons).toEqual([poolHold('db', 2, 2)]);
  });

  it('a terminated QUEUED run had nothing to release', () => {
    const s = new SlotScenario();
    s.given(cmd.maxRuns(0), cmd.enqueue('q', { steps: ['x@db'] }));
    expect(s.when(cmd.terminate('q'))).toEqual([
      { type: 'RunFinished', data: { runId: 'q', status: 'CANCELED', reason: 'terminated while queued' } },
    ]);
  });
});
