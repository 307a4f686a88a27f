/**
 * The contract's audit section over HTTP through `yoga.fetch` (no port): snapshot of the past
 * by position or instant, simulate against the real changeConcurrencyConfig, and decisions
 * filtered by pool, paged while new decisions arrive.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import { type CheckpointStore, openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import {
  allDecisions,
  CONFIG_FIELDS,
  CONFIG_RESULT,
  DECISION_FIELDS,
  enqueued,
  Gql,
  type Json,
  mutated,
  POOL_FIELDS,
} from '../support/e2e-http.js';

// vitest resolves `graphql` to its ESM build for src/ while Pothos and Yoga load the CJS one;
// two realms break the schema. Give src/ the CJS build too (as the other e2e tests do).
vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

let store: EventStore;
let checkpoints: CheckpointStore;
let sluice: Sluice;
let gql: Gql;
/** A clock one second further on at every reading, so every command has its own time. */
let tick = 0;
const START = Date.parse('2024-05-01T00:00:00.000Z');
const warnings: string[] = [];

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  // Checkpoints every 4 events, so snapshots of the past start from them.
  checkpoints = openCheckpointStore(':memory:');
  tick = 0;
  warnings.length = 0;
  sluice = await Sluice.open({
    store,
    checkpoints,
    checkpointEvery: 4,
    clock: () => new Date(START + 1000 * tick++),
    warn: (w) => warnings.push(w),
  });
  const yoga = createSluiceYoga(sluice);
  gql = new Gql('http://sluice.test/graphql', (url, init) => yoga.fetch(url, init));
});

afterEach(async () => {
  await sluice.close();
  await store.close();
  checkpoints.close();
  expect(warnings).toEqual([]);
});

const mutate = (query: string, variables?: Record<string, unknown>) => mutated(gql, query, variables);
const enqueue = (input: Record<string, unknown>) => enqueued(gql, input);

const maxRuns = (limit: number) =>
  mutate(`mutation { setMaxConcurrentRuns(limit: ${limit}) { __typename ... on Error { message } } }`);
const finish = (id: string) =>
  mutate(
    `mutation($id: ID!) { markRunFinished(runId: $id, status: SUCCESS) { __typename ... on Error { message } } }`,
    {
      id,
    },
  );
const tagLimits = (limits: Json[]) =>
  mutate(
    `mutation($limits: [TagConcurrencyLimitInput!]!) { setTagConcurrencyLimits(limits: $limits) { __typename ... on Error { message } } }`,
    { limits },
  );
const claim = (runId: string, stepKey: string) =>
  mutate(
    `mutation($runId: ID!, $stepKey: String!) { claimStepSlot(runId: $runId, stepKey: $stepKey) { __typename ... on Error { message } } }`,
    { runId, stepKey },
  );
const release = (runId: string, stepKey: string) =>
  mutate(
    `mutation($runId: ID!, $stepKey: String!) { releaseStepSlot(runId: $runId, stepKey: $stepKey) { __typename ... on Error { message } } }`,
    { runId, stepKey },
  );

const CONSTRAINT = 'kind key value pool limit inUse message';
const SNAPSHOT_RUN = `id status priority admittedAt blockedBy { ${CONSTRAINT} }
  waits { from to reasons { ${CONSTRAINT} } } decisions { position kind }`;
const SNAPSHOT_FIELDS = `position at config { ${CONFIG_FIELDS} }
  queue { ${SNAPSHOT_RUN} } inProgress { ${SNAPSHOT_RUN} } pools { ${POOL_FIELDS} }`;

async function snapshot(args: { position?: string | null; at?: string | null } = {}): Promise<Json> {
  const data = await gql.data(
    `query($position: String, $at: DateTime) { snapshot(position: $position, at: $at) { ${SNAPSHOT_FIELDS} } }`,
    { position: args.position ?? null, at: args.at ?? null },
  );
  return data.snapshot;
}

const position = () => sluice.state.revision.toString();
const ids = (runs: Json[]) => runs.map((r: Json) => r.id);
const withoutMessages = (list: Json[]) => list.map(({ message: _m, ...rest }: Json) => rest);

