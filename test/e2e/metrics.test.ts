/**
 * GET /metrics on a real server: every metric after a known sequence of commands, checked
 * against what the API and the log say; finished runs still counted after a restart; the
 * authorize hook.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { createSluiceYoga, type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS, type Settings } from '../../src/settings.js';
import {
  allDecisions,
  enqueued,
  Gql,
  type Json,
  mutated,
  SseCollector,
  tempDir,
  WsCollector,
  waitFor,
} from '../support/e2e-http.js';
import { parseMetrics, type Sample, sampleValue, seriesOf } from '../support/metrics-text.js';

vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

let dir: { path: string; remove: () => void };
let settings: Settings;
const servers: RunningServer[] = [];
const lines: string[] = [];

beforeEach(() => {
  dir = tempDir('sluice-metrics-');
  settings = { ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: `sqlite:${join(dir.path, 'events.db')}` };
  lines.length = 0;
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  dir.remove();
});

async function serve(): Promise<{ server: RunningServer; gql: Gql }> {
  const server = await startServer(settings, (line) => lines.push(line));
  servers.push(server);
  return { server, gql: new Gql(server.url) };
}

async function scrape(gql: Gql): Promise<Sample[]> {
  const { status, text } = await gql.get('/metrics');
  expect(status).toBe(200);
  return parseMetrics(text);
}

const commandLines = () =>
  lines.map((line) => JSON.parse(line) as Json).filter((entry) => typeof entry.command === 'string');

const RUN = 'mutation($runId: ID!) { markRunStarted(runId: $runId) { __typename ... on Error { message } } }';
const CLAIM = `mutation($runId: ID!, $stepKey: String!) { claimStepSlot(runId: $runId, stepKey: $stepKey) {
  __typename ... on StepSlotPayload { claim { granted } } ... on Error { message } } }`;
const FINISH = `mutation($runId: ID!, $status: RunStatus!) { markRunFinished(runId: $runId, status: $status) {
  __typename ... on Error { message } } }`;
const TERMINATE = 'mutation($runId: ID!) { terminateRun(runId: $runId) { __typename ... on Error { message } } }';
const SUBSCRIPTION = 'subscription { dequeueDecisions { position kind runId } }';

/** Limits, runs in every live and finished status, slots granted and pending, a lease that expires. */
async function knownSequence(gql: Gql): Promise<void> {
  await mutated(gql, 'mutation { setMaxConcurrentRuns(limit: 2) { __typename } }');
  await mutated(
    gql,
    `mutation { setTagConcurrencyLimits(limits: [
      {key: "team", applyLimitPerUniqueValue: true, limit: 1},
      {key: "db", value: "redshift", limit: 3},
      {key: "region", limit: 5}]) { __typename } }`,
  );
  await mutated(gql, 'mutation { setPoolLimit(pool: "warehouse", limit: 1) { __typename } }');
  const tags = (team: string) => [
    { key: 'team', value: team },
    { key: 'db', value: 'redshift' },
    { key: 'region', value: 'eu' },
  ];
  const a1 = await enqueued(gql, {
    runId: 'a1',
    jobName: 'etl',
    tags: tags('data'),
    steps: [
      { key: 'load', pool: 'warehouse' },
      { key: 'check', pool: 'warehouse' },
    ],
  });
  expect(a1.status).toBe('STARTING');
  expect((await enqueued(gql, { runId: 'a2', jobName: 'etl', tags: tags('data') })).status).toBe('QUEUED');
  expect((await enqueued(gql, { runId: 'b1', jobName: 'train', tags: tags('ml') })).status).toBe('STARTING');
  await mutated(gql, RUN, { runId: 'a1' });
  expect((await mutated(gql, CLAIM, { runId: 'a1', stepKey: 'load' })).claimStepSlot.claim.granted).toBe(true);
  expect((await mutated(gql, CLAIM, { runId: 'a1', stepKey: 'check' })).claimStepSlot.claim.granted).toBe(false);
  await mutated(gql, FINISH, { runId: 'b1', status: 'SUCCESS' });
  // Refused by the domain: a run does not finish as QUEUED.
  const refused = await gql.data(FINISH, { runId: 'a1', status: 'QUEUED' });
  expect(refused.markRunFinished.__typename).toBe('ValidationError');
  await mutated(gql, TERMINATE, { runId: 'a2' });
  expect((await enqueued(gql, { runId: 'c1', jobName: 'leased', leaseSeconds: 1 })).status).toBe('STARTING');
  await waitFor(
    async () => (await gql.data('{ run(id: "c1") { status } }')).run.status === 'FAILURE',
    'the lease of c1 to expire',
    10_000,
    { intervalMs: 50 },
  );
  expect((await enqueued(gql, { runId: 'q1', jobName: 'etl', tags: tags('data') })).status).toBe('QUEUED');
}

