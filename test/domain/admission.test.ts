/**
 * The decider against DESIGN section 1, one rule per test, written given / when / then.
 * Every command also runs through the reference checks of test/support (see Scenario).
 */
import { describe, expect, it } from 'vitest';
import type { Command } from '../../src/domain/commands.js';
import type { Constraint } from '../../src/domain/constraints.js';
import { ALL_RUNS, poolCount, tagValueCount } from '../../src/domain/constraints.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { cmd, fingerprint, limitStates, Scenario, summary, types } from '../support/scenario.js';

const maxRunsHold = (limit: number, inUse: number): Constraint => ({
  kind: 'MAX_CONCURRENT_RUNS',
  key: null,
  value: null,
  pool: null,
  perUniqueValue: false,
  limit,
  inUse,
  message: `max concurrent runs: ${inUse} of ${limit} runs in progress`,
});

const tagHold = (
  key: string,
  value: string | null,
  limit: number,
  inUse: number,
  perUniqueValue = false,
): Constraint => ({
  kind: 'TAG_LIMIT',
  key,
  value,
  pool: null,
  perUniqueValue,
  limit,
  inUse,
  message: perUniqueValue
    ? `tag ${key}=${value} (limit per value of ${key}): ${inUse} of ${limit} runs in progress`
    : value === null
      ? `tag ${key} (any value): ${inUse} of ${limit} runs in progress`
      : `tag ${key}=${value}: ${inUse} of ${limit} runs in progress`,
});

const poolHold = (pool: string, limit: number, inUse: number): Constraint => ({
  kind: 'POOL_LIMIT',
  key: null,
  value: null,
  pool,
  perUniqueValue: false,
  limit,
  inUse,
  message: `pool ${pool}: ${inUse} of ${limit} runs in progress`,
});

/** Enqueues runs r1..rn (or with a prefix) with the same options. */
function enqueueMany(s: Scenario, n: number, prefix = 'r', options?: Parameters<typeof cmd.enqueue>[1]): string[] {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
  for (const id of ids) s.when(cmd.enqueue(id, options));
  return ids;
}

const reasonsOf = (events: DomainEvent[], runId: string) =>
  events.flatMap((e) => (e.type === 'RunBlocked' && e.data.runId === runId ? [e.data.reasons] : []))[0];

// -----------------------------------------------------------------------------------------------

describe('run statuses and transitions', () => {
  it('given room, when a run is enqueued, then it is admitted at once: QUEUED → STARTING', () => {
    const s = new Scenario();
    const events = s.when(cmd.enqueue('r1'));
    expect(summary(events)).toEqual(['RunEnqueued:r1', 'RunAdmitted:r1']);
    expect(s.status('r1')).toBe('STARTING');
    expect(s.run('r1').enqueuedAt).toBe(s.now);
    expect(s.run('r1').admittedAt).toBe(s.now);
    expect(s.count(ALL_RUNS)).toBe(1);
  });

  it('given a STARTING run, when markRunStarted, then it is STARTED and still in progress', () => {
    const s = new Scenario().given(cmd.enqueue('r1'));
    s.advance(5);
    expect(summary(s.when(cmd.start('r1')))).toEqual(['RunStarted:r1']);
    expect(s.status('r1')).toBe('STARTED');
    expect(s.run('r1').startedAt).toBe(s.now);
    expect(s.count(ALL_RUNS)).toBe(1);
  });

  it('given a STARTED run, when markRunStarted again, then nothing is appended', () => {
    const s = new Scenario().given(cmd.enqueue('r1'), cmd.start('r1'));
    expect(s.when(cmd.start('r1'))).toEqual([]);
  });

  it.each(['SUCCESS', 'FAILURE', 'CANCELED'])(
    'given a STARTED run, when markRunFinished(%s), then it ends so and frees its capacity',
    (status) => {
      const s = new Scenario().given(cmd.enqueue('r1'), cmd.start('r1'));
      s.advance(60);
      const events = s.when(cmd.finish('r1', status));
      expect(events).toEqual([{ type: 'RunFinished', data: { runId: 'r1', status, reason: null } }]);
      expect(s.status('r1')).toBe(status);
      expect(s.run('r1').finishedAt).toBe(s.now);
      expect(s.count(ALL_RUNS)).toBe(0);
    },
  );

  it('given a STARTING run, when markRunFinished(FAILURE), then it fails without having started', () => {
    const s = new Scenario().given(cmd.enqueue('r1'));
    expect(summary(s.when(cmd.finish('r1', 'FAILURE')))).toEqual(['RunFinished:r1']);
    expect(s.status('r1')).toBe('FAILURE');
  });

  it('given a finished run, when markRunFinished with the same status, then nothing is appended', () => {
    const s = new Scenario().given(cmd.enqueue('r1'), cmd.finish('r1', 'SUCCESS'));
    expect(s.when(cmd.finish('r1', 'SUCCESS'))).toEqual([]);
  });

  it('given a STARTED run, when terminated, then it is CANCELING and still counts as in progress', () => {
    const s = new Scenario().given(cmd.enqueue('r1'), cmd.start('r1'));
    expect(summary(s.when(cmd.terminate('r1')))).toEqual(['RunCancellationRequested:r1']);
    expect(s.status('r1')).toBe('CANCELING');
    expect(s.run('r1').cancelRequestedAt).toBe(s.now);
    expect(s.count(ALL_RUNS)).toBe(1);
  });

  it('given a CANCELING run, when terminated again without force, then nothing is appended', () => {
    const s = new Scenario().given(cmd.enqueue('r1'), cmd.terminate('r1'));
    expect(s.when(cmd.terminate('r1'))).toEqual([]);
  });

  it('given a CANCELING run, when markRunFinished(CANCELED), then it is CANCELED', () => {
    const s = new Scenario().given(cmd.enqueue('r1'), cmd.terminate('r1'));
    expect(summary(s.when(cmd.finish('r1', 'CANCELED')))).toEqual(['RunFinished:r1']);
    expect(s.status('r1')).toBe('CANCELED');
    expect(s.count(ALL_RUNS)).toBe(0);
  });

  it('given no run id, when a run is enqueued, then it gets the id from the context', () => {
    const s = new Scenario();
    const [enqueued] = s.when(cmd.enqueue(null));
    expect(enqueued?.type).toBe('RunEnqueued');
    const runId = enqueued?.type === 'RunEnqueued' ? enqueued.data.runId : '';
    expect(runId).toMatch(/^auto-/);
    expect(s.status(runId)).toBe('STARTING');
  });
});