// ---------------------------------------------------------------------------------------------

describe('snapshot', () => {
  it('given no argument, when a snapshot is asked for, then it is now: the last position, its time, the config, queue, runs in progress and pools', async () => {
    await maxRuns(1);
    await mutate('mutation { setPoolLimit(pool: "db", limit: 2) { __typename } }');
    await enqueue({ runId: 'a', jobName: 'j', steps: [{ key: 's', pool: 'db' }] });
    await enqueue({ runId: 'b', jobName: 'j', priority: 3 });
    const now = await snapshot();
    expect(now.position).toBe(position());
    expect(now.at).toBe(sluice.state.lastEventAt);
    expect(now.config).toEqual({
      maxConcurrentRuns: 1,
      tagConcurrencyLimits: [],
      poolGranularity: 'OP',
      defaultPoolLimit: null,
    });
    expect(ids(now.queue)).toEqual(['b']);
    expect(withoutMessages(now.queue[0].blockedBy)).toEqual([
      { kind: 'MAX_CONCURRENT_RUNS', key: null, value: null, pool: null, limit: 1, inUse: 1 },
    ]);
    expect(now.inProgress.map((r: Json) => [r.id, r.status])).toEqual([['a', 'STARTING']]);
    expect(now.pools).toEqual([{ name: 'db', limit: 2, explicitLimit: 2, inUse: 0, pending: 0, activeRunIds: [] }]);
    // The same as the live queries.
    const live = await gql.data(`{ queue { id } pools { ${POOL_FIELDS} } concurrencyConfig { ${CONFIG_FIELDS} } }`);
    expect(ids(live.queue)).toEqual(ids(now.queue));
    expect(live.pools).toEqual(now.pools);
    expect(live.concurrencyConfig).toEqual(now.config);
  });

  it('given snapshots taken after each command, when each position is asked for later, then the snapshot of the past is the snapshot taken then', async () => {
    const taken: Json[] = [];
    const steps: Array<() => Promise<unknown>> = [
      () => maxRuns(2),
      () => tagLimits([{ key: 'team', limit: 1 }]),
      () => enqueue({ runId: 'a', jobName: 'j', tags: [{ key: 'team', value: 'x' }] }),
      () => enqueue({ runId: 'b', jobName: 'j', tags: [{ key: 'team', value: 'x' }] }),
      () => enqueue({ runId: 'c', jobName: 'j', steps: [{ key: 's', pool: 'db' }] }),
      () => enqueue({ runId: 'd', jobName: 'j', priority: 5 }),
      () => mutate('mutation { markRunStarted(runId: "a") { __typename } }'),
      () => finish('c'),
      () => tagLimits([]),
      () => maxRuns(3),
      () => mutate('mutation { terminateRun(runId: "a") { __typename } }'),
      () => enqueue({ runId: 'e', jobName: 'j' }),
      () => finish('a'),
    ];
    for (const step of steps) {
      await step();
      taken.push(await snapshot());
    }
    expect(new Set(taken.map((s) => s.position)).size).toBe(taken.length);
    for (const then of taken) expect(await snapshot({ position: then.position }), then.position).toEqual(then);
    // At the position of the first command, before any run.
    expect(taken[0].queue).toEqual([]);
    expect(taken[0].config.maxConcurrentRuns).toBe(2);
  });

  it('given a run held by a tag limit at some position, when the config changes afterwards, then the snapshot at that position still shows the tag limit, and now shows what holds it now', async () => {
    await maxRuns(5);
    await tagLimits([{ key: 'team', limit: 1 }]);
    await enqueue({ runId: 'a', jobName: 'j', tags: [{ key: 'team', value: 'x' }] });
    await enqueue({ runId: 'b', jobName: 'j', tags: [{ key: 'team', value: 'x' }] });
    const heldByTag = position();
    await maxRuns(1); // b: held by the run limit and the tag limit
    await tagLimits([]); // b: held by the run limit alone

    const past = await snapshot({ position: heldByTag });
    expect(past.position).toBe(heldByTag);
    expect(past.config.maxConcurrentRuns).toBe(5);
    expect(past.config.tagConcurrencyLimits).toEqual([
      { key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 1 },
    ]);
    expect(ids(past.queue)).toEqual(['b']);
    expect(past.queue[0].blockedBy).toEqual([
      {
        kind: 'TAG_LIMIT',
        key: 'team',
        value: null,
        pool: null,
        limit: 1,
        inUse: 1,
        message: 'tag team (any value): 1 of 1 runs in progress',
      },
    ]);
    // Its wait was still open then.
    expect(past.queue[0].waits).toEqual([{ from: expect.any(String), to: null, reasons: past.queue[0].blockedBy }]);

    const now = await snapshot();
    expect(now.config.tagConcurrencyLimits).toEqual([]);
    expect(now.queue[0].blockedBy.map((c: Json) => c.kind)).toEqual(['MAX_CONCURRENT_RUNS']);
    expect(now.queue[0].waits.map((w: Json) => w.reasons.map((r: Json) => r.kind))).toEqual([
      ['TAG_LIMIT'],
      ['MAX_CONCURRENT_RUNS', 'TAG_LIMIT'],
      ['MAX_CONCURRENT_RUNS'],
    ]);
    const live = await gql.data(`{ run(id: "b") { blockedBy { ${CONSTRAINT} } } }`);
    expect(live.run.blockedBy).toEqual(now.queue[0].blockedBy);
  });

  it('given RUN granularity and a run held by a pool, when a past snapshot is asked for, then its pools count pending runs as recorded then', async () => {
    await mutate(`mutation { setPoolGranularity(granularity: RUN) { __typename }
      setPoolLimit(pool: "db", limit: 1) { __typename } }`);
    await enqueue({ runId: 'a', jobName: 'j', steps: [{ key: 's', pool: 'db' }] });
    await enqueue({ runId: 'b', jobName: 'j', steps: [{ key: 's', pool: 'db' }] });
    const held = position();
    await finish('a');
    const past = await snapshot({ position: held });
    expect(past.pools).toEqual([{ name: 'db', limit: 1, explicitLimit: 1, inUse: 1, pending: 1, activeRunIds: ['a'] }]);
    expect(past.queue[0].blockedBy.map((c: Json) => [c.kind, c.pool])).toEqual([['POOL_LIMIT', 'db']]);
    expect((await snapshot()).pools).toEqual([
      { name: 'db', limit: 1, explicitLimit: 1, inUse: 1, pending: 0, activeRunIds: ['b'] },
    ]);
  });

  it('given instants before, between and after the events, when snapshot(at:) is asked for, then it is as of the last event at or before the instant, and answers with that instant', async () => {
    await maxRuns(1); // at START + 0 s
    await enqueue({ runId: 'a', jobName: 'j' }); // + 1 s
    const afterA = position();
    tick += 10;
    await enqueue({ runId: 'b', jobName: 'j' }); // + 12 s
    const afterB = position();

    const iso = (ms: number) => new Date(ms).toISOString();
    const before = await snapshot({ at: iso(START - 1) });
    expect(before.position).toBe('-1');
    expect(before.at).toBe(iso(START - 1));
    expect(before.queue).toEqual([]);
    expect(before.inProgress).toEqual([]);
    expect(before.pools).toEqual([]);
    expect(before.config.maxConcurrentRuns).toBe(10);

    const between = await snapshot({ at: iso(START + 5_000) });
    expect(between.position).toBe(afterA);
    expect(between.at).toBe(iso(START + 5_000));
    expect(ids(between.inProgress)).toEqual(['a']);
    expect(between.queue).toEqual([]);
    // The same state as by position; only `at` differs.
    expect({ ...between, at: null }).toEqual({ ...(await snapshot({ position: afterA })), at: null });

    const exact = await snapshot({ at: iso(START + 12_000) });
    expect(exact.position).toBe(afterB);
    expect(ids(exact.queue)).toEqual(['b']);

    // Another time zone is the same instant.
    const offset = await snapshot({ at: '2024-05-01T02:00:05+02:00' });
    expect(offset.position).toBe(afterA);
    expect(offset.at).toBe(iso(START + 5_000));

    const later = await snapshot({ at: '2999-01-01T00:00:00Z' });
    expect(later.position).toBe(afterB);
  });

  it('given position and at together, a position beyond the log, a malformed position or instant, when snapshot is asked for, then the request is refused (HTTP 400) and says why', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    const last = sluice.state.revision;
    const both = await gql.answer(`{ snapshot(position: "0", at: "2024-05-01T00:00:00Z") { position } }`);
    expect(both.status).toBe(400);
    expect(both.body.errors?.[0]?.message).toBe('give position or at, not both');

    const beyond = await gql.answer(`{ snapshot(position: "${last + 1n}") { position } }`);
    expect(beyond.status).toBe(400);
    expect(beyond.body.errors?.[0]?.message).toBe(`position ${last + 1n} is not in the log yet (the last is ${last})`);
    expect(beyond.body.errors?.[0]?.extensions?.field).toBe('position');

    for (const bad of ['abc', '-1', '1.5', '', ' 1', '99999999999999999999']) {
      const answer = await gql.answer('query($p: String) { snapshot(position: $p) { position } }', { p: bad });
      expect(answer.status, JSON.stringify(bad)).toBe(400);
      expect(answer.body.errors?.[0]?.message, JSON.stringify(bad)).toMatch(/position/);
    }
    for (const bad of ['yesterday', '2024-13-45T00:00:00Z', 12]) {
      const answer = await gql.answer('query($at: DateTime) { snapshot(at: $at) { position } }', { at: bad });
      expect(answer.status, JSON.stringify(bad)).toBe(400);
    }
    // The last position itself is fine.
    expect((await snapshot({ position: last.toString() })).position).toBe(last.toString());
  });
});

