/**
 * The soak: several real servers on one PostgreSQL store and one on a SQLite file, under a mixed
 * load (enqueue, start, step-slot claims and releases, heartbeat, finish, terminate, limit edits,
 * subscribers that come and go),
 * one server killed with -9 every so often and started again. At the end every store is read by
 * `sluice verify`, and every command a server acknowledged is looked for in its log.
 * `npm run soak -- --minutes N` runs it by hand; test/e2e/soak.test.ts runs a short one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openEventStore } from '../../src/eventstore/open.js';
import type { EventStore, RecordedEvent } from '../../src/eventstore/store.js';
import { describeReport, type VerifyReport, verifyLog } from '../../src/verify/verify.js';
import { SseCollector, tempDir } from './e2e-http.js';
import { startPostgres } from './postgres-cluster.js';
import { prng } from './prng.js';
import { type ServerProcess, startServerProcess } from './server-process.js';

export interface SoakOptions {
  minutes: number;
  /** Servers sharing the PostgreSQL store; default 3. */
  postgresServers?: number;
  /** Seconds between kills; default 180. */
  killEverySeconds?: number;
  /** Concurrent clients per server; default 4. */
  clientsPerServer?: number;
  seed?: number;
  log?: (line: string) => void;
}

interface Acked {
  kind: 'enqueue' | 'start' | 'finish' | 'terminate' | 'max' | 'pool' | 'claim' | 'release';
  runId: string | null;
  value?: string | number;
}

interface Slot {
  name: string;
  storeUrl: string;
  dbPath?: string;
  server: ServerProcess | null;
  port: number | null;
  acked: Acked[];
  /** Runs this slot's clients enqueued and have not seen end, by what they last saw of them. */
  runs: Map<string, KnownRun>;
}

interface KnownRun {
  status: string;
  /** Half the runs have a step in pool `db`, claimed and released while the run is STARTED. */
  pooled: boolean;
  claim: 'none' | 'pending' | 'granted' | 'released';
}

/** Each client keeps its server's runs at about this many, so that the queue stays bounded and runs move on. */
const KNOWN_RUNS = 60;
/** The pool the runs' steps claim slots of. */
const POOL = 'db';

export interface ProcessFigures {
  name: string;
  rssMiB: number;
  openFiles: number;
}

export interface SoakResult {
  commands: number;
  acknowledged: number;
  refused: number;
  /** What the refused or cut commands answered: an error code, an error type, or CUT (no answer). */
  refusedBy: Record<string, number>;
  kills: number;
  subscribers: number;
  start: ProcessFigures[];
  end: ProcessFigures[];
  verify: Array<{ store: string; report: VerifyReport }>;
  /** Acknowledged commands not found in their log. */
  lost: string[];
  ok: boolean;
}

const RUN = '__typename ... on RunPayload { run { id status } } ... on Error { message }';
const DOCS = {
  enqueue: `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { ${RUN} } }`,
  start: `mutation($runId: ID!) { markRunStarted(runId: $runId) { ${RUN} } }`,
  heartbeat: `mutation($runId: ID!) { heartbeat(runId: $runId) { ${RUN} } }`,
  finish: `mutation($runId: ID!, $status: RunStatus!) { markRunFinished(runId: $runId, status: $status) { ${RUN} } }`,
  terminate: `mutation($runId: ID!) { terminateRun(runId: $runId, force: true) { ${RUN} } }`,
  max: `mutation($limit: Int!) { setMaxConcurrentRuns(limit: $limit) { __typename ... on Error { message } } }`,
  pool: `mutation($pool: String!, $limit: Int!) { setPoolLimit(pool: $pool, limit: $limit) { __typename ... on Error { message } } }`,
  claim: `mutation($runId: ID!, $stepKey: String!) { claimStepSlot(runId: $runId, stepKey: $stepKey) { __typename ... on StepSlotPayload { claim { granted } } ... on Error { message } } }`,
  release: `mutation($runId: ID!, $stepKey: String!) { releaseStepSlot(runId: $runId, stepKey: $stepKey) { __typename ... on StepSlotPayload { claim { granted } } ... on Error { message } } }`,
};

