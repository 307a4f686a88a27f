/**
 * Dagster's own scenarios for OP-granularity run blocking, from its queued-run-coordinator
 * daemon tests (test_queued_run_coordinator_daemon.py), replayed on the pure core. Dagster
 * submits runs, sets the pool's slots, then runs a daemon iteration; here the runs are enqueued
 * while maxConcurrentRuns is 0 and the "iteration" is setting it back to Dagster's default of
 * 10, so admission sees the same queue at once.
 */
import { describe, expect, it } from 'vitest';
import type { Command } from '../../src/domain/commands.js';
import { cmd, Scenario } from '../support/scenario.js';
import { slotCmd } from '../support/slots.js';

const hold = (change: { enabled?: boolean; runBuffer?: number; startedRunAllotmentSeconds?: number }): Command => ({
  type: 'ChangeConcurrencyConfig',
  change: { rootStepHold: change },
});

/** Runs submitted (queued, nothing admitted yet). */
function submitted(s: Scenario, runs: Record<string, Parameters<typeof cmd.enqueue>[1]>): Scenario {
  s.given(cmd.maxRuns(0));
  for (const [id, options] of Object.entries(runs)) s.given(cmd.enqueue(id, options));
  return s;
}

/** The daemon's iteration: the queue is looked at under Dagster's default run limit. */
const iterate = (s: Scenario) => s.given(cmd.maxRuns(10));

const launched = (s: Scenario) => s.runIds.filter((id) => s.status(id) !== 'QUEUED');

const fooAsset = { steps: ['foo_limited_asset@foo'] };

describe("Dagster's op-concurrency-aware dequeuing scenarios", () => {
  it('test_op_concurrency_aware_dequeuing: one foo slot launches one run; a second slot, one more', () => {
    const s = submitted(new Scenario(), { run_1: fooAsset, run_2: fooAsset, run_3: fooAsset });
    s.given(cmd.poolLimit('foo', 1));
    iterate(s);
    expect(launched(s)).toEqual(['run_1']);
    s.given(cmd.poolLimit('foo', 2));
    expect(launched(s)).toEqual(['run_1', 'run_2']);
  });

  it('test_op_concurrency_root_progress: a run whose root pool has no slot waits; one whose root pool has a slot goes', () => {
    const s = new Scenario().given(cmd.poolLimit('foo', 0), cmd.poolLimit('bar', 1));
    s.given(cmd.enqueue('run_1', fooAsset));
    expect(launched(s)).toEqual([]);
    s.given(cmd.enqueue('run_2', { steps: ['bar_limited_asset@bar'] }));
    expect(launched(s)).toEqual(['run_2']);
  });

  it('test_op_concurrency_partial_root: an unconstrained root step lets the run go', () => {
    const s = new Scenario().given(cmd.poolLimit('foo', 0));
    s.given(
      cmd.enqueue('run_1', {
        steps: [
          { key: 'foo_op', pool: 'foo' },
          { key: 'unconstrained_op', pool: null },
          { key: 'after', pool: 'foo', dependsOn: ['foo_op', 'unconstrained_op'] },
        ],
      }),
    );
    expect(launched(s)).toEqual(['run_1']);
  });

  it('test_in_progress_root_key_accounting: with no allotment window a STARTING run counts, a STARTED one does not', () => {
    const s = submitted(new Scenario(), { run_1: fooAsset, run_2: fooAsset });
    s.given(cmd.poolLimit('foo', 1), hold({ startedRunAllotmentSeconds: 0 }));
    iterate(s);
    expect(launched(s)).toEqual(['run_1']);
    expect(s.status('run_1')).toBe('STARTING');
    s.given(cmd.start('run_1'));
    expect(launched(s)).toEqual(['run_1', 'run_2']);
  });

  it('test_op_concurrency_aware_slot_buffer: a buffer of 1 launches one run over the free slots', () => {
    const s = submitted(new Scenario(), { run_1: fooAsset, run_2: fooAsset, run_3: fooAsset });
    s.given(cmd.poolLimit('foo', 1), hold({ runBuffer: 1 }));
    iterate(s);
    expect(launched(s)).toEqual(['run_1', 'run_2']);
  });

  it('test_op_concurrency_aware_started_allottment_time: a started run holds its root slot for the window, then not', () => {
    const s = submitted(new Scenario(), { run_1: fooAsset, run_2: fooAsset, run_3: fooAsset });
    s.given(cmd.poolLimit('foo', 1), hold({ startedRunAllotmentSeconds: 1 }));
    iterate(s);
    expect(launched(s)).toEqual(['run_1']);
    s.given(cmd.start('run_1'), slotCmd.expire());
    expect(launched(s)).toEqual(['run_1']);
    s.advance(2).given(slotCmd.expire());
    expect(launched(s)).toEqual(['run_1', 'run_2']);
  });

  it('test_multiple_blocks: a tag limit and a blocked root pool together hold the run, each named', () => {
    const s = new Scenario().given(
      cmd.tagLimits({ key: 'database', value: 'tiny', limit: 0 }),
      cmd.poolLimit('foo', 0),
      cmd.enqueue('run_1', { ...fooAsset, tags: { database: 'tiny' } }),
    );
    expect(launched(s)).toEqual([]);
    expect(s.blockedBy('run_1').map((c) => c.kind)).toEqual(['TAG_LIMIT', 'ROOT_STEP_POOLS']);
  });

  it('enabled: false (block_op_concurrency_limited_runs off) launches every run whatever the slots', () => {
    const s = submitted(new Scenario(), { run_1: fooAsset, run_2: fooAsset, run_3: fooAsset });
    s.given(cmd.poolLimit('foo', 1), hold({ enabled: false }));
    iterate(s);
    expect(launched(s)).toEqual(['run_1', 'run_2', 'run_3']);
  });
});