describe('GET /metrics', () => {
  it('given a known sequence of commands, then every metric says what the log says', async () => {
    const { server, gql } = await serve();
    await knownSequence(gql);
    const subscription = new SseCollector(server.url, SUBSCRIPTION);
    await subscription.opened;
    const m = await waitFor(async () => {
      const samples = await scrape(gql);
      return sampleValue(samples, 'sluice_subscriptions') === 1 ? samples : null;
    }, 'the subscription to count');

    expect(seriesOf(m, 'sluice_runs')).toEqual({
      'status=QUEUED': 1,
      'status=STARTING': 0,
      'status=STARTED': 1,
      'status=CANCELING': 0,
      'status=SUCCESS': 1,
      'status=FAILURE': 1,
      'status=CANCELED': 1,
    });
    expect(sampleValue(m, 'sluice_queue_length')).toBe(1);
    // team=ml's counter is back to 0 (b1 finished): a per-value series shows values in use only.
    expect(seriesOf(m, 'sluice_run_limit')).toEqual({
      'key=,kind=max_concurrent_runs,value=': 2,
      'key=team,kind=tag_per_value,value=data': 1,
      'key=db,kind=tag_value,value=redshift': 3,
      'key=region,kind=tag_key,value=': 5,
    });
    expect(seriesOf(m, 'sluice_run_limit_in_use')).toEqual({
      'key=,kind=max_concurrent_runs,value=': 1,
      'key=team,kind=tag_per_value,value=data': 1,
      'key=db,kind=tag_value,value=redshift': 1,
      'key=region,kind=tag_key,value=': 1,
    });
    expect(seriesOf(m, 'sluice_pool_limit')).toEqual({ 'pool=warehouse': 1 });
    expect(seriesOf(m, 'sluice_pool_slots_in_use')).toEqual({ 'pool=warehouse': 1 });
    expect(seriesOf(m, 'sluice_pool_slots_pending')).toEqual({ 'pool=warehouse': 1 });
    // a1 claimed both of its root steps: nothing is promised any more.
    expect(seriesOf(m, 'sluice_pool_slots_promised')).toEqual({ 'pool=warehouse': 0 });

    const decisions = await allDecisions(gql);
    const byKind: Record<string, number> = {};
    for (const d of decisions) byKind[`kind=${d.kind}`] = (byKind[`kind=${d.kind}`] ?? 0) + 1;
    expect(byKind['kind=ADMITTED']).toBe(3);
    expect(byKind['kind=SLOT_GRANTED']).toBe(1);
    expect(byKind['kind=SLOT_PENDING']).toBe(1);
    expect(seriesOf(m, 'sluice_decisions_total')).toEqual(byKind);

    const commands = seriesOf(m, 'sluice_commands_total');
    expect(commands).toMatchObject({
      'command=SetMaxConcurrentRuns,outcome=ok': 1,
      'command=SetTagConcurrencyLimits,outcome=ok': 1,
      'command=SetPoolLimit,outcome=ok': 1,
      'command=EnqueueRun,outcome=ok': 5,
      'command=MarkRunStarted,outcome=ok': 1,
      'command=ClaimStepSlot,outcome=ok': 2,
      'command=MarkRunFinished,outcome=ok': 1,
      'command=MarkRunFinished,outcome=rejected': 1,
      'command=TerminateRun,outcome=ok': 1,
    });
    expect(commands['command=ExpireDeadlines,outcome=ok']).toBeGreaterThanOrEqual(1);
    expect(sampleValue(m, 'sluice_command_duration_seconds_count', { command: 'EnqueueRun' })).toBe(5);
    expect(sampleValue(m, 'sluice_command_duration_seconds_sum', { command: 'EnqueueRun' })).toBeGreaterThan(0);
    expect(sampleValue(m, 'sluice_command_duration_seconds_bucket', { command: 'EnqueueRun', le: '+Inf' })).toBe(5);

    // a1, b1 and c1 were admitted at once; a2 and q1 never were.
    expect(sampleValue(m, 'sluice_queue_wait_seconds_count')).toBe(3);
    expect(sampleValue(m, 'sluice_queue_wait_seconds_bucket', { le: '0.1' })).toBe(3);

    // One append per command that changed something, as the command log lines tell, and the one
    // append at start-up that records a fresh log's rules beside it (no command of its own).
    const appending = commandLines().filter((entry) => entry.events > 0).length;
    expect(appending).toBeGreaterThan(10);
    expect(sampleValue(m, 'sluice_store_append_duration_seconds_count')).toBe(appending + 1);
    expect(sampleValue(m, 'sluice_store_append_duration_seconds_sum')).toBeGreaterThan(0);

    expect(sampleValue(m, 'sluice_log_position')).toBe(Number(await server.store.streamRevision(DEPLOYMENT_STREAM)));
    expect(seriesOf(m, 'sluice_timeouts_total')).toEqual({ 'reason=lease_expired': 1 });

    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ]) {
      expect(sampleValue(m, name), name).toBeGreaterThan(0);
    }

    await subscription.close();
    await waitFor(async () => sampleValue(await scrape(gql), 'sluice_subscriptions') === 0, 'the subscription to end');
  }, 30_000);

  it('given a restarted server, then finished runs are still counted and counters start again', async () => {
    const first = await serve();
    await knownSequence(first.gql);
    await first.server.close();
    servers.length = 0;

    const { gql } = await serve();
    const m = await scrape(gql);
    expect(seriesOf(m, 'sluice_runs')).toMatchObject({
      'status=QUEUED': 1,
      'status=STARTED': 1,
      'status=SUCCESS': 1,
      'status=FAILURE': 1,
      'status=CANCELED': 1,
    });
    expect(seriesOf(m, 'sluice_commands_total')).toEqual({});
    await mutated(gql, FINISH, { runId: 'a1', status: 'FAILURE' });
    const after = await scrape(gql);
    expect(sampleValue(after, 'sluice_runs', { status: 'FAILURE' })).toBe(2);
    expect(sampleValue(after, 'sluice_runs', { status: 'STARTED' })).toBe(0);
    // a1 held team=data: q1 goes now.
    expect(sampleValue(after, 'sluice_runs', { status: 'STARTING' })).toBe(1);
    expect(seriesOf(after, 'sluice_decisions_total')).toEqual({ 'kind=ADMITTED': 1 });
  }, 30_000);

  it('given subscriptions over SSE and WebSocket, then each counts while open, and a client that goes away stops counting', async () => {
    const { server, gql } = await serve();
    const count = async () => sampleValue(await scrape(gql), 'sluice_subscriptions');
    expect(await count()).toBe(0);
    const sse = new SseCollector(server.url, SUBSCRIPTION);
    const ws = new WsCollector(server.url, SUBSCRIPTION);
    await waitFor(async () => (await count()) === 2, 'both subscriptions to count');
    await ws.close();
    await waitFor(async () => (await count()) === 1, 'the WebSocket one to end');
    await sse.close();
    await waitFor(async () => (await count()) === 0, 'the SSE one to end');
  });

  it('given an authorize hook, then a request it refuses gets 401 without a token, 403 with one', async () => {
    const { server } = await serve();
    const yoga = createSluiceYoga(server.sluice, {
      metrics: server.metrics,
      authorizeMetrics: (request) => request.headers.get('authorization') === 'Bearer viewer-token',
    });
    const get = (headers: Record<string, string>) => yoga.fetch('http://localhost/metrics', { headers });
    expect((await get({})).status).toBe(401);
    expect((await get({ authorization: 'Bearer worker-token' })).status).toBe(403);
    const allowed = await get({ authorization: 'Bearer viewer-token' });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await allowed.text()).toContain('sluice_queue_length 0');
    // A POST without a JSON body is refused before any route (no cross-site form posts).
    expect((await yoga.fetch('http://localhost/metrics', { method: 'POST' })).status).toBe(415);
  });
});