// -----------------------------------------------------------------------------------------------

describe('maxConcurrentRuns', () => {
  it('given the defaults, when 11 runs are enqueued, then 10 start and the 11th waits (default 10)', () => {
    const s = new Scenario();
    expect(s.state.config.maxConcurrentRuns).toBe(10);
    enqueueMany(s, 10);
    const events = s.when(cmd.enqueue('r11'));
    expect(summary(events)).toEqual(['RunEnqueued:r11', 'RunBlocked:r11']);
    expect(s.runsIn('STARTING')).toHaveLength(10);
    expect(s.blockedBy('r11')).toEqual([maxRunsHold(10, 10)]);
  });

  it('given -1, when many runs are enqueued, then every one is admitted (no limit)', () => {
    const s = new Scenario().given(cmd.maxRuns(-1));
    enqueueMany(s, 40);
    expect(s.runsIn('STARTING')).toHaveLength(40);
    expect(s.runsIn('QUEUED')).toEqual([]);
  });

  it('given -1 and a full tag limit, when a run is held, then no max-concurrent-runs limit is named', () => {
    const s = new Scenario().given(cmd.maxRuns(-1), cmd.tagLimits({ key: 'team', limit: 0 }));
    s.when(cmd.enqueue('r1', { tags: { team: 'a' } }));
    expect(s.blockedBy('r1')).toEqual([tagHold('team', null, 0, 0)]);
  });

  it('given 0, when a run is enqueued, then nothing is admitted and the run is held by the limit of 0', () => {
    const s = new Scenario().given(cmd.maxRuns(0));
    expect(summary(s.when(cmd.enqueue('r1')))).toEqual(['RunEnqueued:r1', 'RunBlocked:r1']);
    expect(s.blockedBy('r1')).toEqual([maxRunsHold(0, 0)]);
  });

  it('given any config, when maxConcurrentRuns is set below -1, then it is rejected naming the limit', () => {
    const s = new Scenario();
    const error = s.rejects(cmd.maxRuns(-2));
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).field).toBe('limit');
    expect(s.state.config.maxConcurrentRuns).toBe(10);
  });

  it('given the same value, when maxConcurrentRuns is set, then nothing is appended', () => {
    const s = new Scenario();
    expect(s.when(cmd.maxRuns(10))).toEqual([]);
  });
});

// -----------------------------------------------------------------------------------------------

describe('tag limits', () => {
  it('given {key, value} limit 1, when runs are enqueued, then only runs with exactly that tag count', () => {
    const s = new Scenario().given(cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }));
    s.when(cmd.enqueue('a1', { tags: { team: 'a' } }));
    s.when(cmd.enqueue('a2', { tags: { team: 'a' } }));
    s.when(cmd.enqueue('b1', { tags: { team: 'b' } }));
    s.when(cmd.enqueue('none'));
    expect(s.statuses()).toEqual({ a1: 'STARTING', a2: 'QUEUED', b1: 'STARTING', none: 'STARTING' });
    expect(s.blockedBy('a2')).toEqual([tagHold('team', 'a', 1, 1)]);
    expect(s.blockedBy('a2')[0]?.message).toBe('tag team=a: 1 of 1 runs in progress');
  });

  it('given {key} limit 2, when runs are enqueued, then runs with the key count whatever its value', () => {
    const s = new Scenario().given(cmd.tagLimits({ key: 'team', limit: 2 }));
    s.when(cmd.enqueue('a', { tags: { team: 'a' } }));
    s.when(cmd.enqueue('b', { tags: { team: 'b' } }));
    s.when(cmd.enqueue('c', { tags: { team: 'c' } }));
    s.when(cmd.enqueue('none', { tags: { other: 'x' } }));
    expect(s.statuses()).toEqual({ a: 'STARTING', b: 'STARTING', c: 'QUEUED', none: 'STARTING' });
    expect(s.blockedBy('c')).toEqual([tagHold('team', null, 2, 2)]);
    expect(s.blockedBy('c')[0]?.message).toBe('tag team (any value): 2 of 2 runs in progress');
  });

  it('given {key, applyLimitPerUniqueValue} limit 1, when runs are enqueued, then each value has its own counter', () => {
    const s = new Scenario().given(cmd.tagLimits({ key: 'team', applyLimitPerUniqueValue: true, limit: 1 }));
    s.when(cmd.enqueue('a1', { tags: { team: 'a' } }));
    s.when(cmd.enqueue('b1', { tags: { team: 'b' } }));
    s.when(cmd.enqueue('a2', { tags: { team: 'a' } }));
    s.when(cmd.enqueue('c1', { tags: { team: 'c' } }));
    expect(s.statuses()).toEqual({ a1: 'STARTING', b1: 'STARTING', a2: 'QUEUED', c1: 'STARTING' });
    expect(s.blockedBy('a2')).toEqual([tagHold('team', 'a', 1, 1, true)]);
    expect(s.blockedBy('a2')[0]?.message).toBe('tag team=a (limit per value of team): 1 of 1 runs in progress');
  });

  it('given a per-value limit, when a run of another value finishes, then the held run stays held', () => {
    const s = new Scenario().given(
      cmd.tagLimits({ key: 'team', applyLimitPerUniqueValue: true, limit: 1 }),
      cmd.enqueue('a1', { tags: { team: 'a' } }),
      cmd.enqueue('b1', { tags: { team: 'b' } }),
      cmd.enqueue('a2', { tags: { team: 'a' } }),
    );
    expect(summary(s.when(cmd.finish('b1')))).toEqual(['RunFinished:b1']);
    expect(summary(s.when(cmd.finish('a1')))).toEqual(['RunFinished:a1', 'RunAdmitted:a2']);
  });
});

