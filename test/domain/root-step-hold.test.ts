/**
 * The root-step hold (Dagster's OP-granularity run blocking, `block_op_concurrency_limited_runs`
 * and `pools.op_granularity_run_buffer`), on the pure core: a queued run all of whose root steps
 * are in pools with no free slot stays queued, counting slots in use, claims waiting and the
 * root steps promised to runs admitted but not yet claiming. Every command also goes through the
 * Scenario checks against the brute-force reference (test/support/reference.ts).
 */
import { describe, expect, it } from 'vitest';
import { poolView } from '../../projections/pools.js';
import { initialState } from '../../projections/state.js';
import { configCommands } from '../../src/app/apply-dagster-yaml.js';
import { parseConcurrencyConfigFile } from '../../src/dagster-yaml.js';
import type { Command } from '../../src/domain/commands.js';
import type { Constraint } from '../../src/domain/constraints.js';
import { nextWakeUp } from '../../src/domain/decide.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { simulateChange } from '../../src/domain/simulate.js';
import { ALLOTMENT_ENV, readSettings, SettingsError } from '../../src/settings.js';
import { cmd, limitStates, replay, Scenario, stateDifference, summary } from '../support/scenario.js';
import { slotCmd } from '../support/slots.js';

const { claim, release, expire } = slotCmd;

const hold = (change: { enabled?: boolean; runBuffer?: number; startedRunAllotmentSeconds?: number }): Command => ({
  type: 'ChangeConcurrencyConfig',
  change: { rootStepHold: change },
});

/** `kind pool inUse/limit` of each reason. */
const brief = (reasons: readonly Constraint[]) =>
  reasons.map((c) => `${c.kind} ${c.pool ?? '-'} ${c.inUse}/${c.limit}`);

/** A scenario with pool db limited to `limit` and run a admitted with one root step in db. */
function dbTaken(limit = 1): Scenario {
  const s = new Scenario().given(cmd.poolLimit('db', limit), cmd.enqueue('a', { steps: ['load@db'] }));
  expect(s.status('a')).toBe('STARTING');
  return s;
}

describe('a run whose root steps all face full pools stays queued', () => {
  it('counts the root steps of a STARTING run as holding their slots, and names the pool with its count', () => {
    const s = dbTaken();
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 0, pending: 0, promised: 1 });
    const events = s.when(cmd.enqueue('b', { steps: ['load@db'] }));
    expect(summary(events)).toEqual(['RunEnqueued:b', 'RunBlocked:b']);
    expect(brief(s.blockedBy('b'))).toEqual(['ROOT_STEP_POOLS db 1/1']);
    expect(s.blockedBy('b')[0]?.message).toBe(
      'every root step would wait: pool db has 1 of 1 slots taken (in use, pending, or promised to admitted runs not yet claiming; limit plus run buffer)',
    );
    expect(limitStates(events)).toEqual(['root steps in pool db: ROOT_STEP_POOLS 1/1']);
  });

  it('admits a run with one root step in a pool with room, or without a pool, or in an unlimited pool', () => {
    const s = dbTaken().given(cmd.poolLimit('api', 1));
    s.when(cmd.enqueue('both', { steps: ['x@db', 'y@api'] }));
    s.when(cmd.enqueue('free', { steps: ['x@db', 'y'] }));
    s.when(cmd.enqueue('open', { steps: ['x@db', 'y@unlimited'] }));
    expect(s.statuses('both', 'free', 'open')).toEqual({ both: 'STARTING', free: 'STARTING', open: 'STARTING' });
  });

  it('looks at root steps only: a run whose pooled steps all depend on a step without a pool goes', () => {
    const s = dbTaken();
    s.when(cmd.enqueue('downstream', { steps: [{ key: 'prep' }, { key: 'load', pool: 'db', dependsOn: ['prep'] }] }));
    expect(s.status('downstream')).toBe('STARTING');
    // ...while a run whose only root step is in the full pool waits, whatever follows it.
    s.when(
      cmd.enqueue('upstream', {
        steps: [
          { key: 'load', pool: 'db' },
          { key: 'report', dependsOn: ['load'] },
        ],
      }),
    );
    expect(s.status('upstream')).toBe('QUEUED');
  });

  it('names every root pool, each with its count, when all are full', () => {
    const s = dbTaken().given(cmd.poolLimit('api', 1), cmd.enqueue('c', { steps: ['call@api'] }));
    s.when(cmd.enqueue('b', { steps: ['load@db', 'call@api'] }));
    expect(brief(s.blockedBy('b'))).toEqual(['ROOT_STEP_POOLS db 1/1', 'ROOT_STEP_POOLS api 1/1']);
  });

  it('joins the run limits: a run held by both names both', () => {
    const s = dbTaken().given(cmd.maxRuns(1));
    s.when(cmd.enqueue('b', { steps: ['load@db'] }));
    expect(brief(s.blockedBy('b'))).toEqual(['MAX_CONCURRENT_RUNS - 1/1', 'ROOT_STEP_POOLS db 1/1']);
  });

  it('counts slots in use and claims waiting as well as promised root steps', () => {
    const s = new Scenario().given(cmd.poolLimit('db', 2), cmd.enqueue('a', { steps: ['x@db', 'y@db', 'z@db'] }));
    expect(poolView(s.state, 'db')).toMatchObject({ promised: 3 });
    s.given(cmd.start('a'), claim('a', 'x'), claim('a', 'y'), claim('a', 'z'));
    expect(poolView(s.state, 'db')).toMatchObject({ inUse: 2, pending: 1, promised: 0 });
    s.when(cmd.enqueue('b', { steps: ['load@db'] }));
    expect(brief(s.blockedBy('b'))).toEqual(['ROOT_STEP_POOLS db 3/2']);
  });
});

