/**
 * `runStatusChanges(runId)` over SSE through `yoga.fetch`: the status now, then each change as
 * recorded, ending once the run has finished; an unknown or invalid run id is an error.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import { type FetchLike, Gql, waitFor } from '../support/e2e-http.js';
import { FetchSse } from '../support/slots.js';

vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const URL = 'http://sluice.test/graphql';
const SUBSCRIPTION = 'subscription($runId: ID!) { runStatusChanges(runId: $runId) { runId status reason position } }';
let store: EventStore;
let sluice: Sluice;
let fetchImpl: FetchLike;
let gql: Gql;
const streams: FetchSse[] = [];

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  sluice = await Sluice.open({ store });
  const yoga = createSluiceYoga(sluice);
  fetchImpl = (url, init) => yoga.fetch(url, init);
  gql = new Gql(URL, fetchImpl);
});

afterEach(async () => {
  await Promise.all(streams.splice(0).map((s) => s.close()));
  await sluice.close();
  await store.close();
});

function subscribe(runId: string): FetchSse {
  const stream = new FetchSse(fetchImpl, URL, SUBSCRIPTION, { runId });
  streams.push(stream);
  return stream;
}

const statuses = (stream: FetchSse) =>
  stream.items.map((item) => (item as { runStatusChanges: { status: string } }).runStatusChanges.status);

describe('runStatusChanges', () => {
  it('given a queued run, when it is admitted, started, canceled and ends, then each status streams and the stream ends', async () => {
    await gql.data('mutation { setMaxConcurrentRuns(limit: 0) { __typename } }');
    await gql.data('mutation { enqueueRun(input: {runId: "r1", jobName: "j"}) { __typename } }');
    const stream = subscribe('r1');
    await waitFor(() => statuses(stream).length === 1, 'the current status');
    await gql.data('mutation { setMaxConcurrentRuns(limit: 1) { __typename } }');
    await gql.data('mutation { markRunStarted(runId: "r1") { __typename } }');
    await gql.data('mutation { terminateRun(runId: "r1") { __typename } }');
    await gql.data('mutation { markRunFinished(runId: "r1", status: CANCELED) { __typename } }');
    await waitFor(() => stream.done, 'the stream to end');
    expect(statuses(stream)).toEqual(['QUEUED', 'STARTING', 'STARTED', 'CANCELING', 'CANCELED']);
    expect(stream.errors).toEqual([]);
  });

  it('given a run terminated with force, then the final status carries the reason', async () => {
    await gql.data('mutation { enqueueRun(input: {runId: "r2", jobName: "j"}) { __typename } }');
    const stream = subscribe('r2');
    await waitFor(() => statuses(stream).length === 1, 'the current status');
    await gql.data('mutation { terminateRun(runId: "r2", force: true) { __typename } }');
    await waitFor(() => stream.done, 'the stream to end');
    const last = stream.items.at(-1) as { runStatusChanges: { status: string; reason: string } };
    expect(last.runStatusChanges).toMatchObject({ status: 'CANCELED', reason: 'terminated with force' });
  });

  it('given a finished run, then the stream answers its final status and ends', async () => {
    await gql.data('mutation { enqueueRun(input: {runId: "r3", jobName: "j"}) { __typename } }');
    await gql.data('mutation { markRunFinished(runId: "r3", status: FAILURE) { __typename } }');
    const stream = subscribe('r3');
    await waitFor(() => stream.done, 'the stream to end');
    expect(statuses(stream)).toEqual(['FAILURE']);
  });

  it('given an unknown run or an empty id, then the subscription answers an error naming it', async () => {
    const unknown = subscribe('ghost');
    await waitFor(() => unknown.done, 'the stream to end');
    expect(JSON.stringify(unknown.errors)).toContain('run ghost does not exist');
    const empty = subscribe('');
    await waitFor(() => empty.done, 'the stream to end');
    expect(JSON.stringify(empty.errors)).toContain('run id must not be empty');
  });
});
