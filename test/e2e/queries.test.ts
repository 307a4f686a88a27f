/** The queries of the contract's core section, over HTTP through `yoga.fetch` (no port). */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import { allDecisions, DECISION_FIELDS, enqueued, Gql, type Json, mutated, RUN_FIELDS } from '../support/e2e-http.js';

let store: EventStore;
let sluice: Sluice;
let gql: Gql;
/** A clock one second further on at every reading, so every command has its own time. */
let tick = 0;
const START = Date.parse('2024-05-01T00:00:00.000Z');

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  tick = 0;
  sluice = await Sluice.open({ store, clock: () => new Date(START + 1000 * tick++) });
  const yoga = createSluiceYoga(sluice);
  gql = new Gql('http://sluice.test/graphql', (url, init) => yoga.fetch(url, init));
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const mutate = (query: string, variables?: Record<string, unknown>) => mutated(gql, query, variables);
const enqueue = (input: Record<string, unknown>) => enqueued(gql, input);

const onPool = (pool: string) => [{ key: 'step', pool }];
const tagged = (key: string, value: string) => [{ key, value }];

async function maxRuns(limit: number): Promise<void> {
  await mutate(`mutation { setMaxConcurrentRuns(limit: ${limit}) { __typename ... on Error { message } } }`);
}

async function finish(runId: string, status = 'SUCCESS'): Promise<void> {
  await mutate(
    `mutation($id: ID!) { markRunFinished(runId: $id, status: ${status}) { __typename ... on Error { message } } }`,
    { id: runId },
  );
}

async function run(id: string): Promise<Json> {
  return (await gql.data(`query($id: ID!) { run(id: $id) { ${RUN_FIELDS} } }`, { id })).run;
}

async function runsPage(args: { first?: number; after?: string | null; statuses?: string[] }): Promise<Json> {
  const data = await gql.data(
    `query($first: Int, $after: String, $statuses: [RunStatus!]) {
      runs(first: $first, after: $after, statuses: $statuses) {
        edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }`,
    { first: args.first ?? null, after: args.after ?? null, statuses: args.statuses ?? null },
  );
  return data.runs;
}

