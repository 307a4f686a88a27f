/**
 * PostgreSQL primary failover, for real: a primary and a synchronous standby, two Sluice servers
 * given libpq's host list under load, the primary's postmaster killed with -9, the standby
 * promoted. While there is no primary every command answers STORE_UNAVAILABLE (never a wrong
 * answer); after the promotion the servers find the new primary and write again; no
 * acknowledged command is lost (the replication is synchronous); `sluice verify` finds nothing
 * wrong in the log the new primary holds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEventStore } from '../../src/eventstore/open.js';
import { verifyLog } from '../../src/verify/verify.js';
import type { Json } from '../support/e2e-http.js';
import { postgresUnavailableBecause } from '../support/postgres-cluster.js';
import { type ReplicatedPostgres, startReplicatedPostgres } from '../support/postgres-replication.js';
import { type ServerProcess, startServerProcess, stopAll } from '../support/server-process.js';

const unavailable =
  postgresUnavailableBecause() ?? (process.env.TEST_PG_URL ? 'TEST_PG_URL: failover needs throwaway clusters' : null);
if (unavailable && process.env.CI === 'true') throw new Error(`the failover test cannot run: ${unavailable}`);

let cluster: ReplicatedPostgres;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  if (unavailable) return;
  cluster = await startReplicatedPostgres();
}, 120_000);

afterAll(async () => {
  await stopAll(servers);
  cluster?.destroy();
});

const ENQUEUE = `mutation($id: ID!) { enqueueRun(input: {runId: $id, jobName: "j"}) {
  __typename ... on RunPayload { run { id } } ... on Error { message } } }`;

describe.skipIf(unavailable !== null)('PostgreSQL primary failover', () => {
  it('given servers on a host list under load, when the primary dies and the standby is promoted, then commands are refused meanwhile, writes resume, and nothing acknowledged is lost', async () => {
    const url = cluster.hostListUrl('failover');
    for (const name of ['A', 'B'])
      servers.push(await startServerProcess({ name, eventStoreUrl: url, readyTimeoutMs: 60_000 }));
    const acknowledged: string[] = [];
    const refusals = new Map<string, number>();
    let phase: 'before' | 'down' | 'promoted' = 'before';
    let firstWriteAfterPromotion: number | null = null;
    let promotedAt = 0;
    let stop = false;
    let counter = 0;
    const client = async (server: ServerProcess) => {
      while (!stop) {
        const id = `${server.name}-${counter++}`;
        const answer: {
          body: { data?: Json; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
        } = await server.answer(ENQUEUE, { id }).catch((error: Error) => ({
          body: { errors: [{ message: error.message, extensions: { code: 'HTTP' } }] },
        }));
        const error = answer.body.errors?.[0];
        if (!error && answer.body.data?.enqueueRun.__typename === 'RunPayload') {
          acknowledged.push(id);
          if (phase === 'promoted' && firstWriteAfterPromotion === null)
            firstWriteAfterPromotion = Date.now() - promotedAt;
        } else {
          const code = String(error?.extensions?.code ?? answer.body.data?.enqueueRun.__typename);
          refusals.set(code, (refusals.get(code) ?? 0) + 1);
          await new Promise((done) => setTimeout(done, 50));
        }
      }
    };
    const load = servers.flatMap((s) => [client(s), client(s)]);
    await new Promise((done) => setTimeout(done, 2_000));
    const beforeKill = acknowledged.length;
    expect(beforeKill).toBeGreaterThan(0);
    cluster.killPrimary();
    phase = 'down';
    await new Promise((done) => setTimeout(done, 3_000));
    const duringOutage = acknowledged.length;
    cluster.promoteStandby();
    promotedAt = Date.now();
    phase = 'promoted';
    const deadline = Date.now() + 60_000;
    while (firstWriteAfterPromotion === null && Date.now() < deadline)
      await new Promise((done) => setTimeout(done, 100));
    await new Promise((done) => setTimeout(done, 1_000));
    stop = true;
    await Promise.all(load);
    console.log(
      `failover: ${beforeKill} acknowledged before the kill, ${duringOutage - beforeKill} in the outage (in flight), first write ${firstWriteAfterPromotion} ms after the promotion; refusals ${JSON.stringify(Object.fromEntries(refusals))}`,
    );
    expect(firstWriteAfterPromotion).not.toBeNull();
    // Every refusal is the store being unavailable: no other answer while there was no primary.
    expect([...refusals.keys()].filter((code) => code !== 'STORE_UNAVAILABLE')).toEqual([]);

    await stopAll(servers.splice(0));
    const store = await openEventStore(`postgres://postgres@127.0.0.1:${cluster.standbyPort}/sluice?schema=failover`);
    try {
      const log = await store.readAll();
      const recorded = new Set(
        log.filter((e) => e.type === 'RunEnqueued').map((e) => (e.data as { runId: string }).runId),
      );
      expect(acknowledged.filter((id) => !recorded.has(id))).toEqual([]);
      expect((await verifyLog(store, { gaplessPositions: false })).breach).toBeNull();
    } finally {
      await store.close();
    }
  }, 180_000);

  // Goes on from the cluster the test above left: its primary killed, its standby promoted.
  it('given the old primary started again beside the promoted standby (split brain), then servers write to the promoted one only, and one that wrote there refuses the old primary once the new one dies', async () => {
    const url = cluster.hostListUrl('failover');
    const first = await startServerProcess({ name: 'C', eventStoreUrl: url, readyTimeoutMs: 60_000 });
    servers.push(first);
    expect((await first.field(ENQUEUE, { id: 'on-new-primary' })).__typename).toBe('RunPayload');

    cluster.restartPrimary();
    // A server started now finds two primaries; the old one is listed first, as libpq would try it.
    const second = await startServerProcess({ name: 'D', eventStoreUrl: url, readyTimeoutMs: 60_000 });
    servers.push(second);
    expect((await second.data('{ run(id: "on-new-primary") { id } }')).run).toEqual({ id: 'on-new-primary' });
    expect((await second.field(ENQUEUE, { id: 'beside-old-primary' })).__typename).toBe('RunPayload');
    expect(second.stdout + second.stderr).toMatch(/split brain: 127\.0\.0\.1:\d+ \(timeline 1\) also accepts writes/);

    cluster.killStandby();
    // The promoted primary is gone; only the old one accepts writes, on an older timeline than
    // the one these servers wrote on: every command is refused, never written there.
    const answers: string[] = [];
    for (let i = 0; i < 20 && !answers.some((a) => a.includes('split brain')); i++) {
      const answer = await first.answer(ENQUEUE, { id: `after-new-primary-died-${i}` });
      const error = answer.body.errors?.[0];
      expect(answer.body.data?.enqueueRun?.__typename).not.toBe('RunPayload');
      answers.push(`${error?.extensions?.code} ${error?.message}`);
      await new Promise((done) => setTimeout(done, 200));
    }
    expect(answers.every((a) => a.startsWith('STORE_UNAVAILABLE'))).toBe(true);
    expect(answers.at(-1)).toMatch(/split brain: .*timeline 1.*already wrote on timeline 2/);
    await stopAll(servers.splice(0));

    const old = await openEventStore(`postgres://postgres@127.0.0.1:${cluster.primaryPort}/sluice?schema=failover`);
    try {
      const ids = (await old.readAll())
        .filter((e) => e.type === 'RunEnqueued')
        .map((e) => (e.data as { runId: string }).runId);
      expect(
        ids.filter((id) => id === 'on-new-primary' || id === 'beside-old-primary' || id.startsWith('after-')),
      ).toEqual([]);
    } finally {
      await old.close();
    }
  }, 180_000);
});