describe('what lets a held run go, in the same append', () => {
  it('a release that frees the pool below its limit', () => {
    const s = dbTaken().given(cmd.start('a'), claim('a', 'load'), cmd.enqueue('b', { steps: ['load@db'] }));
    // Claiming a promised root step moves its count from promised to in use: nothing changes.
    expect(brief(s.blockedBy('b'))).toEqual(['ROOT_STEP_POOLS db 1/1']);
    const events = s.when(release('a', 'load'));
    expect(summary(events)).toEqual(['StepSlotReleased:a', 'RunAdmitted:b']);
    expect(s.waits('b')).toEqual([{ from: s.now, to: s.now, reasons: expect.any(Array) }]);
  });

  it('the end of the run that was promised the slot', () => {
    const s = dbTaken().given(cmd.enqueue('b', { steps: ['load@db'] }));
    expect(summary(s.when(cmd.finish('a', 'FAILURE')))).toEqual(['RunFinished:a', 'RunAdmitted:b']);
  });

  it('a cancel request: a CANCELING run is not counted (as in Dagster), its waiting claims neither', () => {
    const s = dbTaken().given(cmd.enqueue('b', { steps: ['load@db'] }));
    expect(summary(s.when(cmd.terminate('a')))).toEqual(['RunCancellationRequested:a', 'RunAdmitted:b']);
  });

  it('the end of a STARTED run’s allotment window (5 s by default), fired by the run monitor', () => {
    const s = dbTaken().given(cmd.start('a'), cmd.enqueue('b', { steps: ['load@db'] }));
    const startedAt = Date.parse(s.now);
    expect(nextWakeUp(s.state)).toBe(startedAt + 5_000);
    s.advance(4.9);
    expect(s.when(expire())).toEqual([]);
    s.advance(0.1);
    const events = s.when(expire());
    expect(summary(events)).toEqual(['RootStepAllotmentEnded:a', 'RunAdmitted:b']);
    expect(s.run('a').allotmentEndedAt).toBe(s.now);
    // b is STARTING: its own root step is promised now, and nothing of a is.
    expect(poolView(s.state, 'db')).toMatchObject({ promised: 1 });
    expect(nextWakeUp(s.state)).toBe(Date.parse(s.run('b').admittedAt as string) + 180_000);
  });

  it('a STARTING run counts until it starts or its start timeout ends it, however long', () => {
    const s = dbTaken().given(cmd.enqueue('b', { steps: ['load@db'] }));
    s.advance(179);
    expect(s.when(expire())).toEqual([]);
    s.advance(1);
    expect(summary(s.when(expire()))).toEqual(['RunFinished:a', 'RunAdmitted:b']);
  });

  it('with no allotment window, the start itself', () => {
    const s = dbTaken().given(hold({ startedRunAllotmentSeconds: 0 }), cmd.enqueue('b', { steps: ['load@db'] }));
    expect(summary(s.when(cmd.start('a')))).toEqual(['RunStarted:a', 'RootStepAllotmentEnded:a', 'RunAdmitted:b']);
  });

  it('a started run that claimed its root steps has no window to wait for', () => {
    const s = dbTaken(2).given(cmd.start('a'), claim('a', 'load'));
    expect(nextWakeUp(s.state)).toBeNull();
  });

  it('raising the pool limit, or the run buffer, or turning the hold off', () => {
    for (const edit of [cmd.poolLimit('db', 2), hold({ runBuffer: 1 }), hold({ enabled: false })]) {
      const s = dbTaken().given(cmd.enqueue('b', { steps: ['load@db'] }));
      expect(summary(s.when(edit)).at(-1), JSON.stringify(edit)).toBe('RunAdmitted:b');
    }
  });

  it('switching to RUN granularity, where pool limits count runs instead', () => {
    const s = dbTaken(2).given(cmd.enqueue('b', { steps: ['load@db'] }), cmd.enqueue('c', { steps: ['load@db'] }));
    expect(s.statuses('b', 'c')).toEqual({ b: 'STARTING', c: 'QUEUED' });
    s.when(cmd.granularity('RUN'));
    // At RUN granularity db's limit of 2 counts a and b: c now waits for the pool's run limit.
    expect(brief(s.blockedBy('c'))).toEqual(['POOL_LIMIT db 2/2']);
  });
});

