/**
 * Every bad input is refused with an InvalidInputError naming the field, before decide returns
 * any event (Scenario.rejects also checks that the state is left as it was).
 */
import { describe, expect, it } from 'vitest';
import type { Command, EnqueueRunInput } from '../../src/domain/commands.js';
import { LIMITS } from '../../src/domain/config.js';
import { decide } from '../../src/domain/decide.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { cmd, Scenario } from '../support/scenario.js';

const long = (n: number, c = 'x') => c.repeat(n);
const name256 = long(LIMITS.maxNameLength + 1);
const name255 = long(LIMITS.maxNameLength);

/** A scenario with a running run r1 and a finished run done. */
function scenario(): Scenario {
  return new Scenario().given(cmd.enqueue('r1'), cmd.enqueue('done'), cmd.finish('done'));
}

/** The field an InvalidInputError names, checking nothing was appended and the message names it too. */
function refusedField(command: Command): string | null {
  const s = scenario();
  const error = s.rejects(command);
  expect(error).toBeInstanceOf(InvalidInputError);
  const field = (error as InvalidInputError).field;
  if (field !== null) expect(error.message).toContain(field);
  return field;
}

const enqueue = (input: Partial<EnqueueRunInput>): Command =>
  cmd.enqueueRaw({ runId: 'new', jobName: 'job', ...input } as EnqueueRunInput);
const tags = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: 'v' }));
const steps = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `s${i}`, pool: 'p1' }));

