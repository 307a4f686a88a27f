/**
 * Records one log of the corpus: runs a real `sluice serve` from a source tree (this one, or an
 * older release checked out with `git worktree add`), drives it through every feature that tree
 * has (run, tag and pool limits, pools at both granularities, the root-step hold when it exists,
 * step claims, added steps, leases, timeouts, terminations, limit edits, a dagster.yaml), then
 * asks it every question about the past and the present and stores the log beside the answers.
 * Today's server must give the same answers on that log: test/app/log-corpus.test.ts checks it.
 *
 *   npx tsx scripts/record-log-fixture.ts SOURCE_DIR FORMAT_NAME
 *
 * writes test/fixtures/logs/FORMAT_NAME/{events.json,answers.json}. A release adds its own log.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CORPUS_QUERIES,
  type CorpusAnswers,
  type CorpusEvent,
  type Recorded,
  recordAnswers,
} from '../test/support/log-corpus.js';

const [sourceArg, formatName] = process.argv.slice(2);
if (!sourceArg || !formatName) {
  console.error('usage: tsx scripts/record-log-fixture.ts SOURCE_DIR FORMAT_NAME');
  process.exit(2);
}
const source = resolve(sourceArg);
const out = resolve(import.meta.dirname, '../test/fixtures/logs', formatName);

const DAGSTER_YAML = `# Read at start-up: the limits below become limit-edit events in the log.
concurrency:
  runs:
    max_concurrent_runs: 5
    tag_concurrency_limits:
      - key: team
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: env
        value: prod
        limit: 1
      - key: kind
        limit: 2
  pools:
    granularity: op
    default_limit: 2
run_monitoring:
  start_timeout_seconds: 2
  cancel_timeout_seconds: 2
`;

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => done(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

class Client {
  constructor(readonly url: string) {}

  async data(query: string, variables: Record<string, unknown> = {}): Promise<Recorded> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: Recorded; errors?: unknown[] };
    if (!body.data || body.errors?.length) throw new Error(`${query}: ${JSON.stringify(body)}`);
    return body.data;
  }

  /** A mutation that must succeed: its union member is a payload, not an error. */
  async mutate(field: string, args: string): Promise<Recorded> {
    const data = await this.data(`mutation { m: ${field}${args} { __typename ... on Error { message } } }`);
    if (String(data.m.__typename).endsWith('Error')) throw new Error(`${field}${args}: ${data.m.message}`);
    return data.m;
  }
}

async function waitReady(base: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited:\n${log()}`);
    const ok = await fetch(`${base}/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await sleep(200);
  }
  throw new Error(`server not ready:\n${log()}`);
}

/** What the source tree's schema offers (older releases lack later fields). */
async function features(client: Client): Promise<{ hold: boolean }> {
  const data = await client.data('{ __type(name: "ConcurrencyConfig") { fields { name } } }');
  const fields = (data.__type.fields as Array<{ name: string }>).map((f) => f.name);
  return { hold: fields.includes('rootStepHold') };
}

const enqueue = (c: Client, input: string) => c.mutate('enqueueRun', `(input: ${input})`);
const steps = (list: Array<[string, string | null, string[]?]>) =>
  `[${list.map(([key, pool, deps]) => `{ key: "${key}"${pool ? `, pool: "${pool}"` : ''}${deps ? `, dependsOn: ${JSON.stringify(deps)}` : ''} }`).join(', ')}]`;
const tags = (list: Array<[string, string]>) =>
  `[${list.map(([k, v]) => `{ key: "${k}", value: "${v}" }`).join(', ')}]`;

async function statusOf(c: Client, id: string): Promise<string> {
  return (await c.data(`{ run(id: "${id}") { status } }`)).run.status;
}

async function startIfAdmitted(c: Client, id: string): Promise<void> {
  if ((await statusOf(c, id)) === 'STARTING') await c.mutate('markRunStarted', `(runId: "${id}")`);
}

async function claimIfStarted(c: Client, id: string, step: string): Promise<void> {
  const claimed = await c.data(`{ run(id: "${id}") { status stepClaims { stepKey } } }`);
  if (claimed.run.status !== 'STARTED' || claimed.run.stepClaims.some((s: Recorded) => s.stepKey === step)) return;
  await c.mutate('claimStepSlot', `(runId: "${id}", stepKey: "${step}")`);
}

