/**
 * `sluice verify` on logs written event by event by the test (never by the decider), each
 * breaking one rule on purpose: verify must name that rule at that position, and pass the
 * same log without the breaking event. Then a log the real server wrote, fixture logs, and
 * the command line.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore, NewEvent } from '../../src/eventstore/store.js';
import { verifyLog } from '../../src/verify/verify.js';

const START = Date.parse('2026-01-01T00:00:00Z');

/** Raw events, one second apart unless a time is given. */
function log(...entries: Array<[string, Record<string, unknown>] | [string, Record<string, unknown>, number]>) {
  return entries.map(
    ([type, data, seconds], index): NewEvent => ({
      type,
      schemaVersion: 1,
      data,
      actor: 'test',
      at: new Date(START + (seconds ?? index) * 1000).toISOString(),
    }),
  );
}

const run = (runId: string, extra: Record<string, unknown> = {}): [string, Record<string, unknown>] => [
  'RunEnqueued',
  {
    runId,
    jobName: 'job',
    tags: [],
    steps: [],
    priority: 0,
    maxConcurrentSteps: null,
    leaseSeconds: null,
    ...extra,
  },
];
const admitted = (runId: string): [string, Record<string, unknown>] => ['RunAdmitted', { runId }];
const finished = (runId: string, status = 'SUCCESS'): [string, Record<string, unknown>] => [
  'RunFinished',
  { runId, status, reason: null },
];
const step = (key: string, pool: string | null, dependsOn?: string[]) => ({
  key,
  pool,
  priority: 0,
  ...(dependsOn ? { dependsOn } : {}),
});
const granted = (runId: string, stepKey: string, pool: string | null): [string, Record<string, unknown>] => [
  'StepSlotGranted',
  { runId, stepKey, pool },
];
const released = (runId: string, stepKey: string, pool: string | null): [string, Record<string, unknown>] => [
  'StepSlotReleased',
  { runId, stepKey, pool, held: true, reason: null },
];

async function storeWith(events: NewEvent[]): Promise<EventStore> {
  const store = openSqliteStore({ path: ':memory:' });
  if (events.length > 0) await store.append(DEPLOYMENT_STREAM, events, 'no_stream');
  return store;
}

async function verdict(events: NewEvent[]) {
  const store = await storeWith(events);
  try {
    return await verifyLog(store, { gaplessPositions: true, pageSize: 3 });
  } finally {
    await store.close();
  }
}

/** The log breaks `rule` at its last event, and the log without that event passes. */
async function breaksAtLast(events: NewEvent[], rule: string, words: RegExp) {
  const report = await verdict(events);
  expect(
    report.breach,
    JSON.stringify(report.breach, (_k, v) => (typeof v === 'bigint' ? `${v}` : v)),
  ).toMatchObject({
    rule,
    position: BigInt(events.length),
  });
  expect(report.breach?.message).toMatch(words);
  expect(report.ok).toBe(false);
  const before = await verdict(events.slice(0, -1));
  expect(before.breach).toBeNull();
}