function figuresOf(name: string, pid: number | undefined): ProcessFigures | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
    return { name, rssMiB: Math.round(rss * 10) / 10, openFiles: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return null;
  }
}

async function readLog(url: string): Promise<{ events: RecordedEvent[]; store: EventStore }> {
  const store = await openEventStore(url, { readonly: true });
  const events: RecordedEvent[] = [];
  let after: bigint | undefined;
  for (;;) {
    const page = await store.readAll({ afterPosition: after, maxCount: 5_000 });
    events.push(...page);
    if (page.length < 5_000) return { events, store };
    after = page.at(-1)?.position;
  }
}

/** Every acknowledged command of a slot that its log does not hold. */
function lostOf(slot: Slot, events: RecordedEvent[]): string[] {
  const seen = new Set<string>();
  for (const e of events) {
    const data = e.data as { runId?: string; status?: string; limit?: number };
    if (e.type === 'RunEnqueued') seen.add(`enqueue ${data.runId}`);
    if (e.type === 'RunStarted') seen.add(`start ${data.runId}`);
    if (e.type === 'RunFinished') {
      seen.add(`finish ${data.runId} ${data.status}`);
      seen.add(`terminate ${data.runId}`);
    }
    if (e.type === 'RunCancellationRequested') seen.add(`terminate ${data.runId}`);
    if (e.type === 'MaxConcurrentRunsSet') seen.add(`max null ${data.limit}`);
    if (e.type === 'PoolLimitSet') seen.add(`pool null ${data.limit}`);
    if (e.type === 'StepSlotGranted' || e.type === 'StepSlotPending') seen.add(`claim ${data.runId}`);
    if (e.type === 'StepSlotReleased') seen.add(`release ${data.runId}`);
  }
  const lost: string[] = [];
  for (const a of slot.acked) {
    const key =
      a.kind === 'finish'
        ? `finish ${a.runId} ${a.value}`
        : a.kind === 'max' || a.kind === 'pool'
          ? `${a.kind} null ${a.value}`
          : `${a.kind} ${a.runId}`;
    if (!seen.has(key)) lost.push(`${slot.name}: ${key}`);
  }
  return lost;
}

