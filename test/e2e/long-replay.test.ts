/**
 * A long replay: `dequeueDecisions(after:)` over a log of 150,000 decisions delivers every one,
 * in order, read from the history page by page as the client consumes them, then goes on live
 * with nothing missed or repeated. Over SSE and over graphql-ws.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { CURRENT_SCHEMA_VERSION } from '../../src/domain/events.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { NewEvent } from '../../src/eventstore/store.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import {
  type Collector,
  describeErrors,
  enqueued,
  Gql,
  SseCollector,
  tempDir,
  WsCollector,
  waitFor,
} from '../support/e2e-http.js';

const RUNS = 75_000; // a BLOCKED and an ADMITTED decision each
const DECISIONS = 2 * RUNS;
const at = '2026-11-01T00:00:00.000Z';
const maxRunsHold = {
  kind: 'MAX_CONCURRENT_RUNS',
  key: null,
  value: null,
  pool: null,
  perUniqueValue: false,
  limit: 1,
  inUse: 1,
  message: 'max concurrent runs: 1 of 1 runs in progress',
};

/** Writes the log straight into the store: each run waits, then goes when the one before it ends. */
async function writeLog(path: string): Promise<void> {
  const store = openSqliteStore({ path, synchronous: 'NORMAL' });
  const event = (type: string, data: unknown): NewEvent => ({
    type,
    schemaVersion: CURRENT_SCHEMA_VERSION,
    data,
    actor: 'fixture',
    at,
  });
  let batch: NewEvent[] = [event('MaxConcurrentRunsSet', { limit: 1 })];
  let revision = -1n;
  const flush = async () => {
    await store.append(DEPLOYMENT_STREAM, batch, revision < 0n ? 'no_stream' : revision);
    revision += BigInt(batch.length);
    batch = [];
  };
  for (let i = 0; i < RUNS; i++) {
    const runId = `r${i}`;
    batch.push(
      event('RunEnqueued', {
        runId,
        jobName: 'job',
        tags: [],
        steps: [],
        priority: 0,
        maxConcurrentSteps: null,
        leaseSeconds: null,
      }),
      event('RunBlocked', { runId, reasons: [maxRunsHold] }),
    );
    if (i > 0) batch.push(event('RunFinished', { runId: `r${i - 1}`, status: 'SUCCESS', reason: null }));
    batch.push(event('RunAdmitted', { runId }));
    if (batch.length >= 10_000) await flush();
  }
  await flush();
  await store.close();
}

const QUERY = 'subscription($after: String) { dequeueDecisions(after: $after) { position kind runId } }';

let dir: ReturnType<typeof tempDir>;
let server: RunningServer;

beforeAll(async () => {
  dir = tempDir('sluice-long-replay-');
  const path = join(dir.path, 'events.db');
  await writeLog(path);
  server = await startServer({ ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: `sqlite:${path}` }, () => {});
}, 240_000);

afterAll(async () => {
  await server?.close();
  dir?.remove();
});

describe.each([
  ['SSE', (url: string) => new SseCollector(url, QUERY, { after: '0' }) as Collector],
  ['graphql-ws', (url: string) => new WsCollector(url, QUERY, { after: '0' }) as Collector],
])('a replay of %s', (_transport, subscribe) => {
  it(`given ${DECISIONS} decisions in the log, when a client subscribes from the start, then all arrive in order, and then live ones`, async () => {
    const collector = subscribe(server.url);
    try {
      await waitFor(
        () => {
          if (collector.errors.length > 0) throw new Error(describeErrors(collector.errors));
          return collector.items.length >= DECISIONS;
        },
        'the whole replay',
        180_000,
        { intervalMs: 200 },
      );
      // Decisions made live by an earlier test of this file come after the fixture's.
      const positions = collector.items.map((item) => BigInt(item.dequeueDecisions.position));
      expect(positions.length).toBeGreaterThanOrEqual(DECISIONS);
      expect(collector.items.slice(0, DECISIONS).every((item) => /^r\d+$/.test(item.dequeueDecisions.runId))).toBe(
        true,
      );
      expect(positions.every((p, i) => i === 0 || p > (positions[i - 1] as bigint))).toBe(true);
      expect(
        collector.items.slice(0, DECISIONS).filter((item) => item.dequeueDecisions.kind === 'ADMITTED'),
      ).toHaveLength(RUNS);
      // Then live: a new run's decision follows the replay, once.
      const runId = `live-${_transport}`;
      await enqueued(new Gql(server.url), { runId, jobName: 'job' });
      await waitFor(
        () => collector.items.some((item) => item.dequeueDecisions.runId === runId),
        'the live decision after the replay',
        10_000,
      );
      expect(collector.items.filter((item) => item.dequeueDecisions.runId === runId)).toHaveLength(1);
      expect(collector.errors).toEqual([]);
    } finally {
      await collector.close();
    }
  }, 240_000);
});