describe('enqueueRun input', () => {
  it.each<[string, Partial<EnqueueRunInput>, string]>([
    ['an empty job name', { jobName: '' }, 'input.jobName'],
    ['a 256-character job name', { jobName: name256 }, 'input.jobName'],
    ['a job name that is not a string', { jobName: 42 as unknown as string }, 'input.jobName'],
    ['an empty run id', { runId: '' }, 'input.runId'],
    ['a 256-character run id', { runId: name256 }, 'input.runId'],
    ['a run id with a NUL character', { runId: 'a\u0000b' }, 'input.runId'],
    ['an empty tag key', { tags: [{ key: '', value: 'v' }] }, 'input.tags.0.key'],
    [
      'a 256-character tag key',
      {
        tags: [
          { key: 'ok', value: 'v' },
          { key: name256, value: 'v' },
        ],
      },
      'input.tags.1.key',
    ],
    ['a tag value over 65,536 characters', { tags: [{ key: 'k', value: long(65_537) }] }, 'input.tags.0.value'],
    [
      'a duplicate tag key',
      {
        tags: [
          { key: 'team', value: 'a' },
          { key: 'team', value: 'b' },
        ],
      },
      'input.tags.1.key',
    ],
    ['more than 1000 tags', { tags: tags(LIMITS.maxTagsPerRun + 1) }, 'input.tags'],
    ['an empty step key', { steps: [{ key: '', pool: 'p1' }] }, 'input.steps.0.key'],
    ['a 256-character step key', { steps: [{ key: 's0' }, { key: name256 }] }, 'input.steps.1.key'],
    ['an empty pool name', { steps: [{ key: 's0', pool: '' }] }, 'input.steps.0.pool'],
    ['a 256-character pool name', { steps: [{ key: 's0', pool: name256 }] }, 'input.steps.0.pool'],
    ['a duplicate step key', { steps: [{ key: 's0' }, { key: 's0', pool: 'p1' }] }, 'input.steps.1.key'],
    ['more than 1000 steps', { steps: steps(LIMITS.maxStepsPerRun + 1) }, 'input.steps'],
    ['a non-integer step priority', { steps: [{ key: 's0', priority: 0.5 }] }, 'input.steps.0.priority'],
    ['a non-integer priority', { priority: 1.5 }, 'input.priority'],
    ['a priority above 1,000,000', { priority: 1_000_001 }, 'input.priority'],
    ['a NaN priority', { priority: Number.NaN }, 'input.priority'],
    ['maxConcurrentSteps 0', { maxConcurrentSteps: 0 }, 'input.maxConcurrentSteps'],
    ['leaseSeconds 0', { leaseSeconds: 0 }, 'input.leaseSeconds'],
    ['a step waiting for an unknown step', { steps: [{ key: 'a', dependsOn: ['zz'] }] }, 'input.steps.0.dependsOn.0'],
    [
      'a step waiting for itself',
      { steps: [{ key: 'a' }, { key: 'b', dependsOn: ['b'] }] },
      'input.steps.1.dependsOn.0',
    ],
    [
      'a step listing the same step twice',
      { steps: [{ key: 'a' }, { key: 'b', dependsOn: ['a', 'a'] }] },
      'input.steps.1.dependsOn.1',
    ],
    [
      'an empty key in dependsOn',
      { steps: [{ key: 'a' }, { key: 'b', dependsOn: [''] }] },
      'input.steps.1.dependsOn.0',
    ],
    [
      'steps waiting for each other in a cycle',
      {
        steps: [
          { key: 'a', dependsOn: ['c'] },
          { key: 'b', dependsOn: ['a'] },
          { key: 'c', dependsOn: ['b'] },
        ],
      },
      'input.steps.1.dependsOn.0',
    ],
  ])('given %s, when enqueued, then InvalidInputError names %s', (_, input, field) => {
    expect(refusedField(enqueue(input))).toBe(field);
  });

  it('given a dagster/priority tag outside -1,000,000..1,000,000, when enqueued, then it is accepted at the nearest end, and says so', () => {
    const s = scenario();
    s.given(enqueue({ runId: 'high', tags: [{ key: 'dagster/priority', value: '9999999' }] }));
    s.given(enqueue({ runId: 'low', tags: [{ key: 'dagster/priority', value: '-5000000' }] }));
    expect(s.state.runs.get('high')).toMatchObject({
      priority: 1_000_000,
      ignoredTags: [{ key: 'dagster/priority', reason: '"9999999" is beyond -1000000..1000000: it counts as 1000000' }],
    });
    expect(s.state.runs.get('low')?.priority).toBe(-1_000_000);
  });

  it('given tags Sluice cannot count (an empty value, a value over 255 characters), when enqueued, then the run is accepted without them and says why', () => {
    const s = scenario();
    s.given(
      enqueue({
        tags: [
          { key: 'empty', value: '' },
          { key: 'long', value: name256 },
          { key: 'team', value: 'a' },
        ],
      }),
    );
    const run = s.state.runs.get('new');
    expect(run?.tags).toEqual([{ key: 'team', value: 'a' }]);
    expect(run?.ignoredTags).toEqual([
      { key: 'empty', reason: 'its value is empty: Sluice keeps no empty tag values, no tag limit counts it' },
      { key: 'long', reason: "its value is 256 characters, over Sluice's 255: not kept, no tag limit counts it" },
    ]);
    // A 255-character value is kept as it is.
    s.given(enqueue({ runId: 'ok', tags: [{ key: 'k', value: name255 }] }));
    expect(s.state.runs.get('ok')?.ignoredTags).toEqual([]);
  });

  it('given a max runtime tag that is not a number, when enqueued, then the run is accepted with the tag recorded as ignored', () => {
    const s = scenario();
    s.given(enqueue({ tags: [{ key: 'dagster/max_runtime_seconds', value: 'an hour' }] }));
    expect(s.state.runs.get('new')?.ignoredTags).toEqual([
      {
        key: 'dagster/max_runtime_seconds',
        reason:
          '"an hour" is not a number of seconds: the run has no max runtime (Dagster\'s run monitoring skips it too)',
      },
    ]);
  });

  it('given a cycle, when refused, then the message shows the cycle', () => {
    const s = scenario();
    const error = s.rejects(
      enqueue({
        steps: [
          { key: 'a', dependsOn: ['b'] },
          { key: 'b', dependsOn: ['a'] },
        ],
      }),
    );
    expect(error.message).toBe('input.steps.1.dependsOn.0: the steps wait for each other in a cycle: a → b → a');
  });

  it('given steps with dependsOn, when enqueued, then it is recorded on the steps that have it, and only there', () => {
    const s = scenario();
    const [event] = s.when(
      enqueue({ steps: [{ key: 'a' }, { key: 'b', dependsOn: ['a'] }, { key: 'c', dependsOn: [] }] }),
    );
    expect(event).toMatchObject({
      type: 'RunEnqueued',
      data: {
        steps: [
          { key: 'a', pool: null, priority: 0 },
          { key: 'b', pool: null, priority: 0, dependsOn: ['a'] },
          { key: 'c', pool: null, priority: 0 },
        ],
      },
    });
    expect((event?.data as { steps: object[] } | undefined)?.steps[0]).not.toHaveProperty('dependsOn');
  });

  it.each([
    ['high', 'it counts as priority 0'],
    ['1.5', 'it counts as priority 0'],
    [' ', 'it counts as priority 0'],
  ])(
    'given a dagster/priority tag %j, when enqueued, then the run is accepted at priority 0 and records that the tag was ignored',
    (value, why) => {
      const s = scenario();
      const events = s.when(enqueue({ tags: [{ key: 'dagster/priority', value }] }));
      expect(events[0]).toMatchObject({
        type: 'RunEnqueued',
        data: {
          priority: 0,
          ignoredTags: [{ key: 'dagster/priority', reason: `${JSON.stringify(value)} is not an integer: ${why}` }],
        },
      });
      expect(s.run('new')).toMatchObject({ priority: 0, ignoredTags: [{ key: 'dagster/priority' }] });
    },
  );

  it("given a non-integer dagster/priority tag and an input priority, when enqueued, then the input's priority applies and the tag is noted", () => {
    const s = scenario();
    s.when(enqueue({ priority: 4, tags: [{ key: 'dagster/priority', value: 'urgent' }] }));
    expect(s.run('new')).toMatchObject({
      priority: 4,
      ignoredTags: [{ key: 'dagster/priority', reason: `"urgent" is not an integer: the input's priority applies` }],
    });
  });

  it.each([
    [' 7 ', 7],
    ['+3', 3],
    ['-2', -2],
    ['1_000', 1000],
    ['007', 7],
  ])(
    'given a dagster/priority tag %j, when enqueued, then it reads as Python int() does: %i, and nothing is noted',
    (value, priority) => {
      const s = scenario();
      const [event] = s.when(enqueue({ tags: [{ key: 'dagster/priority', value }] }));
      expect(event?.data).toMatchObject({ priority });
      expect(event?.data).not.toHaveProperty('ignoredTags');
      expect(s.run('new').ignoredTags).toEqual([]);
    },
  );

  it('given names of 255 characters and 1000 tags and steps, when enqueued, then the run is accepted', () => {
    const s = scenario();
    const events = s.when(
      enqueue({
        runId: name255,
        jobName: name255,
        tags: [{ key: name255, value: name255 }, ...tags(LIMITS.maxTagsPerRun - 1)],
        steps: [{ key: name255, pool: name255 }, ...steps(LIMITS.maxStepsPerRun - 1)],
        priority: 1_000_000,
      }),
    );
    expect(events[0]?.type).toBe('RunEnqueued');
    expect(s.run(name255).tags).toHaveLength(LIMITS.maxTagsPerRun);
  });

  it('given an id already used and a bad input, when enqueued, then the input is still refused', () => {
    expect(refusedField(enqueue({ runId: 'r1', jobName: '' }))).toBe('input.jobName');
  });
});

