/**
 * dequeueDecisions on a real port, over SSE and over graphql-ws (same port, /graphql):
 * live delivery, the runId and pool filters, `after` replaying then going live with nothing
 * missed or repeated at the seam (also while commands keep coming), and a bad `after`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import {
  allDecisions,
  type Collector,
  describeErrors,
  Gql,
  type Json,
  SseCollector,
  WsCollector,
  waitFor,
} from '../support/e2e-http.js';

let server: RunningServer;
let gql: Gql;
const collectors: Collector[] = [];
/** Writers still running when a test ends are waited for before the server closes. */
const writers: Promise<void>[] = [];

beforeEach(async () => {
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, host: '127.0.0.1', eventStoreUrl: 'sqlite::memory:' },
    () => {},
  );
  gql = new Gql(server.url);
});

afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.catch(() => undefined)));
  await Promise.all(collectors.splice(0).map((c) => c.close().catch(() => undefined)));
  await server.close();
});

const SUBSCRIPTION = `subscription($runId: ID, $pool: String, $after: String) {
  dequeueDecisions(runId: $runId, pool: $pool, after: $after) {
    position at kind runId stepKey pool message reasons { kind key value pool limit inUse message }
  }
}`;

type Transport = 'SSE' | 'graphql-ws';

function subscribe(
  transport: Transport,
  args: { runId?: string; pool?: string; after?: string } = {},
): Collector & { opened?: Promise<void> } {
  const variables = { runId: args.runId ?? null, pool: args.pool ?? null, after: args.after ?? null };
  const collector =
    transport === 'SSE'
      ? new SseCollector(server.url, SUBSCRIPTION, variables)
      : new WsCollector(server.url, SUBSCRIPTION, variables);
  collectors.push(collector);
  return collector;
}

/** The decisions delivered so far (the `dequeueDecisions` field of each payload). */
const received = (c: Collector): Json[] => c.items.map((item) => item.dequeueDecisions);

/** Waits until `count` decisions arrived; fails at once when the stream errs or ends. */
async function waitForDecisions(c: Collector, count: number, timeoutMs = 5_000): Promise<Json[]> {
  await waitFor(
    () => {
      if (c.errors.length > 0) throw new Error(`the subscription failed: ${describeErrors(c.errors)}`);
      if (c.done && c.items.length < count) throw new Error('the subscription ended early');
      return c.items.length >= count;
    },
    `${count} decisions (got ${c.items.length})`,
    timeoutMs,
  ).catch((error: Error) => {
    // waitFor wraps the thrown error; make the stream's own failure the message.
    throw new Error(`${error.message}; received so far: ${JSON.stringify(received(c).map((d) => d.position))}`);
  });
  return received(c);
}

