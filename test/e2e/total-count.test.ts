/**
 * `totalCount` on runs, decisions and limitChanges: how many match the filters, whatever the
 * page. After a random history (seeded; the seed is printed and SLUICE_TOTALS_SEED replays it),
 * every filter's totalCount is the number of nodes found by paging through all of it, on every
 * page, and a history rebuilt from the log by another server gives the same totals.
 */
import { parse } from 'graphql';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { fieldCost } from '../../src/graphql/limits.js';
import { schema } from '../../src/graphql/schema.js';
import { createSluiceYoga } from '../../src/server.js';
import { Gql, type Json } from '../support/e2e-http.js';
import { prng } from '../support/prng.js';

const SEED = Number(process.env.SLUICE_TOTALS_SEED ?? Date.now() % 1_000_000);
const STATUSES = ['QUEUED', 'STARTING', 'STARTED', 'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED'];
const POOLS = ['db', 'etl'];

let store: EventStore;
let sluice: Sluice;
let gql: Gql;

const gqlOf = (s: Sluice) => {
  const yoga = createSluiceYoga(s);
  return new Gql('http://sluice.test/graphql', (url, init) => yoga.fetch(url, init));
};

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  sluice = await Sluice.open({ store });
  gql = gqlOf(sluice);
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

async function mutate(query: string): Promise<void> {
  await gql.data(`mutation { m: ${query} { __typename } }`);
}

/** A random history: runs on pools with tags, limit edits, starts, claims, finishes, terminations. */
async function randomHistory(seed: number): Promise<void> {
  const random = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  await mutate('setMaxConcurrentRuns(limit: 3)');
  await mutate('setPoolLimit(pool: "db", limit: 1)');
  const ids: string[] = [];
  for (let i = 0; i < 60; i++) {
    const roll = random();
    if (roll < 0.4 || ids.length === 0) {
      const id = `r${ids.length}`;
      ids.push(id);
      const pool = pick([...POOLS, null]);
      const steps = pool ? `, steps: [{ key: "s", pool: "${pool}" }, { key: "free" }]` : '';
      await mutate(
        `enqueueRun(input: { runId: "${id}", jobName: "j", tags: [{ key: "team", value: "${pick(['a', 'b'])}" }]${steps} })`,
      );
    } else if (roll < 0.55) {
      await mutate(`markRunStarted(runId: "${pick(ids)}")`);
    } else if (roll < 0.65) {
      await mutate(`claimStepSlot(runId: "${pick(ids)}", stepKey: "s")`);
    } else if (roll < 0.8) {
      await mutate(`markRunFinished(runId: "${pick(ids)}", status: ${pick(['SUCCESS', 'FAILURE'])})`);
    } else if (roll < 0.85) {
      await mutate(`terminateRun(runId: "${pick(ids)}")`);
    } else if (roll < 0.92) {
      await mutate(`setMaxConcurrentRuns(limit: ${Math.floor(random() * 5)})`);
    } else if (roll < 0.96) {
      await mutate(`setPoolLimit(pool: "${pick(POOLS)}", limit: ${1 + Math.floor(random() * 2)})`);
    } else {
      await mutate(
        `setTagConcurrencyLimits(limits: [{ key: "team", applyLimitPerUniqueValue: true, limit: ${1 + Math.floor(random() * 2)} }])`,
      );
    }
  }
}

/** Pages through a connection, checking totalCount on every page; returns the node count and the total. */
async function pageThrough(
  client: Gql,
  field: string,
  args: string,
  first: number,
): Promise<{ nodes: number; total: number }> {
  let after: string | null = null;
  let nodes = 0;
  const totals = new Set<number>();
  for (let page = 0; page < 1000; page++) {
    const cursor: string = after === null ? '' : `, after: "${after}"`;
    const data: Json = await client.data(
      `{ c: ${field}(first: ${first}${cursor}${args}) { totalCount edges { cursor } pageInfo { hasNextPage endCursor } } }`,
    );
    totals.add(data.c.totalCount);
    nodes += data.c.edges.length;
    if (!data.c.pageInfo.hasNextPage) break;
    after = data.c.pageInfo.endCursor;
  }
  expect(totals.size, `${field}(${args}): one totalCount on every page`).toBe(1);
  return { nodes, total: [...totals][0] as number };
}

const FILTERS: Array<[string, string]> = [
  ['runs', ''],
  ...STATUSES.map((s): [string, string] => ['runs', `, statuses: [${s}]`]),
  ['runs', ', statuses: [SUCCESS, FAILURE, CANCELED, SUCCESS]'],
  ['runs', ', statuses: [STARTING, STARTED, CANCELING]'],
  ['decisions', ''],
  ...POOLS.map((p): [string, string] => ['decisions', `, pool: "${p}"`]),
  ['decisions', ', pool: "nowhere"'],
  ['limitChanges', ''],
  ...POOLS.map((p): [string, string] => ['limitChanges', `, pool: "${p}"`]),
];

async function totals(client: Gql, runIds: string[]): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const filters = [
    ...FILTERS,
    ...runIds.flatMap((id) => [
      ['decisions', `, runId: "${id}"`] as [string, string],
      ['decisions', `, runId: "${id}", pool: "db"`] as [string, string],
    ]),
  ];
  for (const [field, args] of filters) {
    const paged = await pageThrough(client, field, args, 3);
    expect(paged.total, `${field}(${args}) totalCount against the nodes paged through`).toBe(paged.nodes);
    found.set(`${field}${args}`, paged.total);
  }
  return found;
}

describe('totalCount', () => {
  it('given a random history, then every filter’s totalCount is the number of nodes its pages hold, and a history rebuilt from the log agrees', async () => {
    console.log(`[total-count] seed ${SEED} (SLUICE_TOTALS_SEED=${SEED} replays it)`);
    await randomHistory(SEED);
    const runIds = (await gql.data('{ runs(first: 1000) { edges { node { id } } } }')).runs.edges
      .map((e: Json) => e.node.id)
      .slice(0, 8);
    const live = await totals(gql, runIds);
    expect(live.get('runs')).toBeGreaterThan(0);
    expect(live.get('limitChanges')).toBeGreaterThan(2);

    // Another server on the same log builds its history from scratch.
    const rebuilt = await Sluice.open({ store });
    try {
      expect(await totals(gqlOf(rebuilt), runIds)).toEqual(live);
    } finally {
      await rebuilt.close();
    }
  }, 60_000);

  it('given totalCount selected, then the field cost counts a decision total as a run’s decisions and the others as nothing', () => {
    const cost = (query: string) => fieldCost(schema, parse(query), undefined, {});
    expect(cost('{ runs(first: 10) { totalCount } }')).toBe(cost('{ runs(first: 10) { pageInfo { hasNextPage } } }'));
    expect(cost('{ decisions(first: 10, runId: "a") { totalCount } }')).toBe(
      cost('{ decisions(first: 10, runId: "a") { pageInfo { hasNextPage } } }') + 1,
    );
    expect(cost('{ limitChanges { totalCount } }')).toBe(0);
  });

  it('given an empty log, then every totalCount is 0', async () => {
    const data = await gql.data(
      '{ runs(first: 1) { totalCount } decisions(first: 1, pool: "db") { totalCount } limitChanges { totalCount } }',
    );
    expect(data).toEqual({ runs: { totalCount: 0 }, decisions: { totalCount: 0 }, limitChanges: { totalCount: 0 } });
  });
});