// -----------------------------------------------------------------------------------------------

describe('pool limits', () => {
  it('given RUN granularity, when a run has several steps in a pool, then it counts once in that pool', () => {
    const s = new Scenario().given(cmd.granularity('RUN'), cmd.poolLimit('p1', 2));
    s.when(cmd.enqueue('r1', { pools: ['p1', 'p1', 'p1'] }));
    expect(s.count(poolCount('p1'))).toBe(1);
    s.when(cmd.enqueue('r2', { pools: ['p1'] }));
    s.when(cmd.enqueue('r3', { steps: ['x@p1', 'y@p2'] }));
    expect(s.statuses()).toEqual({ r1: 'STARTING', r2: 'STARTING', r3: 'QUEUED' });
    expect(s.blockedBy('r3')).toEqual([poolHold('p1', 2, 2)]);
  });

  it('given OP granularity (the default), when runs use a pool of limit 0, then only a run whose every root step faces a full pool waits', () => {
    const s = new Scenario().given(cmd.poolLimit('p1', 0));
    expect(s.state.config.poolGranularity).toBe('OP');
    s.when(cmd.enqueue('r1', { pools: ['p1'] }));
    s.when(cmd.enqueue('r2', { pools: ['p1', 'p2'] }));
    expect(s.statuses()).toEqual({ r1: 'QUEUED', r2: 'STARTING' });
    expect(s.blockedBy('r1').map((c) => `${c.kind} ${c.pool} ${c.inUse}/${c.limit}`)).toEqual(
      // r2 was admitted after it: its root step in p1 is promised the pool's slot.
      ['ROOT_STEP_POOLS p1 1/0'],
    );
  });

  it('given OP granularity with the root-step hold off, when runs use a pool of limit 0, then they are admitted anyway', () => {
    const s = new Scenario({ rootStepHold: false }).given(cmd.poolLimit('p1', 0));
    s.when(cmd.enqueue('r1', { pools: ['p1'] }));
    s.when(cmd.enqueue('r2', { pools: ['p1', 'p2'] }));
    expect(s.statuses()).toEqual({ r1: 'STARTING', r2: 'STARTING' });
  });

  it('given RUN granularity and defaultPoolLimit 1, when two runs use a pool with no limit, then the second waits', () => {
    const s = new Scenario().given(cmd.granularity('RUN'), cmd.defaultPoolLimit(1));
    s.when(cmd.enqueue('r1', { pools: ['p2'] }));
    s.when(cmd.enqueue('r2', { pools: ['p2'] }));
    expect(s.statuses()).toEqual({ r1: 'STARTING', r2: 'QUEUED' });
    expect(s.blockedBy('r2')).toEqual([poolHold('p2', 1, 1)]);
  });

  it('given RUN granularity and defaultPoolLimit null, when many runs use a pool, then the pool is unlimited', () => {
    const s = new Scenario().given(cmd.granularity('RUN'));
    expect(s.state.config.defaultPoolLimit).toBeNull();
    enqueueMany(s, 5, 'r', { pools: ['p2'] });
    expect(s.runsIn('STARTING')).toHaveLength(5);
  });

  it("given a default of 1 and a pool's own limit of 3, when runs use that pool, then its own limit wins", () => {
    const s = new Scenario().given(cmd.granularity('RUN'), cmd.defaultPoolLimit(1), cmd.poolLimit('p1', 3));
    enqueueMany(s, 4, 'r', { pools: ['p1'] });
    expect(s.runsIn('STARTING')).toEqual(['r1', 'r2', 'r3']);
    expect(s.blockedBy('r4')).toEqual([poolHold('p1', 3, 3)]);
  });

  it("given a default of 5 and a pool's own limit of 0, when runs are enqueued, then only that pool holds", () => {
    const s = new Scenario().given(cmd.granularity('RUN'), cmd.defaultPoolLimit(5), cmd.poolLimit('p1', 0));
    s.when(cmd.enqueue('in-p1', { pools: ['p1'] }));
    s.when(cmd.enqueue('in-p2', { pools: ['p2'] }));
    expect(s.statuses()).toEqual({ 'in-p1': 'QUEUED', 'in-p2': 'STARTING' });
    expect(s.blockedBy('in-p1')).toEqual([poolHold('p1', 0, 0)]);
  });

  it('given a pool limit, when it is deleted, then the pool falls back to the default limit', () => {
    const s = new Scenario().given(
      cmd.granularity('RUN'),
      cmd.defaultPoolLimit(2),
      cmd.poolLimit('p1', 1),
      cmd.enqueue('r1', { pools: ['p1'] }),
      cmd.enqueue('r2', { pools: ['p1'] }),
      cmd.enqueue('r3', { pools: ['p1'] }),
    );
    const events = s.when(cmd.deletePoolLimit('p1'));
    expect(summary(events)).toEqual(['PoolLimitDeleted', 'RunAdmitted:r2']);
    // Still held by the same limit (pool p1), now at the default's value: the same stretch of waiting.
    expect(s.blockedBy('r3')).toEqual([poolHold('p1', 2, 2)]);
    expect(s.waits('r3')).toHaveLength(1);
    expect(s.when(cmd.finish('r1')).filter((e) => e.type !== 'LimitStatesChanged')).toEqual([
      { type: 'RunFinished', data: { runId: 'r1', status: 'SUCCESS', reason: null } },
      { type: 'RunAdmitted', data: { runId: 'r3' } },
    ]);
  });
});