/** Lets a subscription get going: SSE once its headers came, graphql-ws once acknowledged. */
async function established(c: Collector): Promise<void> {
  if (c instanceof SseCollector) {
    await c.opened;
    return;
  }
  if (c instanceof WsCollector) {
    // The subscription is registered once the server answered something, or after a moment.
    await new Promise<void>((resolve) => {
      const off = c.client.on('connected', () => {
        off();
        resolve();
      });
      setTimeout(resolve, 1_000).unref();
    });
    // give the server a moment to run the subscribe resolver after connection_ack
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function mutate(query: string, variables?: Record<string, unknown>): Promise<Json> {
  const data = await gql.data(query, variables);
  for (const value of Object.values(data) as Json[]) {
    if (value?.__typename?.endsWith('Error')) throw new Error(`${value.__typename}: ${value.message}`);
  }
  return data;
}

async function enqueue(runId: string, pool?: string): Promise<void> {
  await mutate(
    'mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename ... on Error { message } } }',
    { input: { runId, jobName: 'job', steps: pool ? [{ key: 'step', pool }] : [] } },
  );
}

async function finish(runId: string): Promise<void> {
  await mutate(
    'mutation($id: ID!) { markRunFinished(runId: $id, status: SUCCESS) { __typename ... on Error { message } } }',
    { id: runId },
  );
}

async function maxRuns(limit: number): Promise<void> {
  await mutate(`mutation { setMaxConcurrentRuns(limit: ${limit}) { __typename } }`);
}

const positions = (list: Json[]) => list.map((d) => d.position);

function expectStrictlyIncreasing(list: Json[]): void {
  for (let i = 1; i < list.length; i++) {
    expect(BigInt(list[i].position) > BigInt(list[i - 1].position), `position ${i}`).toBe(true);
  }
}

/**
 * A writer that keeps commands coming: run i is enqueued (every third one on pool db), and
 * from the fourth on, in the same request, the run enqueued three before is finished, which
 * admits the next. With maxConcurrentRuns 3 each run gets BLOCKED then ADMITTED.
 */
function startWriter(count: number): { done: Promise<void>; finished: () => boolean } {
  let over = false;
  const done = (async () => {
    for (let i = 0; i < count; i++) {
      const input = { runId: `r${i}`, jobName: 'job', steps: i % 3 === 0 ? [{ key: 'step', pool: 'db' }] : [] };
      if (i < 3) {
        await mutate('mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename } }', { input });
      } else {
        await mutate(
          `mutation($input: EnqueueRunInput!, $old: ID!) {
            enqueueRun(input: $input) { __typename ... on Error { message } }
            markRunFinished(runId: $old, status: SUCCESS) { __typename ... on Error { message } } }`,
          { input, old: `r${i - 3}` },
        );
      }
    }
  })().finally(() => {
    over = true;
  });
  writers.push(done);
  return { done, finished: () => over };
}

const WRITES = 60;

// ---------------------------------------------------------------------------------------------

describe.each<Transport>(['SSE', 'graphql-ws'])('dequeueDecisions over %s', (transport) => {
  it('given a subscriber, when runs are admitted and held, then each decision arrives as it is made, with its reasons', async () => {
    await maxRuns(1);
    const c = subscribe(transport);
    await established(c);
    await enqueue('a');
    await enqueue('b');
    await finish('a');
    const got = await waitForDecisions(c, 3);
    expect(got.map((d) => [d.kind, d.runId])).toEqual([
      ['ADMITTED', 'a'],
      ['BLOCKED', 'b'],
      ['ADMITTED', 'b'],
    ]);
    expect(got[1].reasons).toEqual([
      expect.objectContaining({ kind: 'MAX_CONCURRENT_RUNS', limit: 1, inUse: 1, message: expect.any(String) }),
    ]);
    expect(got).toEqual(await allDecisions(gql));
  });

  it('given filters on runId and on pool, when decisions are made about many runs, then each subscriber gets only its own', async () => {
    await maxRuns(1);
    const byRun = subscribe(transport, { runId: 'b' });
    const byPool = subscribe(transport, { pool: 'db' });
    await Promise.all([established(byRun), established(byPool)]);
    await enqueue('a', 'db');
    await enqueue('b');
    await enqueue('c', 'db');
    await finish('a');
    await finish('b');
    await enqueue('d');
    const all = await allDecisions(gql);
    const forB = all.filter((d) => d.runId === 'b');
    const forDb = all.filter((d) => d.runId === 'a' || d.runId === 'c');
    expect(await waitForDecisions(byRun, forB.length)).toEqual(forB);
    expect(await waitForDecisions(byPool, forDb.length)).toEqual(forDb);
    // Nothing else trickles in afterwards.
    await enqueue('e');
    await finish('c');
    const allNow = await allDecisions(gql);
    const forDbNow = allNow.filter((d) => ['a', 'c'].includes(d.runId));
    expect(await waitForDecisions(byPool, forDbNow.length)).toEqual(forDbNow);
    expect(received(byRun)).toEqual(allNow.filter((d) => d.runId === 'b'));
  });

  it('given decisions in the log, when subscribing without after, then only decisions made from then on arrive', async () => {
    await maxRuns(1);
    await enqueue('a');
    await enqueue('b');
    const before = await allDecisions(gql);
    const c = subscribe(transport, {});
    // Let the subscription register before the next decision is made.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await finish('a');
    const all = await allDecisions(gql);
    expect(await waitForDecisions(c, all.length - before.length)).toEqual(all.slice(before.length));
  });

  it('given decisions in the log, when subscribing with after, then every later one is replayed, then new ones follow, none twice', async () => {
    await maxRuns(1);
    await enqueue('a');
    await enqueue('b');
    await enqueue('c');
    const before = await allDecisions(gql);
    const after = before[0].position;
    const c = subscribe(transport, { after });
    expect(await waitForDecisions(c, 2)).toEqual(before.slice(1));
    await finish('a');
    const all = await allDecisions(gql);
    expect(await waitForDecisions(c, all.length - 1)).toEqual(all.slice(1));
    expectStrictlyIncreasing(received(c));
  });

  it('given after -1 (the position of an empty log), when subscribing, then every decision from the start arrives, none twice', async () => {
    // A client reads the log's position (snapshot answers -1 while it is empty), then subscribes:
    // decisions made in between must not be lost.
    await maxRuns(1);
    await enqueue('a');
    await enqueue('b');
    const c = subscribe(transport, { after: '-1' });
    const before = await allDecisions(gql);
    expect(await waitForDecisions(c, before.length)).toEqual(before);
    await finish('a');
    const all = await allDecisions(gql);
    expect(await waitForDecisions(c, all.length)).toEqual(all);
    expectStrictlyIncreasing(received(c));
  });

  it.each([
    ['everything', {}],
    ['runId r9', { runId: 'r9' }],
    ['pool db', { pool: 'db' }],
  ])(
    'given commands arriving all the time, when subscribing with after an earlier position (%s), then replay and live meet with no gap and no repeat',
    async (_what, filter: {
      runId?: string;
      pool?: string;
    }) => {
      await maxRuns(3);
      const writer = startWriter(WRITES);
      // Let a good part of the log build up, then subscribe from an earlier position.
      await waitFor(async () => (await allDecisions(gql)).length >= 20, 'decisions to build up');
      const after = (await allDecisions(gql))[7].position;
      const c = subscribe(transport, { ...filter, after });
      await waitFor(() => {
        if (c.errors.length > 0) throw new Error(describeErrors(c.errors));
        return c.items.length > 0 || writer.finished();
      }, 'the first decision');
      const liveWhileWriting = !writer.finished();
      await writer.done;

      const pooled = new Set(
        Array.from({ length: WRITES }, (_, i) => i).flatMap((i) => (i % 3 === 0 ? [`r${i}`] : [])),
      );
      const expected = (await allDecisions(gql)).filter(
        (d) =>
          BigInt(d.position) > BigInt(after) &&
          (filter.runId === undefined || d.runId === filter.runId) &&
          (filter.pool === undefined || pooled.has(d.runId)),
      );
      expect(expected.length).toBeGreaterThan(0);
      const got = await waitForDecisions(c, expected.length, 10_000);
      // Give a repeat at the seam or a stray decision the chance to show up.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(positions(received(c))).toEqual(positions(expected));
      expect(got).toEqual(expected);
      expectStrictlyIncreasing(received(c));
      expect(new Set(positions(received(c))).size).toBe(received(c).length);
      // The subscription really did cross from replay to live while commands were coming in.
      expect(liveWhileWriting).toBe(true);
    },
  );

  it('given an after that is not a position, when subscribing, then an error answers and the server keeps serving', async () => {
    const bad = subscribe(transport, { after: 'yesterday' });
    await waitFor(() => bad.errors.length > 0 || bad.done, 'the subscription to be refused');
    expect(describeErrors(bad.errors)).toMatch(/after/);
    expect(received(bad)).toEqual([]);
    if (bad instanceof SseCollector) expect(bad.status).toBe(400);

    // The server is fine: queries answer and a good subscription works.
    const good = subscribe(transport);
    await established(good);
    await enqueue('a');
    expect((await waitForDecisions(good, 1))[0]).toMatchObject({ kind: 'ADMITTED', runId: 'a' });
    expect((await gql.answer('{ queue { id } }')).status).toBe(200);
  });

  it('given a subscriber, when it goes away, then the server goes on serving the others', async () => {
    const leaving = subscribe(transport);
    const staying = subscribe(transport);
    await Promise.all([established(leaving), established(staying)]);
    await enqueue('a');
    await waitForDecisions(leaving, 1);
    await leaving.close();
    await enqueue('b');
    expect(positions(await waitForDecisions(staying, 2))).toEqual(positions(await allDecisions(gql)));
  });
});

describe('graphql-ws', () => {
  it('given a graphql-ws client on /graphql, when it runs a plain query, then it gets data (not a 4500 close)', async () => {
    const { createClient } = await import('graphql-ws');
    const { default: WebSocket } = await import('ws');
    const client = createClient({ url: server.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    try {
      const results: unknown[] = [];
      let failure: unknown = null;
      try {
        for await (const result of client.iterate({ query: '{ concurrencyConfig { maxConcurrentRuns } }' })) {
          results.push(result);
        }
      } catch (error) {
        failure = error;
      }
      expect(failure === null ? '' : describeErrors([failure])).toBe('');
      expect(results).toEqual([{ data: { concurrencyConfig: { maxConcurrentRuns: 10 } } }]);
    } finally {
      await client.dispose();
    }
  });
});
