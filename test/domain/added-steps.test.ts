/**
 * A claim that names a pool adds a step the run did not declare (what `sluice slot` relies on):
 * the step is recorded as added (RunStepAdded), claims like a declared one, and its pool counts
 * for the run from then on and is uncounted exactly once when the run ends. Every command also
 * goes through the SlotScenario checks (grants against a recount, counts recounted from
 * scratch, run pools matching their steps, replay = live state).
 */
import { describe, expect, it } from 'vitest';
import { poolCount } from '../../src/domain/constraints.js';
import { InvalidInputError, TransitionNotAllowedError } from '../../src/domain/errors.js';
import { cmd, replay, types } from '../support/scenario.js';
import { claimStatus, SlotScenario, slotCmd, slotFingerprint } from '../support/slots.js';

const { claim, release } = slotCmd;
const claimIn = (runId: string, stepKey: string, pool: string | null) =>
  ({ type: 'ClaimStepSlot', runId, stepKey, pool }) as const;

function running(s: SlotScenario, runId: string, steps: string[] = []): void {
  s.given(cmd.enqueue(runId, { steps }), cmd.start(runId));
  expect(s.status(runId)).toBe('STARTED');
}

describe('a claim that adds a step', () => {
  it('given a started run without steps, when it claims a step in a pool, then the step is added and granted', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('warehouse', 1));
    running(s, 'a');
    const events = s.when(claimIn('a', 'load', 'warehouse'));
    expect(events).toEqual([
      { type: 'RunStepAdded', data: { runId: 'a', stepKey: 'load', pool: 'warehouse' } },
      { type: 'StepSlotGranted', data: { runId: 'a', stepKey: 'load', pool: 'warehouse' } },
    ]);
    expect(s.run('a').steps).toEqual([{ key: 'load', pool: 'warehouse', priority: 0, added: true }]);
    expect(s.run('a').pools).toEqual(['warehouse']);
    expect(s.count(poolCount('warehouse'))).toBe(1);
  });

  it('given the pool full, when another run adds a step in it, then the claim waits with the pool as reason and is granted on release', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('warehouse', 1));
    running(s, 'a');
    running(s, 'b');
    s.given(claimIn('a', 'load', 'warehouse'));
    expect(types(s.when(claimIn('b', 'load', 'warehouse')))).toEqual(['RunStepAdded', 'StepSlotPending']);
    expect(claimStatus(s.state, 'b', 'load')).toBe('PENDING');
    expect(s.decisions('b').at(-1)?.message).toBe('step load of run b waits: pool warehouse: 1 of 1 slots in use');
    expect(types(s.when(release('a', 'load')))).toEqual(['StepSlotReleased', 'StepSlotGranted']);
    expect(claimStatus(s.state, 'b', 'load')).toBe('GRANTED');
  });

  it('given an added step, when it is released and claimed again, then nothing is added a second time', () => {
    const s = new SlotScenario();
    running(s, 'a');
    s.given(claimIn('a', 'load', 'warehouse'), release('a', 'load'));
    expect(types(s.when(claimIn('a', 'load', 'warehouse')))).toEqual(['StepSlotGranted']);
    expect(types(s.when(release('a', 'load')))).toEqual(['StepSlotReleased']);
    // Once added, the step is the run's: a claim without the pool names it too.
    expect(types(s.when(claim('a', 'load')))).toEqual(['StepSlotGranted']);
    expect(s.run('a').steps).toHaveLength(1);
  });

  it('given a second step in a pool the run already uses, then the pool is counted once', () => {
    const s = new SlotScenario();
    running(s, 'a', ['extract@warehouse']);
    expect(s.count(poolCount('warehouse'))).toBe(1);
    s.given(claimIn('a', 'load', 'warehouse'), claimIn('a', 'notify', 'api'));
    expect(s.run('a').pools).toEqual(['warehouse', 'api']);
    expect(s.count(poolCount('warehouse'))).toBe(1);
    expect(s.count(poolCount('api'))).toBe(1);
  });

  it.each([
    ['finishes', cmd.finish('a', 'SUCCESS')],
    ['is terminated with force', cmd.terminate('a', true)],
  ])('given added pools, when the run %s, then each pool is uncounted exactly once', (_how, end) => {
    const s = new SlotScenario();
    running(s, 'a');
    running(s, 'b');
    s.given(claimIn('a', 'load', 'warehouse'), claimIn('b', 'load', 'warehouse'), claimIn('a', 'notify', 'api'));
    expect(s.count(poolCount('warehouse'))).toBe(2);
    s.when(end);
    expect(s.count(poolCount('warehouse'))).toBe(1);
    expect(s.count(poolCount('api'))).toBe(0);
    expect(s.state.activeRunsByPool.get('warehouse')).toEqual(new Set(['b']));
    expect(s.state.activeRunsByPool.has('api')).toBe(false);
    expect(slotFingerprint(replay(s.log))).toBe(slotFingerprint(s.state));
  });

  it('given a run being canceled, when it holds an added step, then it keeps counting until it ends', () => {
    const s = new SlotScenario();
    running(s, 'a');
    s.given(claimIn('a', 'load', 'warehouse'), cmd.terminate('a'));
    expect(s.status('a')).toBe('CANCELING');
    expect(s.count(poolCount('warehouse'))).toBe(1);
    s.when(cmd.finish('a', 'CANCELED'));
    expect(s.count(poolCount('warehouse'))).toBe(0);
  });
});