describe('sluice verify on logs that break a rule on purpose', () => {
  it('given max concurrent runs 1 and one run in progress, when a second is admitted, then it is over-admission', async () => {
    await breaksAtLast(
      log(['MaxConcurrentRunsSet', { limit: 1 }], run('a'), admitted('a'), run('b'), admitted('b')),
      'over-admission',
      /run b admitted over its limits: max concurrent runs 1 with 1 in progress/,
    );
  });

  it('given a limit of 0 (admit nothing), when a run is admitted, then it is over-admission', async () => {
    await breaksAtLast(
      log(['MaxConcurrentRunsSet', { limit: 0 }], run('a'), admitted('a')),
      'over-admission',
      /max concurrent runs 0/,
    );
  });

  it('given a run finished, when another is admitted under the same limit, then nothing is wrong', async () => {
    const report = await verdict(
      log(['MaxConcurrentRunsSet', { limit: 1 }], run('a'), admitted('a'), finished('a'), run('b'), admitted('b')),
    );
    expect(report.breach).toBeNull();
    expect(report.runs).toMatchObject({ enqueued: 2, admitted: 2, finished: 1, inProgress: 1 });
  });

  it('given a tag limit on a key, when a second run with any value of it is admitted, then it is over-admission', async () => {
    await breaksAtLast(
      log(
        [
          'TagConcurrencyLimitsSet',
          { limits: [{ key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 1 }] },
        ],
        run('a', { tags: [{ key: 'team', value: 'x' }] }),
        admitted('a'),
        run('b', { tags: [{ key: 'team', value: 'y' }] }),
        admitted('b'),
      ),
      'over-admission',
      /tag team limit 1 with 1 in progress/,
    );
  });

  it('given a tag limit on one value, when a run with another value is admitted, then nothing is wrong; with the same value it is over-admission', async () => {
    const limits = [{ key: 'team', value: 'x', applyLimitPerUniqueValue: false, limit: 1 }];
    const base = log(
      ['TagConcurrencyLimitsSet', { limits }],
      run('a', { tags: [{ key: 'team', value: 'x' }] }),
      admitted('a'),
      run('b', { tags: [{ key: 'team', value: 'y' }] }),
      admitted('b'),
    );
    expect((await verdict(base)).breach).toBeNull();
    await breaksAtLast(
      [
        ...base,
        ...log(run('c', { tags: [{ key: 'team', value: 'x' }] }), admitted('c')).map((e, i) => ({
          ...e,
          at: new Date(START + (10 + i) * 1000).toISOString(),
        })),
      ],
      'over-admission',
      /tag team=x limit 1/,
    );
  });

  it('given a per-value tag limit, when a second run with the same value is admitted, then it is over-admission', async () => {
    await breaksAtLast(
      log(
        ['TagConcurrencyLimitsSet', { limits: [{ key: 'db', value: null, applyLimitPerUniqueValue: true, limit: 1 }] }],
        run('a', { tags: [{ key: 'db', value: 'one' }] }),
        admitted('a'),
        run('b', { tags: [{ key: 'db', value: 'two' }] }),
        admitted('b'),
        run('c', { tags: [{ key: 'db', value: 'one' }] }),
        admitted('c'),
      ),
      'over-admission',
      /tag db=one limit 1 with 1 in progress/,
    );
  });

  it('given a pool at RUN granularity, when a second run using it is admitted, then it is over-admission', async () => {
    await breaksAtLast(
      log(
        ['PoolGranularitySet', { granularity: 'RUN' }],
        ['PoolLimitSet', { pool: 'gpu', limit: 1 }],
        run('a', { steps: [step('s', 'gpu')] }),
        admitted('a'),
        run('b', { steps: [step('t', 'gpu')] }),
        admitted('b'),
      ),
      'over-admission',
      /pool gpu \(RUN\) limit 1 with 1 runs in progress/,
    );
  });

  it('given a default pool limit at RUN granularity, then it applies to pools without their own', async () => {
    await breaksAtLast(
      log(
        ['PoolGranularitySet', { granularity: 'RUN' }],
        ['DefaultPoolLimitSet', { limit: 1 }],
        run('a', { steps: [step('s', 'any')] }),
        admitted('a'),
        run('b', { steps: [step('t', 'any')] }),
        admitted('b'),
      ),
      'over-admission',
      /pool any \(RUN\) limit 1/,
    );
  });

  it("given OP granularity with the root-step hold, when a run whose only root step's pool is taken is admitted, then it is over-admission", async () => {
    await breaksAtLast(
      log(
        ['PoolLimitSet', { pool: 'gpu', limit: 1 }],
        run('a', { steps: [step('s', 'gpu')] }),
        admitted('a'),
        run('b', { steps: [step('t', 'gpu'), step('u', null, ['t'])] }),
        admitted('b'),
      ),
      'over-admission',
      /root-step hold: every root step's pool is taken \(gpu 1 of 1\+0\)/,
    );
  });

  it('given the root-step hold, when the promised step claims and releases, then its pool is free again', async () => {
    const report = await verdict(
      log(
        ['PoolLimitSet', { pool: 'gpu', limit: 1 }],
        run('a', { steps: [step('s', 'gpu')] }),
        admitted('a'),
        ['RunStarted', { runId: 'a' }],
        granted('a', 's', 'gpu'),
        released('a', 's', 'gpu'),
        run('b', { steps: [step('t', 'gpu')] }),
        admitted('b'),
      ),
    );
    expect(report.breach).toBeNull();
  });

  it('given the root-step hold off or a root step without a pool, then a taken pool holds nothing back', async () => {
    const taken: Array<[string, Record<string, unknown>]> = [
      ['PoolLimitSet', { pool: 'gpu', limit: 1 }],
      run('a', { steps: [step('s', 'gpu')] }),
      admitted('a'),
    ];
    const off = await verdict(
      log(
        ['RootStepHoldSet', { enabled: false, runBuffer: 0, startedRunAllotmentSeconds: 5 }],
        ...taken,
        run('b', { steps: [step('t', 'gpu')] }),
        admitted('b'),
      ),
    );
    expect(off.breach).toBeNull();
    const free = await verdict(log(...taken, run('b', { steps: [step('t', 'gpu'), step('v', null)] }), admitted('b')));
    expect(free.breach).toBeNull();
  });

  it('given a pool of 1 slot at OP granularity, when a second step is granted a slot, then the slot is over its limit', async () => {
    await breaksAtLast(
      log(
        ['PoolLimitSet', { pool: 'gpu', limit: 1 }],
        ['RootStepHoldSet', { enabled: false, runBuffer: 0, startedRunAllotmentSeconds: 5 }],
        run('a', { steps: [step('s', 'gpu')] }),
        admitted('a'),
        run('b', { steps: [step('t', 'gpu')] }),
        admitted('b'),
        granted('a', 's', 'gpu'),
        ['StepSlotPending', { runId: 'b', stepKey: 't', pool: 'gpu', reasons: [reason()] }],
        granted('b', 't', 'gpu'),
      ),
      'slot-over-limit',
      /step t of run b was granted a slot over pool gpu limit 1 with 1 slots held/,
    );
  });

  it("given a run's max concurrent steps 1, when a second of its steps is granted, then the slot is over its limit", async () => {
    await breaksAtLast(
      log(run('a', { maxConcurrentSteps: 1 }), admitted('a'), granted('a', 's', null), granted('a', 't', null)),
      'slot-over-limit',
      /max concurrent steps 1 with 1 held/,
    );
  });

  it('given a run that ended, when it ends again, then it ended twice', async () => {
    await breaksAtLast(
      log(run('a'), admitted('a'), finished('a'), finished('a', 'FAILURE')),
      'ended-twice',
      /run a ends as FAILURE after it had ended as SUCCESS/,
    );
  });

  it('given a run admitted and left STARTING, when the log goes on past its start timeout, then it was left with no way to end', async () => {
    const events = log(
      ['RunMonitoringSet', { startTimeoutSeconds: 60, cancelTimeoutSeconds: 60 }],
      run('a'),
      admitted('a'),
      run('b', {}),
    );
    events[3] = { ...(events[3] as NewEvent), at: new Date(START + 3_600_000).toISOString() };
    const report = await verdict(events);
    expect(report.breach).toMatchObject({ rule: 'no-way-to-end', position: 4n });
    expect(report.breach?.message).toMatch(/run a is STARTING; its start timeout passed/);
    // A run with a lease that heartbeats is fine; a STARTED run with neither lease nor max runtime is only noted.
    const started = await verdict([
      ...events.slice(0, 3),
      ...log(['RunStarted', { runId: 'a' }]).map((e) => ({ ...e, at: events[2]?.at as string })),
      events[3] as NewEvent,
    ]);
    expect(started.breach).toBeNull();
    expect(started.workerOnlyRuns).toBe(1);
  });

  it('given a run whose lease passed, when the log goes on without ending it, then it was left with no way to end', async () => {
    const events = log(run('a', { leaseSeconds: 30 }), admitted('a'), ['RunStarted', { runId: 'a' }], run('b'));
    events[3] = { ...(events[3] as NewEvent), at: new Date(START + 600_000).toISOString() };
    const report = await verdict(events);
    expect(report.breach).toMatchObject({ rule: 'no-way-to-end' });
    expect(report.breach?.message).toMatch(/its lease passed/);
  });

  it('given a run ended with a slot still held and never released, then the slot leaked', async () => {
    const report = await verdict(log(run('a'), admitted('a'), granted('a', 's', 'gpu'), finished('a')));
    expect(report.breach).toMatchObject({ rule: 'slot-leak' });
    const fine = await verdict(
      log(run('a'), admitted('a'), granted('a', 's', 'gpu'), finished('a'), released('a', 's', 'gpu')),
    );
    expect(fine.breach).toBeNull();
  });

  it('given an event about a run never enqueued, then it names the run', async () => {
    await breaksAtLast(log(run('a'), admitted('b')), 'unknown-run', /run b admitted but was never enqueued/);
  });

  it('given an event of a type no Sluice knows, then the schema is unknown', async () => {
    await breaksAtLast(
      log(run('a'), ['RunTeleported', { runId: 'a' }]),
      'schema',
      /unknown event type "RunTeleported"/,
    );
  });

  it('given an event whose data breaks its schema, then the schema check names the field', async () => {
    await breaksAtLast(log(run('a'), ['RunAdmitted', { run: 'a' }]), 'schema', /RunAdmitted is invalid at runId/);
  });

  it('given an event of a newer schema version, then it is refused', async () => {
    const events = log(run('a'), admitted('a'));
    events[1] = { ...(events[1] as NewEvent), schemaVersion: 2 };
    await breaksAtLast(events, 'schema', /schema version 2, this server reads version 1/);
  });

  it('given event times that go backwards, then the time rule breaks', async () => {
    await breaksAtLast(log(run('a', {}), ['RunAdmitted', { runId: 'a' }, -3600]), 'times', /went backwards/);
  });

  it('given a gap or a repeat in positions, then the position rule breaks', async () => {
    const store = openSqliteStore({ path: ':memory:' });
    try {
      await store.append(DEPLOYMENT_STREAM, log(run('a'), run('b')), 'no_stream');
      // A store that repeats or skips positions is simulated by reading through a wrapper of the real one.
      const skipping: EventStore = Object.create(store, {
        readAll: {
          value: async (options: Parameters<EventStore['readAll']>[0]) =>
            (await store.readAll(options)).map((e) => (e.revision === 1n ? { ...e, position: e.position + 5n } : e)),
        },
      });
      const gap = await verifyLog(skipping, { gaplessPositions: true });
      expect(gap.breach).toMatchObject({ rule: 'positions', position: 7n });
      expect(gap.breach?.message).toMatch(/a gap in the log/);
      expect((await verifyLog(skipping, { gaplessPositions: false })).breach).toBeNull();
      const repeating: EventStore = Object.create(store, {
        readAll: {
          value: async (options: Parameters<EventStore['readAll']>[0]) =>
            (await store.readAll(options)).map((e) => ({ ...e, position: 1n })),
        },
      });
      expect((await verifyLog(repeating, { gaplessPositions: false })).breach).toMatchObject({ rule: 'positions' });
    } finally {
      await store.close();
    }
  });

  it('given an empty log, then nothing is wrong', async () => {
    const report = await verdict([]);
    expect(report).toMatchObject({ ok: true, events: 0, breach: null });
  });
});

describe('sluice verify on logs written by Sluice', () => {
  it('given the fixture log of an older format, then it passes', async () => {
    const fixture = JSON.parse(
      readFileSync(join(import.meta.dirname, '../fixtures/log-before-limit-states.json'), 'utf8'),
    ) as { events: NewEvent[] };
    const report = await verdict(
      fixture.events.map(({ type, schemaVersion, data, actor, at }) => ({ type, schemaVersion, data, actor, at })),
    );
    expect(report.breach).toBeNull();
    expect(report.runs.admitted).toBeGreaterThan(0);
  });
});

function reason() {
  return {
    kind: 'POOL_LIMIT',
    key: null,
    value: null,
    pool: 'gpu',
    perUniqueValue: false,
    limit: 1,
    inUse: 1,
    message: 'pool gpu: 1 of 1 slots in use',
  };
}