// -----------------------------------------------------------------------------------------------

describe('priority and order', () => {
  it('given runs of several priorities, when they are enqueued, then priority is the input, else the dagster/priority tag, else 0', () => {
    const s = new Scenario().given(cmd.maxRuns(0));
    s.when(cmd.enqueue('plain'));
    s.when(cmd.enqueue('input', { priority: 5 }));
    s.when(cmd.enqueue('tagged', { tags: { 'dagster/priority': '3' } }));
    s.when(cmd.enqueue('both', { priority: 1, tags: { 'dagster/priority': '9' } }));
    s.when(cmd.enqueue('negative', { tags: { 'dagster/priority': '-2' } }));
    expect(['plain', 'input', 'tagged', 'both', 'negative'].map((id) => s.run(id).priority)).toEqual([0, 5, 3, 1, -2]);
  });

  it('given a held queue, when room appears, then runs are admitted by priority descending, then enqueue order', () => {
    const s = new Scenario().given(cmd.maxRuns(0));
    s.when(cmd.enqueue('low1'));
    s.when(cmd.enqueue('high1', { priority: 2 }));
    s.when(cmd.enqueue('low2'));
    s.when(cmd.enqueue('neg', { priority: -1 }));
    s.when(cmd.enqueue('high2', { tags: { 'dagster/priority': '2' } }));
    expect(s.queue()).toEqual(['high1', 'high2', 'low1', 'low2', 'neg']);
    expect(summary(s.when(cmd.maxRuns(3)))).toEqual([
      'MaxConcurrentRunsSet',
      'RunAdmitted:high1',
      'RunAdmitted:high2',
      'RunAdmitted:low1',
    ]);
    expect(summary(s.when(cmd.maxRuns(-1)))).toEqual(['MaxConcurrentRunsSet', 'RunAdmitted:low2', 'RunAdmitted:neg']);
  });

  it('given a higher-priority run enqueued later, when room appears, then it goes before older runs', () => {
    const s = new Scenario().given(
      cmd.maxRuns(1),
      cmd.enqueue('running'),
      cmd.enqueue('old'),
      cmd.enqueue('urgent', { priority: 1 }),
    );
    expect(summary(s.when(cmd.finish('running')))).toEqual(['RunFinished:running', 'RunAdmitted:urgent']);
  });
});

// -----------------------------------------------------------------------------------------------