export async function soak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? console.log;
  const seed = options.seed ?? Date.now() % 1_000_000;
  log(`soak: seed ${seed}, ${options.minutes} min`);
  const random = prng(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const dir = tempDir('sluice-soak-');
  const postgres = await startPostgres({ durable: true });
  const pgUrl = postgres.newStoreUrl('soak');
  const slots: Slot[] = [];
  for (let i = 0; i < (options.postgresServers ?? 3); i++) {
    slots.push({ name: `pg-${i}`, storeUrl: pgUrl, server: null, port: null, acked: [], runs: new Map() });
  }
  const dbPath = join(dir.path, 'events.db');
  slots.push({
    name: 'sqlite',
    storeUrl: `sqlite:${dbPath}`,
    dbPath,
    server: null,
    port: null,
    acked: [],
    runs: new Map(),
  });
  const result: SoakResult = {
    commands: 0,
    acknowledged: 0,
    refused: 0,
    refusedBy: {},
    kills: 0,
    subscribers: 0,
    start: [],
    end: [],
    verify: [],
    lost: [],
    ok: false,
  };
  const boot = async (slot: Slot) => {
    slot.server = await startServerProcess({
      name: slot.name,
      eventStoreUrl: slot.storeUrl,
      checkpointPath: join(dir.path, `${slot.name}.checkpoints.db`),
      env: { HISTORY_PATH: join(dir.path, `${slot.name}.history.db`), LOG_LEVEL: 'warn' },
      ...(slot.port === null ? {} : { port: slot.port }),
      readyTimeoutMs: 60_000,
    });
    slot.port = slot.server.port;
  };
  try {
    for (const slot of slots) await boot(slot);
    result.start = slots.flatMap((s) => figuresOf(s.name, s.server?.child.pid) ?? []);
    const until = Date.now() + options.minutes * 60_000;
    let counter = 0;

    const refused = (why: string) => {
      result.refused++;
      result.refusedBy[why] = (result.refusedBy[why] ?? 0) + 1;
    };

    /** Sends a command; its answer's field when acknowledged, else null. */
    const command = async (
      slot: Slot,
      doc: string,
      variables: Record<string, unknown>,
    ): Promise<{ __typename: string; run?: { status: string }; claim?: { granted: boolean } } | null> => {
      const server = slot.server;
      if (!server) return null;
      result.commands++;
      try {
        const answer = await server.answer(doc, variables, `soak/${slot.name}`);
        const field = answer.body.data
          ? (Object.values(answer.body.data)[0] as { __typename: string; run?: { status: string } })
          : null;
        if (!field || answer.body.errors?.length || !field.__typename.endsWith('Payload')) {
          refused(String(answer.body.errors?.[0]?.extensions?.code ?? field?.__typename ?? 'NO_DATA'));
          return null;
        }
        result.acknowledged++;
        return field;
      } catch {
        // The server died under the request (a kill) or refused the connection.
        refused('CUT');
        return null;
      }
    };

    /** What the server says of a run now; forgets it once it has ended. */
    const refresh = async (slot: Slot, runId: string, run: KnownRun) => {
      const data = await slot.server?.answer(`{ run(id: "${runId}") { status } }`).catch(() => null);
      const now = data?.body.data?.run?.status as string | undefined;
      if (now && ['SUCCESS', 'FAILURE', 'CANCELED'].includes(now)) slot.runs.delete(runId);
      else if (now) run.status = now;
    };

    const enqueue = async (slot: Slot) => {
      const runId = `${slot.name}-${counter++}`;
      const pooled = random() < 0.5;
      const input = {
        runId,
        jobName: pooled ? 'soak-db' : 'soak',
        tags: [{ key: 'team', value: pick(['a', 'b', 'c']) }],
        steps: pooled ? [{ key: 'load', pool: POOL }] : [],
        leaseSeconds: 60,
      };
      const answer = await command(slot, DOCS.enqueue, { input });
      if (answer?.run) {
        slot.acked.push({ kind: 'enqueue', runId });
        slot.runs.set(runId, { status: answer.run.status, pooled, claim: 'none' });
      }
    };

    /** The next step of a run in progress: start it, claim and release its step's slot, beat, finish. */
    const advance = async (slot: Slot, runId: string, run: KnownRun) => {
      const acked = (kind: Acked['kind'], value?: string) => slot.acked.push({ kind, runId, value });
      if (run.status === 'STARTING') {
        if (await command(slot, DOCS.start, { runId })) {
          acked('start');
          run.status = 'STARTED';
        } else await refresh(slot, runId, run);
        return;
      }
      const step = { runId, stepKey: 'load' };
      if (run.pooled && (run.claim === 'none' || run.claim === 'pending')) {
        // A claim that waits is made again later: it keeps its place in the pool's line.
        const answer = await command(slot, DOCS.claim, step);
        if (!answer) return refresh(slot, runId, run);
        if (run.claim === 'none') acked('claim');
        run.claim = answer.claim?.granted ? 'granted' : 'pending';
        return;
      }
      if (run.claim === 'granted' && random() < 0.6) {
        if (await command(slot, DOCS.release, step)) {
          acked('release');
          run.claim = 'released';
        } else await refresh(slot, runId, run);
        return;
      }
      if (random() < 0.3) {
        if (!(await command(slot, DOCS.heartbeat, { runId }))) await refresh(slot, runId, run);
        return;
      }
      const final = pick(['SUCCESS', 'FAILURE']);
      if (await command(slot, DOCS.finish, { runId, status: final })) acked('finish', final);
      slot.runs.delete(runId);
    };

    const client = async (slot: Slot) => {
      while (Date.now() < until) {
        if (!slot.server) {
          // Killed and starting again: wait for it (a loop of settled promises would starve the timers).
          await new Promise((done) => setTimeout(done, 200));
          continue;
        }
        const roll = random();
        const known = [...slot.runs.entries()];
        const inProgress = known.filter(([, run]) => run.status === 'STARTING' || run.status === 'STARTED');
        if (roll < 0.02) {
          const limit = 3 + Math.floor(random() * 8);
          if (await command(slot, DOCS.max, { limit })) slot.acked.push({ kind: 'max', runId: null, value: limit });
        } else if (roll < 0.04) {
          const limit = 1 + Math.floor(random() * 3);
          if (await command(slot, DOCS.pool, { pool: POOL, limit }))
            slot.acked.push({ kind: 'pool', runId: null, value: limit });
        } else if (known.length === 0 || (roll < 0.35 && known.length < KNOWN_RUNS)) {
          await enqueue(slot);
        } else if (inProgress.length > 0 && roll < 0.85) {
          const [runId, run] = pick(inProgress);
          await advance(slot, runId, run);
        } else {
          const [runId, run] = pick(known);
          if (run.status === 'QUEUED' && random() < 0.1) {
            if (await command(slot, DOCS.terminate, { runId })) slot.acked.push({ kind: 'terminate', runId });
            slot.runs.delete(runId);
          } else await refresh(slot, runId, run);
        }
      }
    };

    const subscribers = async () => {
      while (Date.now() < until) {
        const slot = pick(slots);
        if (slot.server) {
          const subscriber = new SseCollector(
            slot.server.url,
            'subscription { dequeueDecisions { position kind runId } }',
          );
          result.subscribers++;
          await new Promise((done) => setTimeout(done, 1_000 + random() * 4_000));
          await subscriber.close().catch(() => {});
        } else await new Promise((done) => setTimeout(done, 500));
      }
    };

    const killer = async () => {
      const every = (options.killEverySeconds ?? 180) * 1000;
      let next = Date.now() + every;
      while (Date.now() < until) {
        await new Promise((done) => setTimeout(done, Math.max(0, Math.min(next, until) - Date.now())));
        if (Date.now() >= until) return;
        const slot = pick(slots);
        const server = slot.server;
        if (server) {
          slot.server = null;
          server.child.kill('SIGKILL');
          await server.stop(5_000).catch(() => {});
          result.kills++;
          log(`soak: killed ${slot.name} with -9`);
          await boot(slot);
        }
        next = Date.now() + every;
      }
    };

    await Promise.all([
      ...slots.flatMap((slot) => Array.from({ length: options.clientsPerServer ?? 4 }, () => client(slot))),
      subscribers(),
      subscribers(),
      killer(),
    ]);
    result.end = slots.flatMap((s) => figuresOf(s.name, s.server?.child.pid) ?? []);
    for (const slot of slots) {
      await slot.server?.stop();
      slot.server = null;
    }
    for (const url of [pgUrl, `sqlite:${dbPath}`]) {
      const { events, store } = await readLog(url);
      try {
        const report = await verifyLog(store, { gaplessPositions: url.startsWith('sqlite:') });
        result.verify.push({ store: store.description, report });
        log(describeReport(store.description, report));
        for (const slot of slots.filter((s) => s.storeUrl === url)) result.lost.push(...lostOf(slot, events));
      } finally {
        await store.close();
      }
    }
    result.ok = result.lost.length === 0 && result.verify.every((v) => v.report.ok);
    log(
      `soak: ${result.commands} commands (${result.acknowledged} acknowledged, ${result.refused} refused or cut), ${result.kills} kills, ${result.subscribers} subscribers, ${result.lost.length} acknowledged commands missing from the log`,
    );
    log(`soak: refused or cut, by answer: ${JSON.stringify(result.refusedBy)}`);
    for (const [when, figures] of [
      ['start', result.start],
      ['end', result.end],
    ] as const) {
      log(`soak: at the ${when}: ${figures.map((f) => `${f.name} ${f.rssMiB} MiB, ${f.openFiles} files`).join('; ')}`);
    }
    for (const line of result.lost.slice(0, 20)) log(`soak: LOST ${line}`);
    return result;
  } finally {
    for (const slot of slots) await slot.server?.stop().catch(() => {});
    await postgres.destroy();
    dir.remove();
  }
}