/** Every feature, in an order that makes runs wait for each kind of limit and leaves no deadline pending. */
async function drive(c: Client, has: { hold: boolean }): Promise<void> {
  const pause = () => sleep(15);
  await c.mutate('setPoolLimit', '(pool: "db", limit: 1)');
  await c.mutate('setPoolLimit', '(pool: "etl", limit: 3)');
  // a1 and b1 both have root steps in db (limit 1): with the hold on, b1 waits for a1's slot.
  await enqueue(
    c,
    `{ runId: "a1", jobName: "load", tags: ${tags([['team', 'a']])}, steps: ${steps([
      ['extract', 'db'],
      ['load', 'etl', ['extract']],
    ])}, maxConcurrentSteps: 2 }`,
  );
  await pause();
  await enqueue(
    c,
    `{ runId: "a2", jobName: "load", tags: ${tags([['team', 'a']])}, steps: ${steps([['extract', 'etl']])} }`,
  );
  await enqueue(
    c,
    `{ runId: "b1", jobName: "report", tags: ${tags([
      ['team', 'b'],
      ['env', 'prod'],
    ])}, steps: ${steps([['query', 'db']])} }`,
  );
  await enqueue(c, `{ runId: "p1", jobName: "report", tags: ${tags([['env', 'prod']])} }`);
  // s1 has a root step with no pool, so no hold keeps it queued; its db step waits for a slot.
  await enqueue(
    c,
    `{ runId: "s1", jobName: "stage", steps: ${steps([
      ['prep', null],
      ['query', 'db'],
    ])} }`,
  );
  await pause();
  await enqueue(c, `{ runId: "k1", jobName: "sync", tags: ${tags([['kind', 'x']])}, leaseSeconds: 2 }`);
  await enqueue(c, `{ runId: "k2", jobName: "sync", tags: ${tags([['kind', 'y']])}, priority: 3 }`);
  await enqueue(
    c,
    `{ runId: "k3", jobName: "sync", tags: ${tags([
      ['kind', 'z'],
      ['dagster/priority', '7'],
    ])} }`,
  );
  await enqueue(c, `{ runId: "q1", jobName: "quick", steps: ${steps([['only', 'etl']])} }`);
  await enqueue(c, `{ runId: "q2", jobName: "quick", tags: ${tags([['dagster/priority', 'high']])} }`);
  await pause();
  await c.mutate('setMaxConcurrentRuns', '(limit: 2)');
  await enqueue(c, `{ runId: "m1", jobName: "more" }`);
  await pause();
  await c.mutate('setMaxConcurrentRuns', '(limit: 8)');
  await pause();
  // Steps: grants, a wait, a release handing the slot on, a step added with a pool.
  for (const id of ['a1', 'b1', 's1', 'k1', 'k2', 'k3', 'q1', 'p1']) await startIfAdmitted(c, id);
  if ((await statusOf(c, 'k1')) === 'STARTED') await c.mutate('heartbeat', '(runId: "k1")');
  await c.mutate('claimStepSlot', '(runId: "a1", stepKey: "extract")');
  await claimIfStarted(c, 'b1', 'query');
  await c.mutate('claimStepSlot', '(runId: "s1", stepKey: "query")');
  await c.mutate('claimStepSlot', '(runId: "a1", stepKey: "extra", pool: "etl")');
  await pause();
  await c.mutate('releaseStepSlot', '(runId: "a1", stepKey: "extract")');
  await c.mutate('claimStepSlot', '(runId: "a1", stepKey: "load")');
  await c.mutate('claimStepSlot', '(runId: "q1", stepKey: "only")');
  await pause();
  // Without the hold b1 has been waiting for its slot since it started; with it, it was admitted now.
  await startIfAdmitted(c, 'b1');
  await claimIfStarted(c, 'b1', 'query');
  await c.mutate('releaseStepSlot', '(runId: "s1", stepKey: "query")');
  await pause();
  await c.mutate('freeStepSlots', '(runId: "q1")');
  await c.mutate('markRunFinished', '(runId: "q1", status: SUCCESS)');
  // k1's lease (2 s) runs out: the run monitor fails it.
  await sleep(3_500);
  await c.mutate(
    'setTagConcurrencyLimits',
    '(limits: [{ key: "team", applyLimitPerUniqueValue: true, limit: 1 }, { key: "kind", limit: 1 }])',
  );
  await pause();
  if (has.hold) {
    await c.mutate('changeConcurrencyConfig', '(change: { rootStepHold: { enabled: false } })');
    await pause();
  }
  await c.mutate('setPoolGranularity', '(granularity: RUN)');
  await enqueue(c, `{ runId: "r1", jobName: "runpool", steps: ${steps([['s', 'db']])} }`);
  await pause();
  await c.mutate('setDefaultPoolLimit', '(limit: 1)');
  await c.mutate('setPoolGranularity', '(granularity: OP)');
  if (has.hold)
    await c.mutate('changeConcurrencyConfig', '(change: { rootStepHold: { enabled: true, runBuffer: 0 } })');
  await pause();
  await c.mutate('deletePoolLimit', '(pool: "etl")');
  await c.mutate(
    'changeConcurrencyConfig',
    '(change: { maxConcurrentRuns: 6, poolLimits: [{ pool: "db", limit: 2 }], defaultPoolLimit: null })',
  );
  await pause();
  // Terminations: queued, started (cancel timeout of 2 s), forced.
  // t1 waits: the kind limit (1) is taken by k2 or k3.
  await enqueue(c, `{ runId: "t1", jobName: "sync", tags: ${tags([['kind', 'w']])} }`);
  await c.mutate('terminateRun', '(runId: "t1")');
  for (const [id, force] of [
    ['k2', false],
    ['p1', true],
    ['k3', true],
  ] as const) {
    if (['STARTING', 'STARTED'].includes(await statusOf(c, id))) {
      await c.mutate('terminateRun', `(runId: "${id}"${force ? ', force: true' : ''})`);
    }
  }
  for (const [id, status] of [
    ['a1', 'FAILURE'],
    ['b1', 'SUCCESS'],
    ['s1', 'SUCCESS'],
  ]) {
    if (['STARTING', 'STARTED'].includes(await statusOf(c, id as string))) {
      await c.mutate('markRunFinished', `(runId: "${id}", status: ${status})`);
    }
  }
  await pause();
  // Runs admitted now and never started fail at the start timeout (2 s); k2's cancel times out.
  await sleep(3_000);
  // Last: runs left waiting behind full limits. w1 and w3 hold db's two slots; w4's only root
  // step is in db (held by the hold where it exists, else waiting for a slot); w2 waits for team c.
  await c.mutate('setMaxConcurrentRuns', '(limit: 3)');
  for (const id of ['w1', 'w3', 'w4']) {
    await enqueue(
      c,
      `{ runId: "${id}", jobName: "late", tags: ${tags([['team', id === 'w1' ? 'c' : id]])}, steps: ${steps([['x', 'db']])} }`,
    );
    await startIfAdmitted(c, id);
    await claimIfStarted(c, id, 'x');
    await pause();
  }
  await enqueue(c, `{ runId: "w2", jobName: "late", tags: ${tags([['team', 'c']])} }`);
  await pause();
}

