/**
 * Many live subscribers on one server: more than the fan-out hands decisions to in one turn of
 * the event loop, over SSE and graphql-ws, with the same document, with other documents and with
 * filters, while several clients send commands at once. Each must get every decision it asked
 * for exactly once, in log order; and a client that stops reading its stream must hold back
 * neither the commands nor the other subscribers.
 */
import { connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FAN_OUT_SLICE } from '../../src/app/decision-streams.js';
import { DEFAULT_SECURITY } from '../../src/auth/settings.js';
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

beforeEach(async () => {
  server = await startServer(
    {
      ...DEFAULT_SETTINGS,
      port: 0,
      host: '127.0.0.1',
      eventStoreUrl: 'sqlite::memory:',
      security: {
        ...DEFAULT_SECURITY,
        connections: { ...DEFAULT_SECURITY.connections, maxSubscriptionsPerToken: 1_000 },
      },
    },
    () => {},
  );
  gql = new Gql(server.url);
});

afterEach(async () => {
  await Promise.all(collectors.splice(0).map((c) => c.close().catch(() => undefined)));
  await server.close();
});

/** Three documents: what a decision looks like differs, so each is executed on its own. */
const DOCUMENTS = [
  'subscription($pool: String) { dequeueDecisions(pool: $pool) { position kind runId } }',
  'subscription($pool: String) { dequeueDecisions(pool: $pool) { position runId message reasons { kind limit inUse } } }',
  'subscription($pool: String) { d: dequeueDecisions(pool: $pool) { position at kind runId pool } }',
];

interface Subscriber {
  collector: Collector;
  pool: string | null;
  transport: 'SSE' | 'graphql-ws';
}

const positionsOf = (c: Collector): string[] => c.items.map((item) => (item.dequeueDecisions ?? item.d).position);

async function enqueue(runId: string, pool: string | null): Promise<void> {
  const data = await gql.data(
    'mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename ... on Error { message } } }',
    { input: { runId, jobName: 'job', steps: pool ? [{ key: 'step', pool }] : [] } },
  );
  expect(data.enqueueRun.__typename).toBe('RunPayload');
}

async function finish(runId: string): Promise<void> {
  const data = await gql.data(
    'mutation($id: ID!) { markRunFinished(runId: $id, status: SUCCESS) { __typename ... on Error { message } } }',
    { id: runId },
  );
  expect(data.markRunFinished.__typename).toBe('RunPayload');
}

/** `clients` writers at once: each enqueues its runs (every third in pool db) and finishes some, freeing room. */
async function writeConcurrently(clients: number, runsEach: number): Promise<void> {
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let i = 0; i < runsEach; i++) {
        await enqueue(`c${client}-r${i}`, i % 3 === 0 ? 'db' : null);
        if (i >= 2) await finish(`c${client}-r${i - 2}`).catch(() => undefined);
      }
    }),
  );
}

describe('many subscribers', () => {
  it('given more subscribers than one turn serves, with the same and different documents, filters and transports, when clients send commands at once, then each gets every decision it asked for once, in log order', async () => {
    const gqlMax = await gql.data('mutation { setMaxConcurrentRuns(limit: 3) { __typename } }');
    expect(gqlMax.setMaxConcurrentRuns.__typename).toBe('ConfigPayload');
    const subscribers: Subscriber[] = [];
    const sseCount = FAN_OUT_SLICE * 2 + 10;
    for (let i = 0; i < sseCount; i++) {
      const pool = i % 5 === 4 ? 'db' : null;
      const collector = new SseCollector(server.url, DOCUMENTS[i % DOCUMENTS.length] as string, { pool });
      collectors.push(collector);
      subscribers.push({ collector, pool, transport: 'SSE' });
    }
    for (let i = 0; i < 6; i++) {
      const pool = i % 2 === 1 ? 'db' : null;
      const collector = new WsCollector(server.url, DOCUMENTS[i % DOCUMENTS.length] as string, { pool });
      collectors.push(collector);
      subscribers.push({ collector, pool, transport: 'graphql-ws' });
    }
    await Promise.all(subscribers.map(({ collector }) => (collector as SseCollector).opened));
    // graphql-ws subscribers are registered once the server has run their subscribe resolver.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const start = BigInt((await gql.data('{ snapshot { position } }')).snapshot.position);

    await writeConcurrently(4, 12);

    const decisions = (await allDecisions(gql)).filter((d: Json) => BigInt(d.position) > start);
    // A pool's subscribers get the decisions about runs in it, and those whose reasons name it.
    const concerns = (d: Json, pool: string) =>
      poolOfRun(d.runId) === pool || d.pool === pool || d.reasons.some((r: Json) => r.pool === pool);
    const expectedFor = (pool: string | null) =>
      decisions.filter((d: Json) => pool === null || concerns(d, pool)).map((d: Json) => d.position as string);
    const everything = expectedFor(null);
    expect(everything.length).toBeGreaterThan(48);
    for (const [i, { collector, pool, transport }] of subscribers.entries()) {
      const expected = expectedFor(pool);
      await waitFor(
        () => {
          if (collector.errors.length > 0) throw new Error(describeErrors(collector.errors));
          return collector.items.length >= expected.length;
        },
        `subscriber ${i} (${transport}, pool ${pool}) to get ${expected.length} decisions (got ${collector.items.length})`,
        20_000,
      );
      // A moment for anything extra (a repeat) to arrive.
      if (i === subscribers.length - 1) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    for (const [i, { collector, pool, transport }] of subscribers.entries()) {
      expect(positionsOf(collector), `subscriber ${i} (${transport}, pool ${pool})`).toEqual(expectedFor(pool));
    }
  });

  it('given a subscriber whose client stops reading, when many commands follow, then every command is answered and the other subscribers get every decision', async () => {
    // A raw client that sends the request, then never reads what comes back.
    const { port } = new URL(server.url);
    const body = JSON.stringify({
      query:
        'subscription { dequeueDecisions { position kind runId message reasons { kind key value pool limit inUse message } } }',
    });
    const stalled = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => stalled.once('connect', () => resolve()));
    stalled.pause();
    stalled.write(
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    try {
      const readers = Array.from({ length: 3 }, () => {
        const collector = new SseCollector(server.url, DOCUMENTS[0] as string, { pool: null });
        collectors.push(collector);
        return collector;
      });
      await Promise.all(readers.map((r) => r.opened));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const start = BigInt((await gql.data('{ snapshot { position } }')).snapshot.position);
      await gql.data('mutation { setMaxConcurrentRuns(limit: -1) { __typename } }');
      await writeConcurrently(4, 60);
      const expected = (await allDecisions(gql))
        .filter((d: Json) => BigInt(d.position) > start)
        .map((d: Json) => d.position as string);
      expect(expected.length).toBeGreaterThanOrEqual(240);
      for (const reader of readers) {
        await waitFor(() => reader.items.length >= expected.length, `${expected.length} decisions`, 20_000);
        expect(positionsOf(reader)).toEqual(expected);
      }
    } finally {
      stalled.destroy();
    }
  });
});

/** Which pool a run of writeConcurrently uses: every third run of each client is in db. */
function poolOfRun(runId: string): string | null {
  const i = Number(runId.split('-r')[1]);
  return i % 3 === 0 ? 'db' : null;
}