describe('claims that cannot add a step', () => {
  it('a step the run does not declare, claimed without a pool, is bad input naming stepKey and saying how to add it', () => {
    const s = new SlotScenario();
    running(s, 'a');
    const error = s.rejects(claim('a', 'load'));
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).field).toBe('stepKey');
    expect(error.message).toBe('stepKey: run a declares no step "load"; give a pool to add it');
  });

  it('a declared step claimed in another pool is a conflict', () => {
    const s = new SlotScenario();
    running(s, 'a', ['load@warehouse', 'plain']);
    expect(s.rejects(claimIn('a', 'load', 'api')).message).toBe(
      'step load of run a is in pool warehouse, not pool api',
    );
    expect(s.rejects(claimIn('a', 'plain', 'api')).message).toBe('step plain of run a is in no pool, not pool api');
    expect(types(s.when(claimIn('a', 'load', 'warehouse')))).toEqual(['StepSlotGranted']);
  });

  it('a bad pool name is bad input naming pool', () => {
    const s = new SlotScenario();
    running(s, 'a');
    const error = s.rejects(claimIn('a', 'load', ''));
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).field).toBe('pool');
  });

  it('a QUEUED run cannot add a step', () => {
    const s = new SlotScenario();
    s.given(cmd.maxRuns(0), cmd.enqueue('q'));
    const error = s.rejects(claimIn('q', 'load', 'warehouse'));
    expect(error).toBeInstanceOf(TransitionNotAllowedError);
    expect(error.message).toBe('run q is QUEUED: only a STARTING or STARTED run can add a step');
    expect(s.run('q').steps).toEqual([]);
  });

  it('a run being canceled or finished cannot add a step', () => {
    const s = new SlotScenario();
    running(s, 'a');
    running(s, 'b');
    s.given(cmd.terminate('a'), cmd.finish('b'));
    expect(s.rejects(claimIn('a', 'load', 'warehouse'))).toBeInstanceOf(TransitionNotAllowedError);
    expect(s.rejects(claimIn('b', 'load', 'warehouse'))).toBeInstanceOf(TransitionNotAllowedError);
  });

  it('at RUN granularity a pool the run does not use cannot join it, but a step in one of its pools can', () => {
    const s = new SlotScenario();
    s.given(cmd.granularity('RUN'), cmd.poolLimit('warehouse', 1));
    running(s, 'a', ['extract@api']);
    const error = s.rejects(claimIn('a', 'load', 'warehouse'));
    expect(error).toBeInstanceOf(TransitionNotAllowedError);
    expect(error.message).toContain('pool warehouse is not one of run a');
    expect(error.message).toContain('declare a step in warehouse at enqueue');
    expect(s.count(poolCount('warehouse'))).toBe(0);
    expect(types(s.when(claimIn('a', 'load', 'api')))).toEqual(['RunStepAdded', 'StepSlotGranted']);
    expect(s.count(poolCount('api'))).toBe(1);
  });

  it('given a pool added at OP granularity, when granularity turns RUN, then the run counts against that pool limit', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('warehouse', 1));
    running(s, 'a');
    s.given(claimIn('a', 'load', 'warehouse'), cmd.granularity('RUN'), cmd.enqueue('b', { steps: ['x@warehouse'] }));
    expect(s.status('b')).toBe('QUEUED');
    expect(s.blockedBy('b').map((c) => c.message)).toEqual(['pool warehouse: 1 of 1 runs in progress']);
    s.when(cmd.finish('a'));
    expect(s.status('b')).toBe('STARTING');
  });
});