/** Makes every in-progress run finish so that opening the log later triggers no run monitor deadline. */
async function settle(c: Client): Promise<void> {
  const data = await c.data(
    '{ runs(first: 500, statuses: [STARTING, STARTED, CANCELING]) { edges { node { id status } } } }',
  );
  for (const edge of data.runs.edges as Array<{ node: { id: string; status: string } }>) {
    if (edge.node.status === 'STARTING') await c.mutate('markRunStarted', `(runId: "${edge.node.id}")`);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-corpus-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const config = join(dir, 'dagster.yaml');
  writeFileSync(config, DAGSTER_YAML);
  let text = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
    cwd: source,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      EVENT_STORE_URL: `sqlite:${join(dir, 'events.db')}`,
      CHECKPOINT_PATH: join(dir, 'checkpoint.db'),
      HISTORY_PATH: join(dir, 'history.db'),
      CONCURRENCY_CONFIG: config,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk) => (text += String(chunk)));
  child.stderr?.on('data', (chunk) => (text += String(chunk)));
  try {
    await waitReady(base, child, () => text);
    const client = new Client(`${base}/graphql`);
    const has = await features(client);
    await drive(client, has);
    await settle(client);
    // A started run's unclaimed root steps stop counting after the allotment (5 s): let that pass.
    await sleep(6_000);
    const audit = (await import(join(source, 'src/cli/audit.ts'))) as {
      why: (url: string, runId: string, now: Date) => Promise<{ text: string }>;
      snapshot: (url: string, options: { at?: string; position?: string }) => Promise<{ text: string }>;
    };
    const answers: CorpusAnswers = await recordAnswers({
      ask: (query, variables) => client.data(query, variables),
      url: `${base}/graphql`,
      why: (runId, now) => audit.why(`${base}/graphql`, runId, now).then((o) => o.text),
      snapshotText: (position) => audit.snapshot(`${base}/graphql`, { position }).then((o) => o.text),
      queries: CORPUS_QUERIES(has),
      features: has,
    });
    child.kill('SIGTERM');
    await new Promise((done) => child.once('exit', done));
    const sqlite = (await import(join(source, 'src/eventstore/sqlite.ts'))) as {
      openSqliteStore: (o: { path: string }) => {
        readAll: () => Promise<Array<Record<string, unknown>>>;
        close: () => Promise<void>;
      };
    };
    const store = sqlite.openSqliteStore({ path: join(dir, 'events.db') });
    const events: CorpusEvent[] = (await store.readAll()).map((e) => ({
      stream: String(e.stream),
      revision: String(e.revision),
      position: String(e.position),
      type: String(e.type),
      schemaVersion: Number(e.schemaVersion),
      data: e.data,
      actor: String(e.actor),
      at: String(e.at),
    }));
    await store.close();
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'events.json'), `${JSON.stringify(events, null, 2)}\n`);
    writeFileSync(join(out, 'answers.json'), `${JSON.stringify(answers, null, 2)}\n`);
    console.log(`${formatName}: ${events.length} events, ${answers.answers.length} answers -> ${out}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