// ---------------------------------------------------------------------------------------------

describe('simulate', () => {
  const SIMULATION = `simulate(change: $change) {
    config { ${CONFIG_FIELDS} }
    wouldAdmit { id status blockedBy { ${CONSTRAINT} } }
    stillQueued { id status blockedBy { ${CONSTRAINT} } } }`;

  async function simulate(change: Json): Promise<Json> {
    return (await gql.data(`query($change: ConfigChangeInput!) { ${SIMULATION} }`, { change })).simulate;
  }

  async function change(change: Json): Promise<Json> {
    return (
      await mutate(
        `mutation($change: ConfigChangeInput!) { changeConcurrencyConfig(change: $change) { ${CONFIG_RESULT} } }`,
        { change },
      )
    ).changeConcurrencyConfig;
  }

  async function queued(): Promise<Json[]> {
    return (await gql.data(`{ queue { id status blockedBy { ${CONSTRAINT} } } }`)).queue;
  }

  async function admittedSince(revision: bigint): Promise<string[]> {
    const decisions = await allDecisions(gql);
    return decisions.filter((d) => BigInt(d.position) > revision && d.kind === 'ADMITTED').map((d) => d.runId);
  }

  it('given runs held by every kind of limit, when changes are simulated and then made one after another, then each simulation appended nothing and foretold the admitted runs and what holds the rest', async () => {
    await maxRuns(2);
    await mutate(`mutation { setPoolGranularity(granularity: RUN) { __typename }
      setPoolLimit(pool: "db", limit: 1) { __typename } }`);
    await tagLimits([
      { key: 'team', applyLimitPerUniqueValue: true, limit: 1 },
      { key: 'env', value: 'prod', limit: 1 },
    ]);
    const runs = [
      { runId: 'a', tags: [{ key: 'team', value: 'x' }], steps: [{ key: 's', pool: 'db' }] },
      { runId: 'b', tags: [{ key: 'team', value: 'x' }] },
      { runId: 'c', steps: [{ key: 's', pool: 'db' }] },
      { runId: 'd', tags: [{ key: 'env', value: 'prod' }], priority: 2 },
      { runId: 'e', tags: [{ key: 'env', value: 'prod' }] },
      { runId: 'f', steps: [{ key: 's', pool: 'gpu' }], priority: -1 },
      { runId: 'g', tags: [{ key: 'team', value: 'y' }] },
    ];
    for (const run of runs) await enqueue({ jobName: 'j', ...run });
    expect(ids(await queued()).length).toBeGreaterThan(3);

    const changes: Json[] = [
      { maxConcurrentRuns: 3 },
      {
        maxConcurrentRuns: 5,
        poolLimits: [
          { pool: 'db', limit: 2 },
          { pool: 'gpu', limit: 0 },
        ],
      },
      { tagConcurrencyLimits: [{ key: 'env', value: 'prod', limit: 1 }], defaultPoolLimit: 0 },
      // At OP granularity f's only root step is in gpu, full at its limit (the default, 0): the root-step hold.
      { maxConcurrentRuns: -1, poolGranularity: 'OP' },
      { maxConcurrentRuns: 10, tagConcurrencyLimits: [], poolLimits: [{ pool: 'gpu', limit: null }] },
      // gpu without any limit: f's root step lets it go.
      { defaultPoolLimit: null },
    ];
    const kindsForetold = new Set<string>();
    for (const edit of changes) {
      const revision = sluice.state.revision;
      const decisionsBefore = await allDecisions(gql);
      const simulation = await simulate(edit);
      // Nothing appended.
      expect(sluice.state.revision, JSON.stringify(edit)).toBe(revision);
      expect(await allDecisions(gql)).toEqual(decisionsBefore);
      expect(simulation.wouldAdmit.every((r: Json) => r.status === 'QUEUED' && r.blockedBy.length === 0)).toBe(true);
      for (const run of simulation.stillQueued) for (const reason of run.blockedBy) kindsForetold.add(reason.kind);

      const result = await change(edit);
      expect(result.__typename).toBe('ConfigPayload');
      expect(result.config).toEqual(simulation.config);
      expect(await admittedSince(revision), JSON.stringify(edit)).toEqual(ids(simulation.wouldAdmit));
      const rest = await queued();
      expect(
        rest.map((r: Json) => ({ id: r.id, blockedBy: r.blockedBy })),
        JSON.stringify(edit),
      ).toEqual(simulation.stillQueued.map((r: Json) => ({ id: r.id, blockedBy: r.blockedBy })));
    }
    // On the way, runs were held by every kind of run limit.
    expect([...kindsForetold].sort()).toEqual(['MAX_CONCURRENT_RUNS', 'POOL_LIMIT', 'ROOT_STEP_POOLS', 'TAG_LIMIT']);
    // By the end everything got in, step by step.
    expect(await queued()).toEqual([]);
  });

  it('given a default pool limit, when a change leaves defaultPoolLimit out or gives null, then the first keeps it and the second clears it', async () => {
    await mutate('mutation { setDefaultPoolLimit(limit: 2) { __typename } }');
    expect((await simulate({ maxConcurrentRuns: 3 })).config.defaultPoolLimit).toBe(2);
    expect((await simulate({ defaultPoolLimit: null })).config.defaultPoolLimit).toBeNull();
    const kept = await change({ maxConcurrentRuns: 3 });
    expect(kept.config).toMatchObject({ maxConcurrentRuns: 3, defaultPoolLimit: 2 });
    const cleared = await change({ defaultPoolLimit: null });
    expect(cleared.config).toMatchObject({ maxConcurrentRuns: 3, defaultPoolLimit: null });
  });

  it('given an invalid change, when it is simulated, then the request is refused naming the field; changeConcurrencyConfig answers a ValidationError with the same field; nothing is appended', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    const revision = sluice.state.revision;
    const bad = { maxConcurrentRuns: 3, poolLimits: [{ pool: 'db', limit: -1 }] };
    const answer = await gql.answer(`query($change: ConfigChangeInput!) { ${SIMULATION} }`, { change: bad });
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions?.field).toBe('change.poolLimits.0.limit');
    expect(answer.body.errors?.[0]?.message).toMatch(/^change\.poolLimits\.0\.limit: /);

    const result = (
      await gql.data(
        `mutation($change: ConfigChangeInput!) { changeConcurrencyConfig(change: $change) { ${CONFIG_RESULT} } }`,
        { change: bad },
      )
    ).changeConcurrencyConfig;
    expect(result.__typename).toBe('ValidationError');
    expect(result.field).toBe('change.poolLimits.0.limit');
    expect(sluice.state.revision).toBe(revision);
  });
});

