/**
 * What a client sees when the store fails under a command: a full disk, a lost connection,
 * endless lost races. Each has a defined outcome: an explicit STORE_UNAVAILABLE error, nothing
 * recorded, the projections unchanged, and the server still serving.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { ConcurrencyError, StoreUnavailableError } from '../../src/eventstore/errors.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import { Gql, tempDir, waitFor } from '../support/e2e-http.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface FaultyStore extends EventStore {
  failAppendsWith(error: Error | null): void;
  /** Ends every live subscription with `error`, as a dropped connection would. */
  dropSubscriptions(error: Error): void;
}

/** A real SQLite store whose appends can be made to fail and subscriptions dropped, as a broken connection would. */
function withFaults(store: EventStore): FaultyStore {
  let failure: Error | null = null;
  const live = new Set<{ close: () => void; onError?: (error: Error) => void }>();
  return Object.assign(Object.create(store) as EventStore, {
    description: store.description,
    append: (...args: Parameters<EventStore['append']>) => (failure ? Promise.reject(failure) : store.append(...args)),
    readStream: store.readStream.bind(store),
    readAll: store.readAll.bind(store),
    streamRevision: store.streamRevision.bind(store),
    subscribe: (...[stream, options, onEvent, onError]: Parameters<EventStore['subscribe']>) => {
      const subscription = store.subscribe(stream, options, onEvent, onError);
      const entry = { close: () => subscription.close(), ...(onError ? { onError } : {}) };
      live.add(entry);
      return subscription;
    },
    close: store.close.bind(store),
    failAppendsWith: (error: Error | null) => {
      failure = error;
    },
    dropSubscriptions: (error: Error) => {
      for (const entry of live) {
        entry.close();
        entry.onError?.(error);
      }
      live.clear();
    },
  });
}

async function serve(store: EventStore, maxAttempts?: number) {
  const sluice = await Sluice.open({ store, warn: () => {}, ...(maxAttempts ? { maxAttempts } : {}) });
  cleanups.push(
    () => sluice.close(),
    () => store.close(),
  );
  return { sluice, gql: new Gql('http://sluice/graphql', createSluiceYoga(sluice).fetch) };
}

const ENQUEUE = `mutation($id: ID!) { enqueueRun(input: {runId: $id, jobName: "etl"}) {
  __typename ... on RunPayload { run { id status } } } }`;

describe('a store that fails under a command', () => {
  it('given a full disk, when runs are enqueued until it fills, then the failing one answers STORE_UNAVAILABLE, records nothing, and reads still work', async () => {
    const dir = tempDir('sluice-full-');
    cleanups.push(() => dir.remove());
    const store = openSqliteStore({ path: `${dir.path}/events.db`, maxPageCount: 40 });
    const { sluice, gql } = await serve(store);

    let failed: { message: string; extensions?: Record<string, unknown> } | undefined;
    let acknowledged = 0;
    for (let i = 0; i < 2_000 && !failed; i++) {
      const before = serializeState(sluice.state);
      const answer = await gql.answer(ENQUEUE, { id: `r${i}-${'x'.repeat(200)}` });
      if (answer.body.errors?.length) {
        failed = answer.body.errors[0];
        expect(serializeState(sluice.state)).toBe(before);
      } else {
        acknowledged++;
      }
    }
    expect(failed, 'the disk never filled').toBeDefined();
    expect(failed?.extensions?.code).toBe('STORE_UNAVAILABLE');
    expect(failed?.message).toMatch(/full|disk/i);
    expect(failed?.message).toMatch(/nothing was recorded/);
    // Every acknowledged enqueue is in the log, the failed one is not.
    const runs = (await store.readStream(DEPLOYMENT_STREAM)).filter((e) => e.type === 'RunEnqueued');
    expect(runs).toHaveLength(acknowledged);
    const { queue } = await gql.data('{ queue { id } }');
    expect(queue.length).toBeLessThanOrEqual(acknowledged);
    expect((await gql.get('/health')).status).toBe(200);
  });

  it('given a lost connection, when a mutation comes, then it answers STORE_UNAVAILABLE, and once the store is back the same mutation succeeds', async () => {
    const store = withFaults(openSqliteStore({ path: ':memory:' }));
    const { sluice, gql } = await serve(store);
    await gql.data(ENQUEUE, { id: 'a' });
    const revision = sluice.state.revision;

    store.failAppendsWith(new StoreUnavailableError('connection to the event store lost'));
    const failed = await gql.answer(ENQUEUE, { id: 'b' });
    expect(failed.body.errors?.[0]?.extensions?.code).toBe('STORE_UNAVAILABLE');
    expect(failed.body.errors?.[0]?.message).toMatch(/connection to the event store lost; nothing was recorded/);
    expect(sluice.state.revision).toBe(revision);
    expect((await gql.data('{ run(id: "b") { id } }')).run).toBeNull();

    store.failAppendsWith(null);
    const retried = await gql.data(ENQUEUE, { id: 'b' });
    expect(retried.enqueueRun.run.id).toBe('b');
  });

  it('given a store that loses every race, when a mutation comes, then it gives up after its attempts with STORE_UNAVAILABLE and records nothing', async () => {
    const store = withFaults(openSqliteStore({ path: ':memory:' }));
    const { sluice, gql } = await serve(store, 5);
    store.failAppendsWith(new ConcurrencyError(DEPLOYMENT_STREAM, 'no_stream', 0n));
    const failed = await gql.answer(ENQUEUE, { id: 'a' });
    expect(failed.body.errors?.[0]?.extensions?.code).toBe('STORE_UNAVAILABLE');
    expect(failed.body.errors?.[0]?.message).toMatch(/lost the race for the log 5 times/);
    expect(sluice.state.revision).toBe(-1n);
  });

  it('given the server stops following the log, then /ready answers 503 with the reason while /health and commands go on, and it is ready again once it follows anew', async () => {
    const store = withFaults(openSqliteStore({ path: ':memory:' }));
    const { gql } = await serve(store);
    expect((await gql.get('/ready')).status).toBe(200);

    store.dropSubscriptions(new StoreUnavailableError('connection to the event store lost'));
    const notReady = await gql.get('/ready');
    expect(notReady.status).toBe(503);
    expect(JSON.parse(notReady.text)).toEqual({
      status: 'not ready',
      reason: 'not following the log: connection to the event store lost',
    });
    expect((await gql.get('/health')).status).toBe(200);
    // Commands catch up with the log on their own, so they are still decided on the whole of it.
    expect((await gql.data(ENQUEUE, { id: 'during' })).enqueueRun.run.status).toBe('STARTING');

    await waitFor(async () => (await gql.get('/ready')).status === 200, 'the server to follow the log again');
    expect(JSON.parse((await gql.get('/ready')).text)).toEqual({ status: 'ready' });
  });

  it('given an unexpected error inside a resolver, when it happens, then the client gets a masked error, not its details', async () => {
    const store = withFaults(openSqliteStore({ path: ':memory:' }));
    const { gql } = await serve(store);
    store.failAppendsWith(new Error('secret internal detail: /var/lib/sluice'));
    const failed = await gql.answer(ENQUEUE, { id: 'a' });
    expect(failed.body.errors?.[0]?.message).toBe('Unexpected error.');
    expect(failed.text).not.toContain('secret');
  });
});