describe('one admission pass', () => {
  it('given a tag limit of 2, when four runs with the tag get room at once, then each admission counts at once and two go', () => {
    const s = new Scenario().given(cmd.maxRuns(0), cmd.tagLimits({ key: 'team', value: 'a', limit: 2 }));
    enqueueMany(s, 4, 'a', { tags: { team: 'a' } });
    const events = s.when(cmd.maxRuns(-1));
    expect(summary(events)).toEqual(['MaxConcurrentRunsSet', 'RunAdmitted:a1', 'RunAdmitted:a2']);
    // One record for the counter that filled, not one per run it now holds.
    expect(limitStates(events)).toEqual(['runs: room', 'team=a: TAG_LIMIT 2/2']);
    expect(s.blockedBy('a3')).toEqual([tagHold('team', 'a', 2, 2)]);
  });

  it('given a held run ahead in the queue, when a run behind it has room, then the one behind goes first and the held run reserves nothing', () => {
    const s = new Scenario().given(
      cmd.maxRuns(2),
      cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }),
      cmd.enqueue('running-a', { tags: { team: 'a' } }),
      cmd.enqueue('held-a', { tags: { team: 'a' }, priority: 5 }),
    );
    expect(s.blockedBy('held-a')).toEqual([tagHold('team', 'a', 1, 1)]);
    // The last run slot goes to a lower-priority run behind the held one.
    const events = s.when(cmd.enqueue('behind'));
    expect(summary(events)).toEqual(['RunEnqueued:behind', 'RunAdmitted:behind']);
    expect(limitStates(events)).toEqual(['runs: MAX_CONCURRENT_RUNS 2/2']);
    expect(s.blockedBy('held-a')).toEqual(expect.arrayContaining([tagHold('team', 'a', 1, 1), maxRunsHold(2, 2)]));
    expect(s.blockedBy('held-a')).toHaveLength(2);
  });

  it("given a run a pool holds back, when a run behind it shares its tag, then the held run is not charged the tag budget (Dagster's quirk avoided)", () => {
    const s = new Scenario().given(
      cmd.granularity('RUN'),
      cmd.poolLimit('p1', 1),
      cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }),
      cmd.enqueue('in-pool', { pools: ['p1'] }),
      cmd.maxRuns(0),
      cmd.enqueue('pool-held', { tags: { team: 'a' }, pools: ['p1'], priority: 10 }),
      cmd.enqueue('tag-only', { tags: { team: 'a' } }),
    );
    const events = s.when(cmd.maxRuns(-1));
    expect(summary(events)).toEqual(['MaxConcurrentRunsSet', 'RunAdmitted:tag-only']);
    expect(s.status('tag-only')).toBe('STARTING');
    expect(s.blockedBy('pool-held')).toEqual(
      expect.arrayContaining([poolHold('p1', 1, 1), tagHold('team', 'a', 1, 1)]),
    );
  });

  it('given limits of every kind full, when a run is held by all of them, then its decision names every one with limit, count and a sentence', () => {
    const s = new Scenario().given(
      cmd.maxRuns(1),
      cmd.granularity('RUN'),
      cmd.poolLimit('p1', 1),
      cmd.tagLimits(
        { key: 'team', value: 'a', limit: 1 },
        { key: 'db', limit: 1 },
        { key: 'env', applyLimitPerUniqueValue: true, limit: 1 },
      ),
      cmd.enqueue('r1', { tags: { team: 'a', db: 'x', env: 'prod' }, pools: ['p1'] }),
    );
    const events = s.when(cmd.enqueue('r2', { tags: { team: 'a', db: 'y', env: 'prod' }, pools: ['p1'] }));
    const reasons = reasonsOf(events, 'r2');
    expect(reasons).toHaveLength(5);
    expect(reasons).toEqual(
      expect.arrayContaining([
        maxRunsHold(1, 1),
        tagHold('team', 'a', 1, 1),
        tagHold('db', null, 1, 1),
        tagHold('env', 'prod', 1, 1, true),
        poolHold('p1', 1, 1),
      ]),
    );
    expect(reasons?.map((r) => r.message)).toEqual(
      expect.arrayContaining([
        'max concurrent runs: 1 of 1 runs in progress',
        'tag team=a: 1 of 1 runs in progress',
        'tag db (any value): 1 of 1 runs in progress',
        'tag env=prod (limit per value of env): 1 of 1 runs in progress',
        'pool p1: 1 of 1 runs in progress',
      ]),
    );
    expect(s.decisions('r2').at(-1)?.message).toBe(`run r2 waits: ${reasons?.map((r) => r.message).join('; ')}`);
  });
});

// -----------------------------------------------------------------------------------------------

describe('lowering a limit below what is in use', () => {
  it('given 3 runs in progress, when maxConcurrentRuns drops to 1, then nothing is preempted or admitted until fewer than 1 remain', () => {
    const s = new Scenario().given(cmd.maxRuns(3));
    enqueueMany(s, 4);
    expect(summary(s.when(cmd.maxRuns(1)))).toEqual(['MaxConcurrentRunsSet']);
    expect(s.statuses()).toEqual({ r1: 'STARTING', r2: 'STARTING', r3: 'STARTING', r4: 'QUEUED' });
    expect(summary(s.when(cmd.finish('r1')))).toEqual(['RunFinished:r1']);
    expect(summary(s.when(cmd.finish('r2')))).toEqual(['RunFinished:r2']);
    expect(summary(s.when(cmd.finish('r3')))).toEqual(['RunFinished:r3', 'RunAdmitted:r4']);
  });

  it('given 3 tagged runs in progress, when their tag limit drops to 1, then the queue waits until none remain', () => {
    const s = new Scenario().given(cmd.tagLimits({ key: 'team', limit: 3 }));
    enqueueMany(s, 4, 'a', { tags: { team: 'a' } });
    expect(summary(s.when(cmd.tagLimits({ key: 'team', limit: 1 })))).toEqual(['TagConcurrencyLimitsSet']);
    expect(summary(s.when(cmd.finish('a1')))).toEqual(['RunFinished:a1']);
    expect(summary(s.when(cmd.terminate('a2', true)))).toEqual(['RunFinished:a2']);
    expect(summary(s.when(cmd.finish('a3')))).toEqual(['RunFinished:a3', 'RunAdmitted:a4']);
  });

  it('given 2 runs in a pool, when its limit drops to 1, then both keep running', () => {
    const s = new Scenario().given(cmd.granularity('RUN'), cmd.poolLimit('p1', 2));
    enqueueMany(s, 3, 'r', { pools: ['p1'] });
    expect(summary(s.when(cmd.poolLimit('p1', 1)))).toEqual(['PoolLimitSet']);
    expect(s.statuses()).toEqual({ r1: 'STARTING', r2: 'STARTING', r3: 'QUEUED' });
    expect(summary(s.when(cmd.finish('r1')))).toEqual(['RunFinished:r1']);
  });
});

// -----------------------------------------------------------------------------------------------

