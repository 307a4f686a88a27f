/**
 * Pool.claims over HTTP through `yoga.fetch`: which run and step hold a pool's slots and which
 * wait, with when they claimed, when they were granted and their priority (what Dagster's pool
 * pages and `dagster instance concurrency get` show), live and in a snapshot of the past.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import { Gql, type Json } from '../support/e2e-http.js';

// vitest resolves `graphql` to its ESM build for src/ while Pothos and Yoga load the CJS one;
// two realms break the schema. Give src/ the CJS build too (as the other e2e tests do).
vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const URL = 'http://sluice.test/graphql';
let store: EventStore;
let sluice: Sluice;
let gql: Gql;
let clock = 0;
const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  clock = T0;
  sluice = await Sluice.open({ store, clock: () => new Date(clock) });
  const yoga = createSluiceYoga(sluice);
  gql = new Gql(URL, (url, init) => yoga.fetch(url, init));
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const CLAIMS = 'claims { runId stepKey granted priority claimedAt grantedAt }';

async function mutation(query: string, variables: Json = {}): Promise<void> {
  const data = await gql.data(query, variables);
  const [answer] = Object.values(data) as Json[];
  expect(answer?.__typename, JSON.stringify(answer)).not.toMatch(/Error$/);
}
const claim = (runId: string, stepKey: string) =>
  mutation(
    'mutation($r: ID!, $s: String!) { claimStepSlot(runId: $r, stepKey: $s) { __typename ... on Error { message } } }',
    { r: runId, s: stepKey },
  );
const release = (runId: string, stepKey: string) =>
  mutation(
    'mutation($r: ID!, $s: String!) { releaseStepSlot(runId: $r, stepKey: $s) { __typename ... on Error { message } } }',
    { r: runId, s: stepKey },
  );

async function poolClaims(name: string): Promise<Json[]> {
  return (await gql.data(`query($n: String!) { pool(name: $n) { ${CLAIMS} } }`, { n: name })).pool.claims;
}

/** Three started runs whose steps use pool db (limit 1); the root-step hold off so all are admitted. */
async function contended(): Promise<void> {
  await mutation('mutation { changeConcurrencyConfig(change: {rootStepHold: {enabled: false}}) { __typename } }');
  await mutation('mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }');
  for (const [id, priority] of [
    ['a', 0],
    ['b', 0],
    ['c', 5],
  ] as const) {
    await mutation('mutation($i: EnqueueRunInput!) { enqueueRun(input: $i) { __typename ... on Error { message } } }', {
      i: { runId: id, jobName: 'etl', priority, steps: [{ key: `${id}1`, pool: 'db', priority: 1 }] },
    });
    await mutation('mutation($r: ID!) { markRunStarted(runId: $r) { __typename } }', { r: id });
  }
}

describe('Pool.claims', () => {
  it('given a held slot and two waiting steps, then the holder comes first, then the waiters in the order they will be served', async () => {
    await contended();
    clock = T0 + 1000;
    await claim('a', 'a1');
    clock = T0 + 2000;
    await claim('b', 'b1');
    clock = T0 + 3000;
    await claim('c', 'c1');
    expect(await poolClaims('db')).toEqual([
      { runId: 'a', stepKey: 'a1', granted: true, priority: 1, claimedAt: at(1), grantedAt: at(1) },
      // c's run priority 5 puts it ahead of b, which claimed first.
      { runId: 'c', stepKey: 'c1', granted: false, priority: 6, claimedAt: at(3), grantedAt: null },
      { runId: 'b', stepKey: 'b1', granted: false, priority: 1, claimedAt: at(2), grantedAt: null },
    ]);
  });

  it('when the holder releases, then the next waiter holds the slot from that moment and the released claim is gone', async () => {
    await contended();
    clock = T0 + 1000;
    await claim('a', 'a1');
    clock = T0 + 2000;
    await claim('b', 'b1');
    clock = T0 + 5000;
    await release('a', 'a1');
    expect(await poolClaims('db')).toEqual([
      { runId: 'b', stepKey: 'b1', granted: true, priority: 1, claimedAt: at(2), grantedAt: at(5) },
    ]);
    // A repeated claim of a granted step changes none of its times.
    clock = T0 + 9000;
    await claim('b', 'b1');
    expect((await poolClaims('db'))[0]).toMatchObject({ claimedAt: at(2), grantedAt: at(5) });
  });

  it('a snapshot of the past answers with the claims as they stood then', async () => {
    await contended();
    clock = T0 + 1000;
    await claim('a', 'a1');
    clock = T0 + 2000;
    await claim('b', 'b1');
    const before = (await gql.data('{ snapshot { position } }')).snapshot.position as string;
    clock = T0 + 5000;
    await release('a', 'a1');
    const past = await gql.data(`query($p: String!) { snapshot(position: $p) { pools { name ${CLAIMS} } } }`, {
      p: before,
    });
    expect(
      past.snapshot.pools.find((p: Json) => p.name === 'db').claims.map((c: Json) => [c.stepKey, c.granted]),
    ).toEqual([
      ['a1', true],
      ['b1', false],
    ]);
  });

  it('at RUN granularity, where runs hold pools, the list is empty', async () => {
    await contended();
    await claim('a', 'a1');
    await mutation('mutation { setPoolGranularity(granularity: RUN) { __typename } }');
    expect(await poolClaims('db')).toEqual([]);
  });

  it('Pool.claims is priced like the queue by the cost limits', async () => {
    const { FIELD_COSTS } = await import('../../src/graphql/limits.js');
    expect(FIELD_COSTS['Pool.claims']?.({})).toBe(10);
  });
});