describe('the run buffer and the switch', () => {
  it('lets that many runs over the free slots go (op_granularity_run_buffer)', () => {
    const s = new Scenario().given(cmd.poolLimit('db', 1), hold({ runBuffer: 2 }));
    for (const id of ['a', 'b', 'c', 'd']) s.when(cmd.enqueue(id, { steps: ['load@db'] }));
    expect(s.statuses()).toEqual({ a: 'STARTING', b: 'STARTING', c: 'STARTING', d: 'QUEUED' });
    expect(brief(s.blockedBy('d'))).toEqual(['ROOT_STEP_POOLS db 3/3']);
  });

  it('enabled: false admits regardless, as Sluice did before', () => {
    const s = new Scenario().given(cmd.poolLimit('db', 0), hold({ enabled: false }));
    s.when(cmd.enqueue('a', { steps: ['load@db'] }));
    expect(s.status('a')).toBe('STARTING');
  });

  it('turning it on again preempts nothing and holds what comes next', () => {
    const s = new Scenario().given(cmd.poolLimit('db', 1), hold({ enabled: false }));
    s.given(cmd.enqueue('a', { steps: ['load@db'] }), cmd.enqueue('b', { steps: ['load@db'] }));
    s.when(hold({ enabled: true }));
    expect(s.statuses('a', 'b')).toEqual({ a: 'STARTING', b: 'STARTING' });
    s.when(cmd.enqueue('c', { steps: ['load@db'] }));
    expect(brief(s.blockedBy('c'))).toEqual(['ROOT_STEP_POOLS db 2/1']);
  });

  it('records each setting change once, and refuses bad values naming the field, changing nothing', () => {
    const s = new Scenario();
    expect(s.state.config.rootStepHold).toEqual({ enabled: true, runBuffer: 0, startedRunAllotmentSeconds: 5 });
    expect(summary(s.when(hold({ runBuffer: 1 })))).toEqual(['RootStepHoldSet']);
    expect(s.when(hold({ runBuffer: 1 }))).toEqual([]);
    for (const [bad, field] of [
      [{ runBuffer: -1 }, 'change.rootStepHold.runBuffer'],
      [{ runBuffer: 1.5 }, 'change.rootStepHold.runBuffer'],
      [{ startedRunAllotmentSeconds: 86_401 }, 'change.rootStepHold.startedRunAllotmentSeconds'],
      [{ enabled: 'yes' }, 'change.rootStepHold.enabled'],
    ] as const) {
      const error = s.rejects(hold(bad as never));
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).field).toBe(field);
    }
  });
});