describe('admission runs inside the commands that change capacity', () => {
  it('given a held run, when a run finishes, then the held run is admitted in the same command', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'), cmd.enqueue('r2'), cmd.start('r1'));
    expect(summary(s.when(cmd.finish('r1')))).toEqual(['RunFinished:r1', 'RunAdmitted:r2']);
  });

  it('given a held run, when a run is started, then nothing is admitted (nothing was freed)', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'), cmd.enqueue('r2'));
    expect(summary(s.when(cmd.start('r1')))).toEqual(['RunStarted:r1']);
  });

  it('given a held run, when maxConcurrentRuns is raised, then runs are admitted at once', () => {
    const s = new Scenario().given(cmd.maxRuns(1));
    enqueueMany(s, 4);
    expect(summary(s.when(cmd.maxRuns(3)))).toEqual(['MaxConcurrentRunsSet', 'RunAdmitted:r2', 'RunAdmitted:r3']);
  });

  const edits: Array<[string, Parameters<typeof cmd.enqueue>[1], Command[], Command]> = [
    ['removing a tag limit', { tags: { team: 'a' } }, [cmd.tagLimits({ key: 'team', limit: 0 })], cmd.tagLimits()],
    [
      'raising a tag limit',
      { tags: { team: 'a' } },
      [cmd.tagLimits({ key: 'team', value: 'a', limit: 0 })],
      cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }),
    ],
    [
      'raising a pool limit',
      { pools: ['p1'] },
      [cmd.granularity('RUN'), cmd.poolLimit('p1', 0)],
      cmd.poolLimit('p1', 1),
    ],
    [
      'deleting a pool limit',
      { pools: ['p1'] },
      [cmd.granularity('RUN'), cmd.poolLimit('p1', 0)],
      cmd.deletePoolLimit('p1'),
    ],
    [
      'unsetting the default pool limit',
      { pools: ['p1'] },
      [cmd.granularity('RUN'), cmd.defaultPoolLimit(0)],
      cmd.defaultPoolLimit(null),
    ],
    [
      'switching pools to OP granularity',
      // A root step without a pool: the root-step hold does not apply to it.
      { steps: ['a', 'b@p1'] },
      [cmd.granularity('RUN'), cmd.poolLimit('p1', 0)],
      cmd.granularity('OP'),
    ],
  ];
  it.each(edits)('given a held run, when %s, then it is admitted in the same command', (_, runOptions, given, edit) => {
    const s = new Scenario().given(...given, cmd.enqueue('held', runOptions));
    expect(s.status('held')).toBe('QUEUED');
    const events = s.when(edit);
    expect(types(events)).toEqual([types(events)[0], 'RunAdmitted']);
    expect(s.status('held')).toBe('STARTING');
  });

  it('given runs in a pool, when the pool switches to RUN granularity with a full limit, then nothing is preempted', () => {
    const s = new Scenario({ rootStepHold: false }).given(cmd.poolLimit('p1', 1));
    enqueueMany(s, 3, 'r', { pools: ['p1'] });
    s.given(cmd.maxRuns(3), cmd.enqueue('r4', { pools: ['p1'] }), cmd.enqueue('r5', { pools: ['p2'] }));
    const events = s.when(cmd.granularity('RUN'));
    expect(summary(events)).toEqual(['PoolGranularitySet']);
    expect(limitStates(events)).toContain('pool p1: POOL_LIMIT 3/1');
    expect(s.blockedBy('r4')).toEqual(expect.arrayContaining([poolHold('p1', 1, 3), maxRunsHold(3, 3)]));
    expect(s.runsIn('STARTING')).toEqual(['r1', 'r2', 'r3']);
  });
});

// -----------------------------------------------------------------------------------------------

describe('termination', () => {
  it('given a QUEUED run, when terminated, then it is CANCELED at once and leaves the queue', () => {
    const s = new Scenario().given(cmd.maxRuns(0), cmd.enqueue('r1'));
    s.advance(30);
    const events = s.when(cmd.terminate('r1'));
    expect(events).toEqual([
      { type: 'RunFinished', data: { runId: 'r1', status: 'CANCELED', reason: 'terminated while queued' } },
    ]);
    expect(s.status('r1')).toBe('CANCELED');
    expect(s.queue()).toEqual([]);
    expect(s.blockedBy('r1')).toEqual([]);
    expect(s.waits('r1').at(-1)?.to).toBe(s.now);
  });

  it('given a STARTING run and a held run, when the first is terminated, then it is CANCELING and still holds its capacity', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'), cmd.enqueue('r2'));
    expect(summary(s.when(cmd.terminate('r1')))).toEqual(['RunCancellationRequested:r1']);
    expect(s.statuses()).toEqual({ r1: 'CANCELING', r2: 'QUEUED' });
    expect(s.count(ALL_RUNS)).toBe(1);
  });

  it('given a CANCELING run and a held run, when markRunFinished(CANCELED), then its capacity goes to the held run', () => {
    const s = new Scenario().given(
      cmd.maxRuns(1),
      cmd.enqueue('r1'),
      cmd.enqueue('r2'),
      cmd.start('r1'),
      cmd.terminate('r1'),
    );
    expect(summary(s.when(cmd.finish('r1', 'CANCELED')))).toEqual(['RunFinished:r1', 'RunAdmitted:r2']);
  });

  it.each([
    ['STARTING', []],
    ['STARTED', [cmd.start('r1')]],
    ['CANCELING', [cmd.start('r1'), cmd.terminate('r1')]],
  ])(
    'given a %s run and a held run, when terminated with force, then it is CANCELED and frees its capacity at once',
    (_, given) => {
      const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'), cmd.enqueue('r2'), ...given);
      const events = s.when(cmd.terminate('r1', true));
      expect(events).toEqual([
        { type: 'RunFinished', data: { runId: 'r1', status: 'CANCELED', reason: 'terminated with force' } },
        { type: 'RunAdmitted', data: { runId: 'r2' } },
      ]);
      expect(s.run('r1').finishReason).toBe('terminated with force');
    },
  );
});

// -----------------------------------------------------------------------------------------------