// ---------------------------------------------------------------------------------------------

describe('decisions(pool:)', () => {
  async function decisionsPage(args: { pool?: string; runId?: string; first?: number; after?: string | null }) {
    const data = await gql.data(
      `query($pool: String, $runId: ID, $first: Int, $after: String) {
        decisions(pool: $pool, runId: $runId, first: $first, after: $after) {
          edges { cursor node { ${DECISION_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
      { pool: args.pool ?? null, runId: args.runId ?? null, first: args.first ?? null, after: args.after ?? null },
    );
    return data.decisions;
  }

  async function allFor(args: { pool?: string; runId?: string }): Promise<Json[]> {
    const out: Json[] = [];
    let after: string | null = null;
    for (;;) {
      const page: Json = await decisionsPage({ ...args, first: 1000, after });
      out.push(...page.edges.map((e: Json) => e.node));
      if (!page.pageInfo.hasNextPage) return out;
      after = page.pageInfo.endCursor;
    }
  }

  /** Decisions about a pool, by hand: its steps' slots, limits naming it, runs that use it. */
  async function expectedFor(pool: string, runId?: string): Promise<Json[]> {
    const runs = (await gql.data('{ runs(first: 1000) { edges { node { id pools } } } }')).runs.edges.map(
      (e: Json) => e.node,
    );
    const poolsOf = new Map<string, string[]>(runs.map((r: Json) => [r.id, r.pools]));
    return (await allDecisions(gql)).filter(
      (d) =>
        (runId === undefined || d.runId === runId) &&
        (d.pool === pool || d.reasons.some((r: Json) => r.pool === pool) || poolsOf.get(d.runId)?.includes(pool)),
    );
  }

  async function someSlotDecisions(): Promise<void> {
    // The root-step hold off: these tests need runs admitted that contend for db's one slot.
    await mutate(`mutation { changeConcurrencyConfig(change: {rootStepHold: {enabled: false}}) { __typename } }`);
    await mutate('mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }');
    await enqueue({
      runId: 'a',
      jobName: 'j',
      steps: [
        { key: 'x', pool: 'db' },
        { key: 'y', pool: 'gpu' },
      ],
    });
    await enqueue({ runId: 'b', jobName: 'j', steps: [{ key: 'x', pool: 'db' }] });
    await enqueue({ runId: 'c', jobName: 'j', steps: [{ key: 'x' }] });
    await claim('a', 'x'); // SLOT_GRANTED a/x db
    await claim('b', 'x'); // SLOT_PENDING b/x db
    await claim('a', 'y'); // SLOT_GRANTED a/y gpu
    await claim('c', 'x'); // SLOT_GRANTED c/x, no pool
  }

  it('given decisions about several pools, when they are listed by pool, then exactly those about the pool answer, in log order', async () => {
    await someSlotDecisions();
    const db = await allFor({ pool: 'db' });
    expect(db).toEqual(await expectedFor('db'));
    expect(db.map((d: Json) => [d.kind, d.runId, d.stepKey])).toEqual([
      ['ADMITTED', 'a', null],
      ['ADMITTED', 'b', null],
      ['SLOT_GRANTED', 'a', 'x'],
      ['SLOT_PENDING', 'b', 'x'],
      ['SLOT_GRANTED', 'a', 'y'],
    ]);
    expect(db.find((d: Json) => d.kind === 'SLOT_PENDING').reasons.map((r: Json) => [r.kind, r.pool])).toEqual([
      ['POOL_LIMIT', 'db'],
    ]);
    const gpu = await allFor({ pool: 'gpu' });
    expect(gpu).toEqual(await expectedFor('gpu'));
    expect(gpu.map((d: Json) => [d.kind, d.runId, d.stepKey])).toEqual([
      ['ADMITTED', 'a', null],
      ['SLOT_GRANTED', 'a', 'x'],
      ['SLOT_GRANTED', 'a', 'y'],
    ]);
    expect(await allFor({ pool: 'never-seen' })).toEqual([]);
    const positions: bigint[] = db.map((d: Json) => BigInt(d.position));
    expect(positions).toEqual([...positions].sort((x, y) => (x < y ? -1 : 1)));
    expect(new Set(positions).size).toBe(positions.length);
  });

  it('given a cursor, when new decisions about the pool arrive between pages, then paging goes on with none missed or repeated', async () => {
    await someSlotDecisions();
    const first = await decisionsPage({ pool: 'db', first: 2 });
    expect(first.pageInfo.hasNextPage).toBe(true);
    expect(first.pageInfo.endCursor).toBe(first.edges.at(-1).cursor);
    const seen = first.edges.map((e: Json) => e.node.position);

    await release('a', 'x'); // SLOT_GRANTED b/x
    await enqueue({ runId: 'd', jobName: 'j', steps: [{ key: 'x', pool: 'db' }] }); // ADMITTED d
    await claim('d', 'x'); // SLOT_PENDING d/x
    await enqueue({ runId: 'other', jobName: 'j', steps: [{ key: 'x', pool: 'gpu' }] }); // not about db

    let after = first.pageInfo.endCursor;
    const pages: Json[] = [];
    for (;;) {
      const page = await decisionsPage({ pool: 'db', first: 2, after });
      pages.push(page);
      seen.push(...page.edges.map((e: Json) => e.node.position));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    const everything = (await expectedFor('db')).map((d) => d.position);
    expect(seen).toEqual(everything);
    expect(new Set(seen).size).toBe(seen.length);
    expect(everything).toHaveLength(8);
    // The same cursor asked again gives the same page.
    expect(await decisionsPage({ pool: 'db', first: 2, after: first.pageInfo.endCursor })).toEqual(pages[0]);
    expect(pages.at(-1).pageInfo.hasNextPage).toBe(false);
  });

  it('given runId and pool together, when decisions are listed, then only that run’s decisions about the pool answer, and they page', async () => {
    await someSlotDecisions();
    const aDb = await allFor({ runId: 'a', pool: 'db' });
    expect(aDb).toEqual(await expectedFor('db', 'a'));
    expect(aDb.map((d: Json) => d.kind)).toEqual(['ADMITTED', 'SLOT_GRANTED', 'SLOT_GRANTED']);
    expect(await allFor({ runId: 'c', pool: 'db' })).toEqual([]);
    expect(await allFor({ runId: 'nobody', pool: 'db' })).toEqual([]);
    const bDb = await allFor({ runId: 'b', pool: 'db' });
    expect(bDb.map((d: Json) => [d.kind, d.stepKey])).toEqual([
      ['ADMITTED', null],
      ['SLOT_PENDING', 'x'],
    ]);

    const page1 = await decisionsPage({ runId: 'a', pool: 'db', first: 1 });
    expect(page1.pageInfo.hasNextPage).toBe(true);
    const page2 = await decisionsPage({ runId: 'a', pool: 'db', first: 5, after: page1.pageInfo.endCursor });
    expect([...page1.edges, ...page2.edges].map((e: Json) => e.node)).toEqual(aDb);
    expect(page2.pageInfo.hasNextPage).toBe(false);
  });

  it('given RUN granularity, when a run is held by a pool limit, then that decision is listed under the pool, and runs of other pools are not', async () => {
    await mutate(`mutation { setPoolGranularity(granularity: RUN) { __typename }
      setDefaultPoolLimit(limit: 1) { __typename } }`);
    await enqueue({ runId: 'a', jobName: 'j', steps: [{ key: 's', pool: 'db' }] });
    await enqueue({ runId: 'b', jobName: 'j', steps: [{ key: 's', pool: 'db' }] });
    await enqueue({ runId: 'c', jobName: 'j', steps: [{ key: 's', pool: 'gpu' }] });
    await finish('a');
    const db = await allFor({ pool: 'db' });
    expect(db.map((d: Json) => [d.kind, d.runId, d.reasons.map((r: Json) => r.pool)])).toEqual([
      ['ADMITTED', 'a', []],
      ['BLOCKED', 'b', ['db']],
      ['ADMITTED', 'b', []],
    ]);
    expect(db).toEqual(await expectedFor('db'));
  });
});