describe('reads and the log', () => {
  it('a held run’s waits and decisions are derived from its first hold and its pool’s records', () => {
    const s = dbTaken().given(cmd.start('a'), claim('a', 'load'), cmd.enqueue('b', { steps: ['load@db'] }));
    const from = s.now;
    s.advance(10).when(release('a', 'load'));
    expect(s.waits('b')).toEqual([
      { from, to: s.now, reasons: [expect.objectContaining({ kind: 'ROOT_STEP_POOLS' })] },
    ]);
    expect(s.decisions('b').map((d) => d.kind)).toEqual(['BLOCKED', 'ADMITTED']);
  });

  it('a run held by another limit first, whose root pools fill later, gets a new stretch naming them', () => {
    const s = dbTaken().given(cmd.maxRuns(1), cmd.poolLimit('api', 1));
    // b: root steps in db (full) and api (free); held by max runs only.
    s.when(cmd.enqueue('b', { steps: ['load@db', 'call@api'] }));
    expect(brief(s.blockedBy('b'))).toEqual(['MAX_CONCURRENT_RUNS - 1/1']);
    s.given(cmd.start('a'));
    s.advance(1).when({ type: 'ClaimStepSlot', runId: 'a', stepKey: 'call', pool: 'api' });
    expect(brief(s.blockedBy('b'))).toEqual([
      'MAX_CONCURRENT_RUNS - 1/1',
      'ROOT_STEP_POOLS db 1/1',
      'ROOT_STEP_POOLS api 1/1',
    ]);
    expect(s.waits('b').map((w) => brief(w.reasons))).toEqual([
      ['MAX_CONCURRENT_RUNS - 1/1'],
      ['MAX_CONCURRENT_RUNS - 1/1', 'ROOT_STEP_POOLS db 1/1', 'ROOT_STEP_POOLS api 1/1'],
    ]);
  });

  it('a replay of the log gives the same state, promised slots and allotment windows included', () => {
    const s = dbTaken().given(cmd.start('a'), cmd.enqueue('b', { steps: ['load@db'] }));
    s.advance(6).given(expire(), claim('b', 'load'));
    expect(stateDifference(replay(s.log), s.state)).toBeNull();
  });

  it('simulate says which held runs a limit change would let go', () => {
    const s = dbTaken().given(cmd.enqueue('b', { steps: ['load@db'] }), cmd.enqueue('c', { steps: ['load@db'] }));
    const what = simulateChange(s.state, { poolLimits: [{ pool: 'db', limit: 2 }] }, { now: s.now, newRunId: 'x' });
    expect(what.wouldAdmit.map((r) => r.id)).toEqual(['b']);
    expect(what.stillQueued.map(({ run, holds }) => [run.id, brief(holds)])).toEqual([
      ['c', ['ROOT_STEP_POOLS db 2/2']],
    ]);
  });
});

describe('the settings Dagster users already write', () => {
  const file = (text: string) =>
    configCommands(parseConcurrencyConfigFile(text, 'dagster.yaml', {}), initialState().monitoring);

  it('concurrency.pools.op_granularity_run_buffer sets the run buffer', () => {
    const s = new Scenario().given(...file('concurrency:\n  pools:\n    op_granularity_run_buffer: 2\n'));
    expect(s.state.config.rootStepHold).toEqual({ enabled: true, runBuffer: 2, startedRunAllotmentSeconds: 5 });
  });

  it('the older block_op_concurrency_limited_runs: {enabled, op_concurrency_slot_buffer}, under run_queue or the coordinator', () => {
    const s = new Scenario().given(
      ...file(
        'run_queue:\n  block_op_concurrency_limited_runs:\n    enabled: false\n    op_concurrency_slot_buffer: 1\n',
      ),
    );
    expect(s.state.config.rootStepHold).toEqual({ enabled: false, runBuffer: 1, startedRunAllotmentSeconds: 5 });
    s.given(
      ...file(
        'run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n  config:\n    block_op_concurrency_limited_runs: {enabled: true}\n',
      ),
    );
    expect(s.state.config.rootStepHold.enabled).toBe(true);
  });

  it('a file that says nothing of it leaves the hold as it is; the same file twice records nothing new', () => {
    expect(file('concurrency:\n  runs:\n    max_concurrent_runs: 3\n')).toEqual([
      { type: 'SetMaxConcurrentRuns', limit: 3 },
    ]);
    const s = new Scenario().given(...file('concurrency:\n  pools:\n    op_granularity_run_buffer: 2\n'));
    expect(file('concurrency:\n  pools:\n    op_granularity_run_buffer: 2\n').flatMap((c) => s.when(c))).toEqual([]);
  });

  it("Dagster's DAGSTER_OP_CONCURRENCY_KEYS_ALLOTTED_FOR_STARTED_RUN_SECONDS is read, and checked", () => {
    expect(readSettings({ [ALLOTMENT_ENV]: '30' }).startedRunAllotmentSeconds).toBe(30);
    expect(readSettings({}).startedRunAllotmentSeconds).toBeUndefined();
    for (const bad of ['-1', '2.5', 'soon', '86401']) {
      expect(() => readSettings({ [ALLOTMENT_ENV]: bad })).toThrow(SettingsError);
    }
    expect(() => readSettings({ [ALLOTMENT_ENV]: 'soon' })).toThrow(
      'DAGSTER_OP_CONCURRENCY_KEYS_ALLOTTED_FOR_STARTED_RUN_SECONDS must be a whole number of seconds from 0 to 86400, got "soon"',
    );
  });
});