describe('refused commands', () => {
  const conflicts: Array<[string, Command[], Command]> = [
    ['markRunStarted on a QUEUED run', [cmd.maxRuns(0), cmd.enqueue('r1')], cmd.start('r1')],
    ['markRunFinished on a QUEUED run', [cmd.maxRuns(0), cmd.enqueue('r1')], cmd.finish('r1')],
    ['terminate on a finished run', [cmd.enqueue('r1'), cmd.finish('r1')], cmd.terminate('r1')],
    [
      'terminate with force on a canceled run',
      [cmd.enqueue('r1'), cmd.terminate('r1', true)],
      cmd.terminate('r1', true),
    ],
    ['markRunStarted on a finished run', [cmd.enqueue('r1'), cmd.finish('r1')], cmd.start('r1')],
    ['markRunStarted on a CANCELING run', [cmd.enqueue('r1'), cmd.terminate('r1')], cmd.start('r1')],
    [
      'markRunFinished with another status on a finished run',
      [cmd.enqueue('r1'), cmd.finish('r1')],
      cmd.finish('r1', 'FAILURE'),
    ],
  ];
  it.each(conflicts)(
    'given a run, when %s, then TransitionNotAllowedError and nothing changes',
    (_, given, command) => {
      const s = new Scenario().given(...given);
      expect(s.rejects(command)).toBeInstanceOf(TransitionNotAllowedError);
    },
  );

  it.each([cmd.start('nope'), cmd.finish('nope'), cmd.terminate('nope'), cmd.terminate('nope', true)])(
    'given no such run, when %j, then RunNotFoundError naming it',
    (command) => {
      const s = new Scenario().given(cmd.enqueue('r1'));
      const error = s.rejects(command);
      expect(error).toBeInstanceOf(RunNotFoundError);
      expect((error as RunNotFoundError).runId).toBe('nope');
    },
  );

  it('given an enqueued run, when its id is enqueued again (even with other tags), then nothing is appended', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'), cmd.enqueue('r2', { tags: { team: 'a' } }));
    const before = fingerprint(s.state);
    expect(s.when(cmd.enqueue('r2', { tags: { team: 'b' }, priority: 9 }))).toEqual([]);
    expect(s.when(cmd.enqueue('r1'))).toEqual([]);
    expect(fingerprint(s.state)).toBe(before);
  });

  it('given a finished run, when its id is enqueued again, then nothing is appended', () => {
    const s = new Scenario().given(cmd.enqueue('r1'), cmd.finish('r1'));
    expect(s.when(cmd.enqueue('r1'))).toEqual([]);
    expect(s.status('r1')).toBe('SUCCESS');
  });
});

// -----------------------------------------------------------------------------------------------

describe('decisions record changes of what holds a run, not changes of counts', () => {
  it('given 1000 runs held by the same full maxConcurrentRuns, when one run finishes, then only RunFinished and one RunAdmitted are appended', () => {
    const s = new Scenario({ check: 'off' }).given(cmd.maxRuns(1));
    enqueueMany(s, 1001);
    s.check = 'decisions';
    expect(s.runsIn('QUEUED')).toHaveLength(1000);
    const decisionsBefore = s.decisions().length;
    expect(summary(s.when(cmd.finish('r1')))).toEqual(['RunFinished:r1', 'RunAdmitted:r2']);
    expect(summary(s.when(cmd.finish('r2')))).toEqual(['RunFinished:r2', 'RunAdmitted:r3']);
    expect(s.decisions().length).toBe(decisionsBefore + 2);
    expect(s.blockedBy('r1001')).toEqual([maxRunsHold(1, 1)]);
  });

  it('given a limit that stays full, when its value is edited, then no RunBlocked is appended', () => {
    const s = new Scenario().given(
      cmd.maxRuns(2),
      cmd.tagLimits({ key: 'team', limit: 2 }),
      cmd.granularity('RUN'),
      cmd.poolLimit('p1', 2),
    );
    enqueueMany(s, 5, 'r', { tags: { team: 'a' }, pools: ['p1'] });
    const waitsBefore = s.waits('r5');
    // The limit values are recorded once per counter; what holds r5 is the same set, so its wait goes on.
    const edits = [cmd.maxRuns(1), cmd.tagLimits({ key: 'team', limit: 1 }), cmd.poolLimit('p1', 0)];
    for (const edit of edits) expect(s.when(edit).filter((e) => e.type === 'RunBlocked')).toEqual([]);
    expect(s.waits('r5')).toHaveLength(waitsBefore.length);
  });

  it('given runs held by maxConcurrentRuns, when a tag limit that is full is added, then only runs with the tag get a new RunBlocked', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('a0', { tags: { team: 'a' } }));
    s.given(
      cmd.enqueue('a1', { tags: { team: 'a' } }),
      cmd.enqueue('b1', { tags: { team: 'b' } }),
      cmd.enqueue('a2', { tags: { team: 'a' } }),
    );
    const events = s.when(cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }));
    expect(summary(events)).toEqual(['TagConcurrencyLimitsSet']);
    expect(limitStates(events)).toEqual(['team=a: TAG_LIMIT 1/1']);
    // Derived: a1 and a2 start a new stretch with both limits, b1 does not.
    expect(s.waits('a1').at(-1)?.reasons).toEqual(
      expect.arrayContaining([maxRunsHold(1, 1), tagHold('team', 'a', 1, 1)]),
    );
    expect(s.waits('a2')).toHaveLength(2);
    expect(s.waits('b1')).toHaveLength(1);
    expect(s.decisions('a2').map((d) => d.kind)).toEqual(['BLOCKED', 'BLOCKED']);
  });

  it('given a run held by two limits, when one of them gets room, then a RunBlocked names the one left', () => {
    const s = new Scenario().given(
      cmd.maxRuns(1),
      cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }),
      cmd.enqueue('a1', { tags: { team: 'a' } }),
      cmd.enqueue('a2', { tags: { team: 'a' } }),
    );
    expect(s.blockedBy('a2')).toEqual(expect.arrayContaining([maxRunsHold(1, 1), tagHold('team', 'a', 1, 1)]));
    const events = s.when(cmd.maxRuns(2));
    expect(summary(events)).toEqual(['MaxConcurrentRunsSet']);
    expect(limitStates(events)).toEqual(['runs: room']);
    expect(s.blockedBy('a2')).toEqual([tagHold('team', 'a', 1, 1)]);
    expect(s.waits('a2').map((w) => w.reasons)).toEqual([
      [maxRunsHold(1, 1), tagHold('team', 'a', 1, 1)],
      [tagHold('team', 'a', 1, 1)],
    ]);
    expect(s.decisions('a2').at(-1)?.message).toBe('run a2 waits: tag team=a: 1 of 1 runs in progress');
  });

  it('given decisions, when they are recorded, then each is in the run and the state at the revision of its event', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'), cmd.enqueue('r2'), cmd.finish('r1'));
    expect(s.decisions('r2').map((d) => d.kind)).toEqual(['BLOCKED', 'ADMITTED']);
    for (const d of s.decisions()) {
      const event = s.log.find((e) => e.revision === d.position);
      expect(event?.type).toBe(d.kind === 'ADMITTED' ? 'RunAdmitted' : 'RunBlocked');
    }
    expect(s.decisions('r2')[1]?.message).toMatch(/admitted/);
  });
});

