/**
 * Every operation of the API under every role and anonymous, in token mode and in open mode
 *: allowed ones run and record the token's name as the actor; the others answer
 * FORBIDDEN (or 401 without a token) and append nothing.
 */
import { type GraphQLObjectType, getNamedType } from 'graphql';
import { afterEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { type Role, roleNeeded } from '../../src/auth/roles.js';
import { hashToken, Tokens } from '../../src/auth/tokens.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { schema } from '../../src/graphql/schema.js';
import { createSluiceYoga, IN_PROCESS_SECURITY } from '../../src/server.js';

const TOKENS = { viewer: 'viewer-secret', worker: 'worker-secret', admin: 'admin-secret' } as const;
const NAMES = { viewer: 'dashboard', worker: 'dagster-daemon', admin: 'ops' } as const;

function tokenMode(): Tokens {
  return Tokens.fromLines(
    'tokens',
    (Object.keys(TOKENS) as Role[]).map((role) => ({ name: NAMES[role], role, hash: hashToken(TOKENS[role]) })),
  );
}

interface Operation {
  field: string;
  kind: 'query' | 'mutation' | 'subscription';
  query: string;
  variables?: Record<string, unknown>;
  /** Whether, when allowed, it appends at least one event. */
  appends: boolean;
}

const OPERATIONS: Operation[] = [
  { field: 'run', kind: 'query', query: '{ run(id: "started") { id status } }', appends: false },
  { field: 'runs', kind: 'query', query: '{ runs(first: 10) { totalCount edges { cursor } } }', appends: false },
  { field: 'queue', kind: 'query', query: '{ queue { id blockedBy { message } } }', appends: false },
  { field: 'pools', kind: 'query', query: '{ pools { name inUse limit } }', appends: false },
  { field: 'pool', kind: 'query', query: '{ pool(name: "db") { name } }', appends: false },
  { field: 'concurrencyConfig', kind: 'query', query: '{ concurrencyConfig { maxConcurrentRuns } }', appends: false },
  {
    field: 'decisions',
    kind: 'query',
    query: '{ decisions(first: 5) { totalCount edges { cursor } } }',
    appends: false,
  },
  { field: 'snapshot', kind: 'query', query: '{ snapshot { position queue { id } } }', appends: false },
  {
    field: 'simulate',
    kind: 'query',
    query: '{ simulate(change: { maxConcurrentRuns: 5 }) { wouldAdmit { id } } }',
    appends: false,
  },
  { field: '__schema', kind: 'query', query: '{ __schema { queryType { name } } }', appends: false },
  { field: 'viewer', kind: 'query', query: '{ viewer { name role } }', appends: false },
  {
    field: 'events',
    kind: 'subscription',
    query: 'subscription { events(after: "0") { position type } }',
    appends: false,
  },
  {
    field: 'waitReport',
    kind: 'query',
    query:
      '{ waitReport(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z") { runs waitSeconds byLimit { kind heldSeconds longestRunIds } byJob { jobName p50Seconds p95Seconds } } }',
    appends: false,
  },
  {
    field: 'waitingRuns',
    kind: 'query',
    query:
      '{ waitingRuns(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z", limit: { kind: MAX_CONCURRENT_RUNS }, first: 5) { totalCount edges { cursor node { runId jobName waitSeconds } } } }',
    appends: false,
  },
  {
    field: 'replayWhatIf',
    kind: 'query',
    query:
      '{ replayWhatIf(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z", change: { maxConcurrentRuns: 5 }) { actualWaitSeconds replayedWaitSeconds assumptions } }',
    appends: false,
  },
  {
    field: 'limitChanges',
    kind: 'query',
    query: '{ limitChanges(first: 5) { totalCount edges { node { actor description } } } }',
    appends: false,
  },
  {
    field: 'runStatusChanges',
    kind: 'subscription',
    query: 'subscription { runStatusChanges(runId: "started") { status } }',
    appends: false,
  },
  {
    field: 'dequeueDecisions',
    kind: 'subscription',
    query: 'subscription { dequeueDecisions { position } }',
    appends: false,
  },
  {
    field: 'enqueueRun',
    kind: 'mutation',
    query: 'mutation { enqueueRun(input: { runId: "new", jobName: "j" }) { __typename } }',
    appends: true,
  },
  {
    field: 'terminateRun',
    kind: 'mutation',
    query: 'mutation { terminateRun(runId: "queued") { __typename } }',
    appends: true,
  },
  {
    field: 'markRunStarted',
    kind: 'mutation',
    query: 'mutation { markRunStarted(runId: "admitted") { __typename } }',
    appends: true,
  },
  {
    field: 'markRunFinished',
    kind: 'mutation',
    query: 'mutation { markRunFinished(runId: "started", status: SUCCESS) { __typename } }',
    appends: true,
  },
  // A heartbeat is only recorded when one is due, not on every call.
  {
    field: 'heartbeat',
    kind: 'mutation',
    query: 'mutation { heartbeat(runId: "started") { __typename } }',
    appends: false,
  },
  {
    field: 'claimStepSlot',
    kind: 'mutation',
    // With the claim's place in line and suggested backoff: a worker reads what it claimed.
    query:
      'mutation { claimStepSlot(runId: "started", stepKey: "s") { __typename ... on StepSlotPayload { claim { granted queuePosition retryAfterSeconds } } } }',
    appends: true,
  },
  {
    field: 'releaseStepSlot',
    kind: 'mutation',
    query: 'mutation { releaseStepSlot(runId: "started", stepKey: "c") { __typename } }',
    appends: true,
  },
  {
    field: 'setPoolLimit',
    kind: 'mutation',
    query: 'mutation { setPoolLimit(pool: "db", limit: 7) { __typename } }',
    appends: true,
  },
  {
    field: 'deletePoolLimit',
    kind: 'mutation',
    query: 'mutation { deletePoolLimit(pool: "db") { __typename } }',
    appends: true,
  },
  {
    field: 'setMaxConcurrentRuns',
    kind: 'mutation',
    query: 'mutation { setMaxConcurrentRuns(limit: 0) { __typename } }',
    appends: true,
  },
  {
    field: 'setTagConcurrencyLimits',
    kind: 'mutation',
    query: 'mutation { setTagConcurrencyLimits(limits: [{ key: "team", limit: 1 }]) { __typename } }',
    appends: true,
  },
  {
    field: 'setPoolGranularity',
    kind: 'mutation',
    query: 'mutation { setPoolGranularity(granularity: RUN) { __typename } }',
    appends: true,
  },
  {
    field: 'setDefaultPoolLimit',
    kind: 'mutation',
    query: 'mutation { setDefaultPoolLimit(limit: 3) { __typename } }',
    appends: true,
  },
  {
    field: 'freeStepSlots',
    kind: 'mutation',
    query: 'mutation { freeStepSlots(runId: "started", stepKey: "c") { __typename } }',
    appends: true,
  },
  {
    field: 'changeConcurrencyConfig',
    kind: 'mutation',
    query: 'mutation { changeConcurrencyConfig(change: { maxConcurrentRuns: 9 }) { __typename } }',
    appends: true,
  },
];

const WORKER_FIELDS = [
  'enqueueRun',
  'markRunStarted',
  'markRunFinished',
  'heartbeat',
  'claimStepSlot',
  'releaseStepSlot',
  'terminateRun',
];

let open: Array<{ sluice: Sluice; store: EventStore }> = [];

afterEach(async () => {
  for (const { sluice, store } of open) {
    await sluice.close();
    await store.close();
  }
  open = [];
});

/** A deployment with a queued run, an admitted one, and a started one holding slot c of pool db. */
async function deployment(tokens: Tokens) {
  const store = openSqliteStore({ path: ':memory:' });
  const sluice = await Sluice.open({ store });
  open.push({ sluice, store });
  const setup = async (command: Parameters<Sluice['execute']>[0]) => sluice.execute(command, 'setup');
  await setup({ type: 'SetPoolLimit', pool: 'db', limit: 5 });
  await setup({ type: 'EnqueueRun', input: { runId: 'admitted', jobName: 'j' } });
  await setup({
    type: 'EnqueueRun',
    input: {
      runId: 'started',
      jobName: 'j',
      leaseSeconds: 600,
      steps: [
        { key: 's', pool: 'db' },
        { key: 'c', pool: 'db' },
      ],
    },
  });
  await setup({ type: 'MarkRunStarted', runId: 'started' });
  await setup({ type: 'ClaimStepSlot', runId: 'started', stepKey: 'c' });
  await setup({ type: 'SetMaxConcurrentRuns', limit: 2 });
  await setup({ type: 'EnqueueRun', input: { runId: 'queued', jobName: 'j' } });
  const yoga = createSluiceYoga(sluice, { ...IN_PROCESS_SECURITY, tokens });
  return { sluice, store, yoga };
}

async function send(deployed: Awaited<ReturnType<typeof deployment>>, op: Operation, token: string | null) {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: op.kind === 'subscription' ? 'text/event-stream' : 'application/json',
    'x-sluice-actor': 'alice',
  };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const before = deployed.sluice.state.revision;
  const response = await deployed.yoga.fetch('http://127.0.0.1/graphql', {
    method: 'POST',
    headers,
    body: JSON.stringify({ query: op.query, variables: op.variables ?? {} }),
  });
  let body: {
    data?: Record<string, { __typename?: string } | null> | null;
    errors?: Array<{ message: string; extensions?: { code?: string } }>;
  } = {};
  if (op.kind === 'subscription' && response.status === 200) {
    // The stream stays open: its status and type are the answer; stop reading.
    expect(response.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = response.body?.getReader();
    await reader?.read();
    await reader?.cancel();
  } else {
    body = JSON.parse(await response.text());
  }
  const events = (await deployed.store.readStream(DEPLOYMENT_STREAM)).filter((event) => event.revision > before);
  return { status: response.status, body, actors: events.map((event) => event.actor) };
}

function expectAllowed(op: Operation, answer: Awaited<ReturnType<typeof send>>, actor: string): void {
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  expect(answer.body.errors ?? [], JSON.stringify(answer.body)).toEqual([]);
  if (op.kind === 'mutation') {
    expect(answer.body.data?.[op.field]?.__typename, JSON.stringify(answer.body)).toMatch(/Payload$/);
  }
  if (op.appends) expect(answer.actors.length).toBeGreaterThan(0);
  else expect(answer.actors).toEqual([]);
  // The token's name, with the x-sluice-actor header only as a note beside it.
  for (const recorded of answer.actors) expect(recorded).toBe(`${actor} (on behalf of alice)`);
}

describe('token mode', () => {
  for (const op of OPERATIONS) {
    const needed = roleNeeded(op.kind, op.field);
    it(`${op.field} (needs ${needed}): allowed roles run it as themselves, lower roles get FORBIDDEN, no token gets 401; refusals append nothing`, async () => {
      for (const role of ['viewer', 'worker', 'admin'] as const) {
        const deployed = await deployment(tokenMode());
        const answer = await send(deployed, op, TOKENS[role]);
        const allowed = ['viewer', 'worker', 'admin'].indexOf(role) >= ['viewer', 'worker', 'admin'].indexOf(needed);
        if (allowed) {
          expectAllowed(op, answer, NAMES[role]);
        } else {
          expect(answer.status, JSON.stringify(answer.body)).toBe(403);
          expect(answer.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
          expect(answer.body.errors?.[0]?.message).toContain(`${op.field} needs the ${needed} role`);
          expect(answer.actors).toEqual([]);
        }
      }
      for (const token of [null, 'not-a-token']) {
        const deployed = await deployment(tokenMode());
        const answer = await send(deployed, op, token);
        expect(answer.status).toBe(401);
        expect(answer.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
        expect(answer.actors).toEqual([]);
      }
    });
  }

  it('given a viewer mutation next to a worker one, when sent together, then the forbidden field is named and neither runs', async () => {
    const deployed = await deployment(tokenMode());
    const op: Operation = {
      field: 'enqueueRun',
      kind: 'mutation',
      query:
        'mutation { a: enqueueRun(input: { runId: "x", jobName: "j" }) { __typename } b: setMaxConcurrentRuns(limit: 0) { __typename } }',
      appends: false,
    };
    const answer = await send(deployed, op, TOKENS.worker);
    expect(answer.status).toBe(403);
    expect(answer.body.errors?.map((e) => e.message)).toEqual([
      'setMaxConcurrentRuns needs the admin role; dagster-daemon has the worker role',
    ]);
    expect(answer.actors).toEqual([]);
  });

  it('given a forbidden mutation hidden in a fragment, when sent, then it is still FORBIDDEN', async () => {
    const deployed = await deployment(tokenMode());
    const op: Operation = {
      field: 'setMaxConcurrentRuns',
      kind: 'mutation',
      query:
        'mutation { ...F } fragment F on Mutation { ... on Mutation { setMaxConcurrentRuns(limit: 0) { __typename } } }',
      appends: false,
    };
    const answer = await send(deployed, op, TOKENS.viewer);
    expect(answer.status).toBe(403);
    expect(answer.actors).toEqual([]);
  });
});

describe('open mode', () => {
  for (const op of OPERATIONS) {
    it(`${op.field}: anonymous may do it, recorded as anonymous`, async () => {
      const deployed = await deployment(Tokens.open());
      expectAllowed(op, await send(deployed, op, null), 'anonymous');
    });
  }
});

describe('the role of every field', () => {
  it('covers every field of the schema: the worker mutations are exactly those of the issue, every other mutation is admin, reads are viewer', () => {
    const mutation = schema.getMutationType() as GraphQLObjectType;
    for (const field of Object.keys(mutation.getFields())) {
      expect(roleNeeded('mutation', field), field).toBe(WORKER_FIELDS.includes(field) ? 'worker' : 'admin');
    }
    for (const field of Object.keys((schema.getQueryType() as GraphQLObjectType).getFields())) {
      expect(roleNeeded('query', field)).toBe('viewer');
    }
    // Every root field of the schema is exercised above.
    const tested = new Set(OPERATIONS.map((op) => op.field));
    for (const type of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
      for (const field of Object.values((type as GraphQLObjectType).getFields())) {
        expect(
          tested.has(field.name),
          `${type?.name}.${field.name} (${getNamedType(field.type).name}) is not tested`,
        ).toBe(true);
      }
    }
  });
});