describe('run commands', () => {
  it.each<[string, Command, string]>([
    ['markRunStarted with an empty run id', cmd.start(''), 'runId'],
    ['markRunStarted with a 256-character run id', cmd.start(name256), 'runId'],
    ['markRunFinished with an empty run id', cmd.finish(''), 'runId'],
    ['terminateRun with an empty run id', cmd.terminate(''), 'runId'],
    ['markRunFinished with status QUEUED', cmd.finish('r1', 'QUEUED'), 'status'],
    ['markRunFinished with status STARTED', cmd.finish('r1', 'STARTED'), 'status'],
    ['markRunFinished with status CANCELING', cmd.finish('r1', 'CANCELING'), 'status'],
    ['markRunFinished with status garbage', cmd.finish('r1', 'garbage'), 'status'],
    ['markRunFinished with a lowercase status', cmd.finish('r1', 'success'), 'status'],
    ['markRunFinished with an unknown run and a bad status', cmd.finish('nope', 'QUEUED'), 'status'],
    ['markRunFinished of a finished run with a bad status', cmd.finish('done', 'garbage'), 'status'],
  ])('given %s, then InvalidInputError names %s', (_, command, field) => {
    expect(refusedField(command)).toBe(field);
  });
});

describe('limit edits', () => {
  it.each<[string, Command, string]>([
    ['maxConcurrentRuns -2', cmd.maxRuns(-2), 'limit'],
    ['maxConcurrentRuns 1,000,001', cmd.maxRuns(LIMITS.maxLimit + 1), 'limit'],
    ['maxConcurrentRuns 2.5', cmd.maxRuns(2.5), 'limit'],
    ['maxConcurrentRuns NaN', cmd.maxRuns(Number.NaN), 'limit'],
    ['maxConcurrentRuns Infinity', cmd.maxRuns(Number.POSITIVE_INFINITY), 'limit'],
    ['a pool limit of -1', cmd.poolLimit('p1', -1), 'limit'],
    ['a pool limit of 1,000,001', cmd.poolLimit('p1', LIMITS.maxLimit + 1), 'limit'],
    ['a pool limit of 0.5', cmd.poolLimit('p1', 0.5), 'limit'],
    ['a pool limit for an empty pool name', cmd.poolLimit('', 1), 'pool'],
    ['a pool limit for a 256-character pool name', cmd.poolLimit(name256, 1), 'pool'],
    ['deleting the limit of an empty pool name', cmd.deletePoolLimit(''), 'pool'],
    ['a default pool limit of -1', cmd.defaultPoolLimit(-1), 'limit'],
    ['a default pool limit of 1,000,001', cmd.defaultPoolLimit(LIMITS.maxLimit + 1), 'limit'],
    ['a default pool limit of 1.5', cmd.defaultPoolLimit(1.5), 'limit'],
    ['pool granularity "op"', cmd.granularity('op'), 'granularity'],
    ['pool granularity garbage', cmd.granularity('STEP'), 'granularity'],
    ['a tag limit of -1', cmd.tagLimits({ key: 'team', limit: -1 }), 'limits.0.limit'],
    [
      'a tag limit of 1,000,001',
      cmd.tagLimits({ key: 'a', limit: 1 }, { key: 'team', limit: LIMITS.maxLimit + 1 }),
      'limits.1.limit',
    ],
    ['a tag limit of 1.5', cmd.tagLimits({ key: 'team', limit: 1.5 }), 'limits.0.limit'],
    ['a tag limit with an empty key', cmd.tagLimits({ key: '', limit: 1 }), 'limits.0.key'],
    ['a tag limit with a 256-character key', cmd.tagLimits({ key: name256, limit: 1 }), 'limits.0.key'],
    ['a tag limit with an empty value', cmd.tagLimits({ key: 'team', value: '', limit: 1 }), 'limits.0.value'],
    [
      'a tag limit with a 256-character value',
      cmd.tagLimits({ key: 'team', value: name256, limit: 1 }),
      'limits.0.value',
    ],
    [
      'a tag limit with both a value and applyLimitPerUniqueValue',
      cmd.tagLimits({ key: 'team', value: 'a', applyLimitPerUniqueValue: true, limit: 1 }),
      'limits.0.value',
    ],
    [
      'the same tag limit twice',
      cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }, { key: 'team', value: 'a', limit: 2 }),
      'limits.1',
    ],
    [
      'the same per-value tag limit twice',
      cmd.tagLimits(
        { key: 'db', limit: 1 },
        { key: 'team', applyLimitPerUniqueValue: true, limit: 1 },
        { key: 'team', applyLimitPerUniqueValue: true, limit: 3 },
      ),
      'limits.2',
    ],
    [
      'more than 1000 tag limits',
      cmd.tagLimits(...Array.from({ length: LIMITS.maxTagLimits + 1 }, (_, i) => ({ key: `k${i}`, limit: 1 }))),
      'limits',
    ],
  ])('given %s, then InvalidInputError names %s', (_, command, field) => {
    expect(refusedField(command)).toBe(field);
  });

  it.each<[string, Command]>([
    ['maxConcurrentRuns -1', cmd.maxRuns(-1)],
    ['maxConcurrentRuns 0', cmd.maxRuns(0)],
    ['maxConcurrentRuns 1,000,000', cmd.maxRuns(LIMITS.maxLimit)],
    ['a pool limit of 0', cmd.poolLimit('p1', 0)],
    ['a pool limit of 1,000,000', cmd.poolLimit('p1', LIMITS.maxLimit)],
    ['a default pool limit of 0', cmd.defaultPoolLimit(0)],
    [
      'the three forms of tag limit on one key',
      cmd.tagLimits(
        { key: 'team', value: 'a', limit: 0 },
        { key: 'team', limit: LIMITS.maxLimit },
        { key: 'team', applyLimitPerUniqueValue: true, limit: 1 },
      ),
    ],
  ])('given %s, then the edit is accepted', (_, command) => {
    const s = scenario();
    expect(s.when(command).length).toBeGreaterThan(0);
  });
});

describe('decide throws before returning events', () => {
  it('given a bad input, when decide is called directly, then it throws and returns nothing', () => {
    const s = scenario();
    let returned: unknown = 'nothing';
    expect(() => {
      returned = decide(cmd.tagLimits({ key: 'team', limit: -1 }), s.state, { now: s.now, newRunId: 'x' });
    }).toThrow(InvalidInputError);
    expect(returned).toBe('nothing');
    expect(s.state.config.tagConcurrencyLimits).toEqual([]);
  });
});