async function decisionsPage(args: { first?: number; after?: string | null; runId?: string }): Promise<Json> {
  const data = await gql.data(
    `query($first: Int, $after: String, $runId: ID) {
      decisions(first: $first, after: $after, runId: $runId) {
        edges { cursor node { ${DECISION_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
    { first: args.first ?? null, after: args.after ?? null, runId: args.runId ?? null },
  );
  return data.decisions;
}

const ids = (page: Json) => page.edges.map((e: Json) => e.node.id);

// ---------------------------------------------------------------------------------------------

describe('run', () => {
  it('given a run, when it is asked for by id, then every field answers; an unknown id answers null', async () => {
    await enqueue({ runId: 'a', jobName: 'etl', tags: tagged('team', 'x'), steps: onPool('db'), priority: 3 });
    expect(await run('a')).toMatchObject({
      id: 'a',
      jobName: 'etl',
      status: 'STARTING',
      tags: [{ key: 'team', value: 'x' }],
      pools: ['db'],
      priority: 3,
      blockedBy: [],
      waits: [],
      decisions: [{ kind: 'ADMITTED', runId: 'a', reasons: [] }],
    });
    expect(await run('nobody')).toBeNull();
  });
});

describe('runs', () => {
  it('given runs in every state, when filtered by status, then only those statuses answer, in enqueue order', async () => {
    await maxRuns(2);
    await enqueue({ runId: 'a', jobName: 'j' });
    await enqueue({ runId: 'b', jobName: 'j' });
    await enqueue({ runId: 'c', jobName: 'j' });
    await enqueue({ runId: 'd', jobName: 'j' });
    await mutate('mutation { markRunStarted(runId: "b") { __typename } }');
    await finish('a');
    // c was admitted into a's place; d still waits.
    expect(ids(await runsPage({}))).toEqual(['a', 'b', 'c', 'd']);
    expect(ids(await runsPage({ statuses: ['QUEUED'] }))).toEqual(['d']);
    expect(ids(await runsPage({ statuses: ['STARTING', 'STARTED'] }))).toEqual(['b', 'c']);
    expect(ids(await runsPage({ statuses: ['SUCCESS', 'FAILURE', 'CANCELED'] }))).toEqual(['a']);
    expect(ids(await runsPage({ statuses: ['CANCELING'] }))).toEqual([]);
  });

  it('given five runs, when paged two at a time, then the pages cover them all once, with hasNextPage and endCursor', async () => {
    for (const id of ['r1', 'r2', 'r3', 'r4', 'r5']) await enqueue({ runId: id, jobName: 'j' });
    const seen: string[] = [];
    let after: string | null = null;
    const pages: boolean[] = [];
    for (;;) {
      const page: Json = await runsPage({ first: 2, after });
      seen.push(...ids(page));
      pages.push(page.pageInfo.hasNextPage);
      expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)?.cursor ?? null);
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual(['r1', 'r2', 'r3', 'r4', 'r5']);
    expect(pages).toEqual([true, true, false]);
  });

  it('given a cursor, when new runs arrive (even of higher priority) before the next page, then the next page goes on where it left off', async () => {
    await maxRuns(0);
    for (const id of ['r1', 'r2', 'r3']) await enqueue({ runId: id, jobName: 'j' });
    const first = await runsPage({ first: 2, statuses: ['QUEUED'] });
    expect(ids(first)).toEqual(['r1', 'r2']);
    await enqueue({ runId: 'urgent', jobName: 'j', priority: 100 });
    await enqueue({ runId: 'r4', jobName: 'j' });
    const second = await runsPage({ first: 2, after: first.pageInfo.endCursor, statuses: ['QUEUED'] });
    expect(ids(second)).toEqual(['r3', 'urgent']);
    const third = await runsPage({ first: 2, after: second.pageInfo.endCursor, statuses: ['QUEUED'] });
    expect(ids(third)).toEqual(['r4']);
    expect(third.pageInfo.hasNextPage).toBe(false);
    // The same cursor asked again gives the same page.
    expect(ids(await runsPage({ first: 2, after: first.pageInfo.endCursor, statuses: ['QUEUED'] }))).toEqual([
      'r3',
      'urgent',
    ]);
  });

  it('given first above 1000 or below 0, or a cursor this API never gave, when runs are asked for, then the request is rejected (HTTP 400)', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    for (const args of ['first: 1001', 'first: -1', 'after: "not-a-cursor"', 'after: "-1"']) {
      const answer = await gql.answer(`{ runs(${args}) { edges { cursor } } }`);
      expect(answer.status, args).toBe(400);
      expect(answer.body.errors?.[0]?.message, args).toMatch(/first|after/);
    }
    const ok = await gql.answer('{ runs(first: 1000) { edges { cursor } } }');
    expect(ok.status).toBe(200);
    const none = await runsPage({ first: 0 });
    expect(none).toEqual({ edges: [], pageInfo: { hasNextPage: true, endCursor: null } });
  });
});

describe('queue', () => {
  it('given queued runs of several priorities, when the queue is asked for, then it is by priority descending, then enqueue order', async () => {
    await maxRuns(0);
    await enqueue({ runId: 'low-1', jobName: 'j' });
    await enqueue({ runId: 'high-1', jobName: 'j', priority: 5 });
    await enqueue({ runId: 'low-2', jobName: 'j' });
    await enqueue({ runId: 'tag-high', jobName: 'j', tags: tagged('dagster/priority', '5') });
    await enqueue({ runId: 'negative', jobName: 'j', priority: -1 });
    await enqueue({ runId: 'highest', jobName: 'j', tags: tagged('dagster/priority', '10') });
    const queue = (await gql.data('{ queue { id priority status } }')).queue;
    expect(queue.map((r: Json) => r.id)).toEqual(['highest', 'high-1', 'tag-high', 'low-1', 'low-2', 'negative']);
    expect(queue.map((r: Json) => r.priority)).toEqual([10, 5, 5, 0, 0, -1]);
    expect(queue.every((r: Json) => r.status === 'QUEUED')).toBe(true);

    // Admission follows that order.
    await maxRuns(2);
    expect((await gql.data('{ queue { id } }')).queue.map((r: Json) => r.id)).toEqual([
      'tag-high',
      'low-1',
      'low-2',
      'negative',
    ]);
  });
});

describe('pools', () => {
  it('given RUN granularity, when runs use pools, then each pool reports its limit, inUse, pending and active runs', async () => {
    await mutate('mutation { setPoolGranularity(granularity: RUN) { __typename } }');
    await mutate('mutation { setDefaultPoolLimit(limit: 1) { __typename } }');
    await mutate('mutation { setPoolLimit(pool: "warehouse", limit: 2) { __typename } }');
    await enqueue({ runId: 'w1', jobName: 'j', steps: onPool('warehouse') });
    await enqueue({ runId: 'w2', jobName: 'j', steps: [...onPool('warehouse'), { key: 'other', pool: 'warehouse' }] });
    await enqueue({ runId: 'w3', jobName: 'j', steps: onPool('warehouse') });
    await enqueue({ runId: 's1', jobName: 'j', steps: onPool('scratch') });
    await enqueue({ runId: 's2', jobName: 'j', steps: onPool('scratch') });
    await enqueue({ runId: 's3', jobName: 'j', steps: onPool('scratch') });

    const data = await gql.data(`{
      pools { name limit explicitLimit inUse pending activeRunIds }
      warehouse: pool(name: "warehouse") { name limit explicitLimit inUse pending activeRunIds }
      unknown: pool(name: "never-seen") { name }
    }`);
    expect(data.pools).toEqual([
      { name: 'scratch', limit: 1, explicitLimit: null, inUse: 1, pending: 2, activeRunIds: ['s1'] },
      { name: 'warehouse', limit: 2, explicitLimit: 2, inUse: 2, pending: 1, activeRunIds: ['w1', 'w2'] },
    ]);
    expect(data.warehouse).toEqual(data.pools[1]);
    expect(data.unknown).toBeNull();

    await finish('w1');
    const after = (await gql.data('{ pool(name: "warehouse") { inUse pending activeRunIds } }')).pool;
    expect(after).toEqual({ inUse: 2, pending: 0, activeRunIds: ['w2', 'w3'] });
  });

  it('given a pool named only by a limit, when pools are asked for, then it is listed with nothing in use', async () => {
    await mutate('mutation { setPoolLimit(pool: "gpu", limit: 4) { __typename } }');
    expect((await gql.data('{ pools { name limit explicitLimit inUse pending activeRunIds } }')).pools).toEqual([
      { name: 'gpu', limit: 4, explicitLimit: 4, inUse: 0, pending: 0, activeRunIds: [] },
    ]);
  });
});

describe('concurrencyConfig', () => {
  it("given a new deployment, when the config is asked for, then it has Dagster's defaults; after edits, the edits", async () => {
    const query = `{ concurrencyConfig { maxConcurrentRuns poolGranularity defaultPoolLimit
      tagConcurrencyLimits { key value applyLimitPerUniqueValue limit } } }`;
    expect((await gql.data(query)).concurrencyConfig).toEqual({
      maxConcurrentRuns: 10,
      poolGranularity: 'OP',
      defaultPoolLimit: null,
      tagConcurrencyLimits: [],
    });
    await maxRuns(-1);
    await mutate(`mutation { setPoolGranularity(granularity: RUN) { __typename }
      setDefaultPoolLimit(limit: 7) { __typename }
      setTagConcurrencyLimits(limits: [{key: "team", limit: 3}, {key: "env", value: "prod", limit: 1}]) { __typename } }`);
    expect((await gql.data(query)).concurrencyConfig).toEqual({
      maxConcurrentRuns: -1,
      poolGranularity: 'RUN',
      defaultPoolLimit: 7,
      tagConcurrencyLimits: [
        { key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 3 },
        { key: 'env', value: 'prod', applyLimitPerUniqueValue: false, limit: 1 },
      ],
    });
  });
});

describe('decisions', () => {
  async function someDecisions(): Promise<void> {
    await maxRuns(1);
    await enqueue({ runId: 'a', jobName: 'j' }); // ADMITTED a
    await enqueue({ runId: 'b', jobName: 'j' }); // BLOCKED b
    await enqueue({ runId: 'c', jobName: 'j' }); // BLOCKED c
    await finish('a'); // ADMITTED b
    await finish('b'); // ADMITTED c
  }

  it('given decisions, when they are listed, then they come in log order with strictly increasing positions and cursors', async () => {
    await someDecisions();
    const page = await decisionsPage({});
    expect(page.edges.map((e: Json) => [e.node.kind, e.node.runId])).toEqual([
      ['ADMITTED', 'a'],
      ['BLOCKED', 'b'],
      ['BLOCKED', 'c'],
      ['ADMITTED', 'b'],
      ['ADMITTED', 'c'],
    ]);
    const positions = page.edges.map((e: Json) => BigInt(e.node.position));
    for (let i = 1; i < positions.length; i++) expect(positions[i] > positions[i - 1]).toBe(true);
    expect(page.edges.every((e: Json) => e.cursor === e.node.position)).toBe(true);
    expect(page.pageInfo).toEqual({ hasNextPage: false, endCursor: page.edges.at(-1).cursor });
  });

  it('given decisions about several runs, when listed by runId, then only that run’s answer, oldest first; an unknown run has none', async () => {
    await someDecisions();
    const b = await decisionsPage({ runId: 'b' });
    expect(b.edges.map((e: Json) => e.node.kind)).toEqual(['BLOCKED', 'ADMITTED']);
    expect(b.edges.every((e: Json) => e.node.runId === 'b')).toBe(true);
    expect((await decisionsPage({ runId: 'nobody' })).edges).toEqual([]);
    // Paging within one run's decisions.
    const first = await decisionsPage({ runId: 'b', first: 1 });
    expect(first.pageInfo.hasNextPage).toBe(true);
    const rest = await decisionsPage({ runId: 'b', after: first.pageInfo.endCursor });
    expect(rest.edges.map((e: Json) => e.node.kind)).toEqual(['ADMITTED']);
  });

  it('given a cursor, when new decisions arrive before the next page, then paging goes on with no decision missed or repeated', async () => {
    await someDecisions();
    const first = await decisionsPage({ first: 2 });
    expect(first.pageInfo.hasNextPage).toBe(true);
    await enqueue({ runId: 'd', jobName: 'j' }); // BLOCKED d
    await finish('c'); // ADMITTED d
    const seen = first.edges.map((e: Json) => e.node.position);
    let after = first.pageInfo.endCursor;
    for (;;) {
      const page = await decisionsPage({ first: 2, after });
      seen.push(...page.edges.map((e: Json) => e.node.position));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    const everything = (await allDecisions(gql)).map((d) => d.position);
    expect(seen).toEqual(everything);
    expect(everything).toHaveLength(7);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('given first above 1000 or a bad cursor, when decisions are asked for, then the request is rejected (HTTP 400)', async () => {
    for (const args of ['first: 1001', 'after: "abc"', 'after: "1.5"']) {
      const answer = await gql.answer(`{ decisions(${args}) { edges { cursor } } }`);
      expect(answer.status, args).toBe(400);
    }
  });
});

describe('Run.blockedBy, Run.waits and Run.decisions', () => {
  it('given a run held by several full limits at once, when it is read, then blockedBy names every one with its limit, count and a sentence', async () => {
    await maxRuns(2);
    await mutate('mutation { setPoolGranularity(granularity: RUN) { __typename } }');
    await mutate('mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }');
    await mutate(`mutation { setTagConcurrencyLimits(limits: [
      {key: "database", value: "redshift", limit: 1},
      {key: "team", limit: 2},
      {key: "dagster/backfill", applyLimitPerUniqueValue: true, limit: 1}
    ]) { __typename } }`);
    const tags = [
      { key: 'database', value: 'redshift' },
      { key: 'team', value: 'x' },
      { key: 'dagster/backfill', value: 'bf1' },
    ];
    await enqueue({ runId: 'first', jobName: 'j', tags, steps: onPool('db') });
    await enqueue({ runId: 'other', jobName: 'j', tags: tagged('team', 'y') });
    const held = await enqueue({ runId: 'held', jobName: 'j', tags, steps: onPool('db') });
    expect(held.status).toBe('QUEUED');

    const expected = [
      { kind: 'MAX_CONCURRENT_RUNS', key: null, value: null, pool: null, limit: 2, inUse: 2 },
      { kind: 'TAG_LIMIT', key: 'database', value: 'redshift', pool: null, limit: 1, inUse: 1 },
      { kind: 'TAG_LIMIT', key: 'team', value: null, pool: null, limit: 2, inUse: 2 },
      { kind: 'TAG_LIMIT', key: 'dagster/backfill', value: 'bf1', pool: null, limit: 1, inUse: 1 },
      { kind: 'POOL_LIMIT', key: null, value: null, pool: 'db', limit: 1, inUse: 1 },
    ];
    const byKind = (list: Json[]) =>
      list.map(({ message: _m, ...rest }) => rest).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
    const current = await run('held');
    expect(byKind(current.blockedBy)).toEqual(byKind(expected));
    for (const constraint of current.blockedBy) {
      expect(constraint.message).toContain(`${constraint.inUse} of ${constraint.limit}`);
      if (constraint.pool) expect(constraint.message).toContain(constraint.pool);
      if (constraint.key) expect(constraint.message).toContain(constraint.key);
    }
    // The decision that recorded the hold says the same, and so does the open wait.
    const blocked = current.decisions.at(-1);
    expect(blocked.kind).toBe('BLOCKED');
    expect(byKind(blocked.reasons)).toEqual(byKind(expected));
    for (const reason of blocked.reasons) expect(blocked.message).toContain(reason.message);
    expect(current.waits).toHaveLength(1);
    expect(current.waits[0].to).toBeNull();
    expect(byKind(current.waits[0].reasons)).toEqual(byKind(expected));
  });

  it('given a held run, when what holds it changes and then it is admitted, then each stretch is a wait closed by the next, the last closed at admission', async () => {
    await maxRuns(1);
    await enqueue({ runId: 'a', jobName: 'j', tags: tagged('team', 'x') });
    await enqueue({ runId: 'b', jobName: 'j', tags: tagged('team', 'x') });
    // Now a tag limit holds b as well: the set of holding limits changed.
    await mutate('mutation { setTagConcurrencyLimits(limits: [{key: "team", limit: 1}]) { __typename } }');
    // Then the run limit is lifted: only the tag limit holds b.
    await maxRuns(-1);
    await finish('a');

    const b = await run('b');
    expect(b.status).toBe('STARTING');
    expect(b.blockedBy).toEqual([]);
    expect(b.decisions.map((d: Json) => [d.kind, d.reasons.map((r: Json) => r.kind)])).toEqual([
      ['BLOCKED', ['MAX_CONCURRENT_RUNS']],
      ['BLOCKED', ['MAX_CONCURRENT_RUNS', 'TAG_LIMIT']],
      ['BLOCKED', ['TAG_LIMIT']],
      ['ADMITTED', []],
    ]);
    const at = b.decisions.map((d: Json) => d.at);
    expect(b.waits.map((w: Json) => [w.from, w.to])).toEqual([
      [at[0], at[1]],
      [at[1], at[2]],
      [at[2], at[3]],
    ]);
    expect(b.waits.map((w: Json) => w.reasons.map((r: Json) => r.kind))).toEqual([
      ['MAX_CONCURRENT_RUNS'],
      ['MAX_CONCURRENT_RUNS', 'TAG_LIMIT'],
      ['TAG_LIMIT'],
    ]);
    expect(b.admittedAt).toBe(at[3]);
    // The decisions of the run are the decisions query filtered by it.
    expect((await allDecisions(gql, 'b')).map((d) => d.position)).toEqual(b.decisions.map((d: Json) => d.position));
  });

  it('given a full limit holding many runs, when more runs queue behind it, then the held ones get no new decisions', async () => {
    await maxRuns(1);
    await enqueue({ runId: 'a', jobName: 'j' });
    for (const id of ['b', 'c', 'd']) await enqueue({ runId: id, jobName: 'j' });
    const before = await allDecisions(gql, 'b');
    await enqueue({ runId: 'e', jobName: 'j' });
    expect(await allDecisions(gql, 'b')).toEqual(before);
    expect(before.map((d) => d.kind)).toEqual(['BLOCKED']);
  });

  it('given a run that was never held, when it is read, then it has no waits and blockedBy is empty', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    const a = await run('a');
    expect(a.waits).toEqual([]);
    expect(a.blockedBy).toEqual([]);
  });
});