// -----------------------------------------------------------------------------------------------

describe('waits', () => {
  it('given a held run, when it is admitted, then its wait interval closes at the admission', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'));
    const heldAt = s.now;
    s.given(cmd.enqueue('r2'));
    expect(s.waits('r2')).toEqual([{ from: heldAt, to: null, reasons: [maxRunsHold(1, 1)] }]);
    s.advance(90);
    s.when(cmd.finish('r1'));
    expect(s.waits('r2')).toEqual([{ from: heldAt, to: s.now, reasons: [maxRunsHold(1, 1)] }]);
  });

  it('given a held run, when what holds it changes, then one interval closes and another opens', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('r1'), cmd.enqueue('r2', { tags: { team: 'a' } }));
    const t0 = s.now;
    s.advance(30);
    const t1 = s.now;
    s.when(cmd.tagLimits({ key: 'team', limit: 0 }));
    expect(s.waits('r2')).toEqual([
      { from: t0, to: t1, reasons: [maxRunsHold(1, 1)] },
      { from: t1, to: null, reasons: expect.arrayContaining([maxRunsHold(1, 1), tagHold('team', null, 0, 0)]) },
    ]);
    s.advance(30);
    s.when(cmd.tagLimits());
    s.advance(30);
    s.when(cmd.finish('r1'));
    expect(s.waits('r2').map((w) => [w.from, w.to])).toEqual([
      [t0, t1],
      [t1, '2024-01-01T00:01:00.000Z'],
      ['2024-01-01T00:01:00.000Z', s.now],
    ]);
    expect(s.status('r2')).toBe('STARTING');
  });

  it('given a run admitted at once, when enqueued, then it has no wait', () => {
    const s = new Scenario().given(cmd.enqueue('r1'));
    expect(s.waits('r1')).toEqual([]);
    expect(s.decisions('r1').map((d) => d.kind)).toEqual(['ADMITTED']);
  });
});

// -----------------------------------------------------------------------------------------------

describe('the events of a command are bounded by what changed', () => {
  function longQueue(): Scenario {
    const s = new Scenario({ check: 'off' }).given(cmd.maxRuns(2), cmd.tagLimits({ key: 'db', limit: 5 }));
    enqueueMany(s, 100, 'a', { tags: { team: 'a' } });
    enqueueMany(s, 100, 'b', { tags: { team: 'b' } });
    s.check = 'decisions';
    return s;
  }

  it('given a long queue, when a run is enqueued, then only its own events are appended', () => {
    const s = longQueue();
    expect(summary(s.when(cmd.enqueue('new')))).toEqual(['RunEnqueued:new', 'RunBlocked:new']);
  });

  it('given a long queue, when a run starts, then one event is appended', () => {
    const s = longQueue();
    expect(types(s.when(cmd.start('a1')))).toEqual(['RunStarted']);
  });

  it('given a long queue, when a limit no queued run is under changes, then one event is appended', () => {
    const s = longQueue();
    expect(types(s.when(cmd.tagLimits({ key: 'db', limit: 7 })))).toEqual(['TagConcurrencyLimitsSet']);
    expect(types(s.when(cmd.poolLimit('p9', 0)))).toEqual(['PoolLimitSet']);
  });

  it('given a long queue, when a full limit is added for some runs, then one record says so, and only those runs wait anew', () => {
    const s = longQueue();
    const events = s.when(cmd.tagLimits({ key: 'team', value: 'b', limit: 0 }));
    expect(events.map((e) => e.type)).toEqual(['TagConcurrencyLimitsSet', 'LimitStatesChanged']);
    expect(limitStates(events)).toEqual(['team=b: TAG_LIMIT 0/0']);
    expect(s.waits('b50')).toHaveLength(2);
    expect(s.waits('a50')).toHaveLength(1);
  });

  it('given a long queue, when a run finishes, then one run is admitted and no held run is re-recorded', () => {
    const s = longQueue();
    expect(summary(s.when(cmd.finish('a2')))).toEqual(['RunFinished:a2', 'RunAdmitted:a3']);
    expect(s.count(tagValueCount('team', 'a'))).toBe(2);
  });
});
