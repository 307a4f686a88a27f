/**
 * Several servers, one store (issue 5, points 4 and 5): three real `sluice serve` processes
 * on one SQLite file, driven at once through all of them. Afterwards the log is folded event
 * by event to show that no limit was ever exceeded at an admission, every server ends with
 * the same state, subscriptions on one server see decisions made on another, and servers
 * racing for the last free place never both take it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evolve } from '../../projections/evolve.js';
import { initialState, type RunRecord, type State } from '../../projections/state.js';
import { DEPLOYMENT_STREAM, toLoggedEvent } from '../../src/app/sluice.js';
import type { ConcurrencyConfig } from '../../src/domain/config.js';
import { runLimitsOf } from '../../src/domain/constraints.js';
import { isInProgress, type RunStatus } from '../../src/domain/run.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { RecordedEvent } from '../../src/eventstore/store.js';
import { type Json, observable, SseCollector, waitFor } from '../support/e2e-http.js';
import { prng } from '../support/prng.js';
import { type FieldAnswer, type ServerProcess, startServerProcess, stopAll } from '../support/server-process.js';

// ---------------------------------------------------------------------------------------------
// Documents

const RUN_ANSWER = '__typename ... on RunPayload { run { id status } } ... on Error { message }';
const ENQUEUE = `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { ${RUN_ANSWER} } }`;
const MARK_STARTED = `mutation($runId: ID!) { markRunStarted(runId: $runId) { ${RUN_ANSWER} } }`;
const MARK_FINISHED = `mutation($runId: ID!, $status: RunStatus!) {
  markRunFinished(runId: $runId, status: $status) { ${RUN_ANSWER} } }`;
const HEARTBEAT = `mutation($runId: ID!) { heartbeat(runId: $runId) { ${RUN_ANSWER} } }`;
const TERMINATE = `mutation($runId: ID!, $force: Boolean) { terminateRun(runId: $runId, force: $force) { ${RUN_ANSWER} } }`;
const CONFIG_ANSWER = '__typename ... on ConfigPayload { config { maxConcurrentRuns } } ... on Error { message }';
const SET_MAX = `mutation($limit: Int!) { setMaxConcurrentRuns(limit: $limit) { ${CONFIG_ANSWER} } }`;
const SET_TAGS = `mutation($limits: [TagConcurrencyLimitInput!]!) {
  setTagConcurrencyLimits(limits: $limits) { ${CONFIG_ANSWER} } }`;
const SET_RUN_GRANULARITY = `mutation { setPoolGranularity(granularity: RUN) { ${CONFIG_ANSWER} } }`;
const SET_DEFAULT_POOL = `mutation($limit: Int) { setDefaultPoolLimit(limit: $limit) { ${CONFIG_ANSWER} } }`;
const SET_POOL = `mutation($pool: String!, $limit: Int!) {
  setPoolLimit(pool: $pool, limit: $limit) { __typename ... on PoolPayload { pool { name limit } } ... on Error { message } } }`;
/**
 * How long a decision made on one server may take to reach another's subscriber before the test
 * calls it lost. Generous on purpose: this checks that it arrives, not how fast (see the bench).
 */
const STREAM_WITHIN_MS = 10_000;
const FINISHED_AS_FAILURE = (runId: string) => `run ${runId} already finished as FAILURE: nothing to terminate`;
const UNFINISHED = `{ runs(statuses: [QUEUED, STARTING, STARTED, CANCELING], first: 1000) { edges { node { id status } } } }`;
const IN_PROGRESS = `{ runs(statuses: [STARTING, STARTED, CANCELING], first: 1000) { edges { node { id status } } } }`;

const RANK: Record<RunStatus, number> = {
  QUEUED: 0,
  STARTING: 1,
  STARTED: 2,
  CANCELING: 3,
  SUCCESS: 4,
  FAILURE: 4,
  CANCELED: 4,
};
const FINAL = new Set<string>(['SUCCESS', 'FAILURE', 'CANCELED']);

// ---------------------------------------------------------------------------------------------
// The servers

const NAMES = ['A', 'B', 'C'] as const;
let dir = '';
let dbPath = '';
let servers: ServerProcess[] = [];

const server = (name: (typeof NAMES)[number]): ServerProcess => {
  const found = servers.find((s) => s.name === name);
  if (!found) throw new Error(`server ${name} did not start`);
  return found;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-several-'));
  dbPath = join(dir, 'events.db');
  // All three at once on a file nobody created yet: opening, WAL and the schema must cope.
  const started = await Promise.allSettled(
    NAMES.map((name) =>
      startServerProcess({ name, dbPath, checkpointPath: join(dir, `checkpoints-${name}.db`), readyTimeoutMs: 30_000 }),
    ),
  );
  servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}, 60_000);

afterAll(async () => {
  await stopAll(servers);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** A server's mutation answer that must be the payload, not an error. */
async function ok(s: ServerProcess, doc: string, variables?: Record<string, unknown>): Promise<FieldAnswer> {
  const answer = await s.field(doc, variables, `test/${s.name}`);
  if (!answer.__typename.endsWith('Payload')) {
    throw new Error(`server ${s.name}: ${answer.__typename}: ${answer.message} (${JSON.stringify(variables)})`);
  }
  return answer;
}

async function runsOf(s: ServerProcess, doc: string): Promise<Array<{ id: string; status: RunStatus }>> {
  return (await s.data(doc)).runs.edges.map((e: Json) => e.node);
}

// ---------------------------------------------------------------------------------------------
// The log, folded position by position

async function readLog(): Promise<RecordedEvent[]> {
  const store = openSqliteStore({ path: dbPath });
  try {
    return await store.readStream(DEPLOYMENT_STREAM);
  } finally {
    await store.close();
  }
}

interface Limit {
  kind: string;
  key: string | null;
  value: string | null;
  pool: string | null;
  limit: number;
}

/** The limits on a run, derived from the config here, independently of the decider's code. */
function limitsByHand(run: RunRecord, config: ConcurrencyConfig): Limit[] {
  const limits: Limit[] = [];
  if (config.maxConcurrentRuns >= 0) {
    limits.push({ kind: 'MAX_CONCURRENT_RUNS', key: null, value: null, pool: null, limit: config.maxConcurrentRuns });
  }
  for (const l of config.tagConcurrencyLimits) {
    const tag = run.tags.find((t) => t.key === l.key);
    if (!tag) continue;
    if (l.applyLimitPerUniqueValue)
      limits.push({ kind: 'TAG_LIMIT', key: l.key, value: tag.value, pool: null, limit: l.limit });
    else if (l.value === null) limits.push({ kind: 'TAG_LIMIT', key: l.key, value: null, pool: null, limit: l.limit });
    else if (l.value === tag.value)
      limits.push({ kind: 'TAG_LIMIT', key: l.key, value: l.value, pool: null, limit: l.limit });
  }
  if (config.poolGranularity === 'RUN') {
    for (const pool of run.pools) {
      const limit = config.poolLimits.get(pool) ?? config.defaultPoolLimit;
      if (limit !== null) limits.push({ kind: 'POOL_LIMIT', key: null, value: null, pool, limit });
    }
  }
  return limits;
}

/** Does an in-progress run count against a limit? Recounted from the runs, not the counts map. */
function countsAgainst(limit: Limit, other: RunRecord): boolean {
  switch (limit.kind) {
    case 'MAX_CONCURRENT_RUNS':
      return true;
    case 'TAG_LIMIT':
      return other.tags.some((t) => t.key === limit.key && (limit.value === null || t.value === limit.value));
    case 'POOL_LIMIT':
      return limit.pool !== null && other.pools.includes(limit.pool);
    default:
      return false;
  }
}

const describeLimit = (l: Limit) =>
  l.kind === 'MAX_CONCURRENT_RUNS'
    ? 'maxConcurrentRuns'
    : l.kind === 'POOL_LIMIT'
      ? `pool ${l.pool}`
      : `tag ${l.key}${l.value === null ? '' : `=${l.value}`}`;

interface LogCheck {
  state: State;
  events: RecordedEvent[];
  /** Every admission where a limit had no room just before it, and every illegal transition. */
  violations: string[];
  admissions: number;
  /** Admissions that took the last free place of some limit: the check had work to do. */
  tightAdmissions: number;
  blocked: number;
  /** Most runs in progress at once after each position from `from` on. */
  maxInProgressFrom: (from: number) => number;
}

/** Folds the whole log into a fresh state, checking each admission before it is folded. */
function checkLog(events: RecordedEvent[]): LogCheck {
  const state = initialState();
  const violations: string[] = [];
  const inProgressAfter: number[] = [];
  let admissions = 0;
  let tightAdmissions = 0;
  let blocked = 0;
  events.forEach((recorded, index) => {
    if (recorded.revision !== BigInt(index)) {
      violations.push(`position ${index} holds revision ${recorded.revision}: the revisions have a gap`);
    }
    const event = toLoggedEvent(recorded);
    const where = `position ${index} (${event.type} by ${recorded.actor})`;
    const runId = 'runId' in event.data ? event.data.runId : null;
    const run = runId === null ? undefined : state.runs.get(runId);
    const status = run?.status;
    switch (event.type) {
      case 'RunEnqueued':
        if (run) violations.push(`${where}: run ${runId} enqueued twice`);
        break;
      case 'RunAdmitted': {
        if (!run) {
          violations.push(`${where}: unknown run ${runId}`);
          break;
        }
        if (status !== 'QUEUED') violations.push(`${where}: run ${runId} admitted while ${status}`);
        admissions++;
        const inProgress = [...state.runs.values()].filter((r) => isInProgress(r.status));
        let tight = false;
        const found = new Set<string>();
        for (const limit of [...runLimitsOf(run, state.config), ...limitsByHand(run, state.config)]) {
          const inUse = inProgress.filter((other) => countsAgainst(limit, other)).length;
          if (inUse >= limit.limit) {
            found.add(
              `${where}: run ${runId} admitted while ${describeLimit(limit)} had ${inUse} of ${limit.limit} in progress`,
            );
          }
          if (inUse === limit.limit - 1) tight = true;
        }
        violations.push(...found);
        if (tight) tightAdmissions++;
        break;
      }
      case 'RunBlocked':
        blocked++;
        if (status !== 'QUEUED') violations.push(`${where}: run ${runId} held while ${status}`);
        break;
      case 'RunStarted':
        if (status !== 'STARTING') violations.push(`${where}: run ${runId} started while ${status}`);
        break;
      case 'RunCancellationRequested':
        if (status !== 'STARTING' && status !== 'STARTED') {
          violations.push(`${where}: run ${runId} cancellation requested while ${status}`);
        }
        break;
      case 'RunFinished':
        if (!status || FINAL.has(status)) violations.push(`${where}: run ${runId} finished while ${status}`);
        if (status === 'QUEUED' && event.data.status !== 'CANCELED') {
          violations.push(`${where}: queued run ${runId} finished as ${event.data.status}`);
        }
        break;
      default:
        break;
    }
    evolve(state, event);
    inProgressAfter.push(state.inProgress.size);
  });
  return {
    state,
    events,
    violations,
    admissions,
    tightAdmissions,
    blocked,
    maxInProgressFrom: (from) => Math.max(0, ...inProgressAfter.slice(from)),
  };
}

// ---------------------------------------------------------------------------------------------
// Randomness, seeded so a failing run can be replayed as far as the interleaving allows

const SEED = Number(process.env.SLUICE_E2E_SEED ?? Date.now() % 1_000_000);
const random = prng(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

// ---------------------------------------------------------------------------------------------

/** What one client sent, what it had seen of the run just before, and what came back. */
interface Outcome {
  worker: number;
  server: string;
  command: string;
  runId: string | null;
  /** The run's status as another server answered it just before the command was sent. */
  observed: RunStatus | null;
  typename: string;
  message: string | null;
  status: RunStatus | null;
}

const CLAIMED = /^run \S+ (?:is|already finished as) ([A-Z]+)\b/;

/**
 * Why a ConflictError is not a genuine one, or null when it is: the status it names must be
 * at least as late as what the client had already seen (anything else is a stale view), and
 * must be a status that forbids the command.
 */
function staleConflict(o: Outcome, finalStatus: RunStatus | undefined): string | null {
  const claimed = CLAIMED.exec(o.message ?? '')?.[1] as RunStatus | undefined;
  if (!claimed || !(claimed in RANK)) return `a ConflictError that names no status: ${o.message}`;
  if (o.observed && RANK[claimed] < RANK[o.observed]) {
    return `decided on a stale view: the run was already ${o.observed} before the command was sent, the server says ${claimed}`;
  }
  if (FINAL.has(claimed) && claimed !== finalStatus) return `names ${claimed}, but the run ended ${finalStatus}`;
  const forbids =
    o.command === 'heartbeat'
      ? FINAL.has(claimed)
      : o.command === 'markRunStarted'
        ? claimed !== 'STARTING' && claimed !== 'STARTED'
        : o.command.startsWith('markRunFinished')
          ? claimed === 'QUEUED' || (FINAL.has(claimed) && !o.command.endsWith(claimed))
          : FINAL.has(claimed);
  return forbids ? null : `${claimed} does not forbid ${o.command}`;
}

describe('three sluice serve processes on one SQLite file', () => {
  const outcomes: Outcome[] = [];
  const enqueued: string[] = [];

  it('a. given run, tag and pool limits set through one server, when several clients drive all three at once, then every command is decided and a ConflictError only ever names a state that forbids it', async () => {
    const [A, B, C] = [server('A'), server('B'), server('C')];
    await ok(A, SET_MAX, { limit: 3 });
    await ok(B, SET_TAGS, {
      limits: [
        { key: 'database', value: 'redshift', limit: 1 },
        { key: 'team', applyLimitPerUniqueValue: true, limit: 1 },
        { key: 'kind', limit: 2 },
      ],
    });
    await ok(C, SET_RUN_GRANULARITY);
    await ok(A, SET_POOL, { pool: 'db', limit: 1 });
    await ok(B, SET_POOL, { pool: 'gpu', limit: 2 });
    // Through another server right away: the edits are there.
    const seen = await C.data('{ concurrencyConfig { maxConcurrentRuns poolGranularity } pool(name: "db") { limit } }');
    expect(seen).toEqual({ concurrencyConfig: { maxConcurrentRuns: 3, poolGranularity: 'RUN' }, pool: { limit: 1 } });

    const WORKERS = 6;
    const OPS_PER_WORKER = 25;
    let seq = 0;

    const enqueue = async (w: number, s: ServerProcess) => {
      const runId = `run-${w}-${seq++}`;
      const tags: Array<{ key: string; value: string }> = [];
      if (random() < 0.4) tags.push({ key: 'database', value: pick(['redshift', 'postgres']) });
      if (random() < 0.5) tags.push({ key: 'team', value: pick(['red', 'blue', 'green']) });
      if (random() < 0.3) tags.push({ key: 'kind', value: pick(['etl', 'report']) });
      if (random() < 0.15) tags.push({ key: 'dagster/priority', value: String(pick([-1, 1, 3])) });
      const steps = random() < 0.5 ? [{ key: 'load', pool: pick(['db', 'gpu', 'scratch']) }] : [];
      const priority = random() < 0.2 ? pick([-2, 0, 2, 5]) : null;
      // Some runs' workers never send a heartbeat: a run monitor, on whichever server, fails them.
      const leaseSeconds = random() < 0.1 ? 1 : null;
      const input = { runId, jobName: 'job', tags, steps, priority, leaseSeconds };
      const answer = await s.field(ENQUEUE, { input }, `${s.name}/w${w}`);
      if (answer.__typename === 'RunPayload') enqueued.push(runId);
      return { command: 'enqueueRun', runId, observed: null, answer };
    };

    const runCommand = async (
      w: number,
      s: ServerProcess,
      command: string,
      runId: string,
      observed: RunStatus,
    ): Promise<{ command: string; runId: string; observed: RunStatus; answer: FieldAnswer }> => {
      const actor = `${s.name}/w${w}`;
      let answer: FieldAnswer;
      if (command === 'markRunStarted') answer = await s.field(MARK_STARTED, { runId }, actor);
      else if (command === 'heartbeat') answer = await s.field(HEARTBEAT, { runId }, actor);
      else if (command.startsWith('markRunFinished')) {
        answer = await s.field(MARK_FINISHED, { runId, status: command.split(':')[1] }, actor);
      } else answer = await s.field(TERMINATE, { runId, force: command === 'terminateRun:force' }, actor);
      return { command, runId, observed, answer };
    };

    const advance = async (w: number, s: ServerProcess, observer: ServerProcess) => {
      const running = await runsOf(observer, IN_PROGRESS);
      if (running.length === 0) return enqueue(w, s);
      const run = pick(running);
      let command: string;
      if (run.status !== 'CANCELING' && random() < 0.15) command = 'heartbeat';
      else if (run.status === 'STARTING') {
        command = random() < 0.6 ? 'markRunStarted' : `markRunFinished:${pick(['SUCCESS', 'FAILURE'])}`;
      } else if (run.status === 'STARTED') {
        command = random() < 0.2 ? 'terminateRun' : `markRunFinished:${pick(['SUCCESS', 'FAILURE'])}`;
      } else {
        command = random() < 0.7 ? 'markRunFinished:CANCELED' : 'terminateRun:force';
      }
      return runCommand(w, s, command, run.id, run.status);
    };

    const terminate = async (w: number, s: ServerProcess, observer: ServerProcess) => {
      const runId = pick(enqueued);
      const seen = (await observer.data('query($id: ID!) { run(id: $id) { status } }', { id: runId })).run;
      if (!seen) throw new Error(`server ${observer.name} does not know run ${runId}, acknowledged before`);
      return runCommand(w, s, random() < 0.5 ? 'terminateRun:force' : 'terminateRun', runId, seen.status);
    };

    const edit = async (w: number, s: ServerProcess) => {
      const actor = `${s.name}/w${w}`;
      const choice = random();
      let answer: FieldAnswer;
      if (choice < 0.4) answer = await s.field(SET_MAX, { limit: pick([1, 2, 3, 4, 5]) }, actor);
      else if (choice < 0.7) {
        answer = await s.field(
          SET_TAGS,
          {
            limits: [
              { key: 'database', value: 'redshift', limit: pick([0, 1, 2]) },
              { key: 'team', applyLimitPerUniqueValue: true, limit: pick([1, 2]) },
              { key: 'kind', limit: pick([1, 2, 3]) },
            ],
          },
          actor,
        );
      } else if (choice < 0.85)
        answer = await s.field(SET_POOL, { pool: pick(['db', 'gpu']), limit: pick([0, 1, 2]) }, actor);
      else answer = await s.field(SET_DEFAULT_POOL, { limit: pick([1, 2, null]) }, actor);
      return { command: 'limitEdit', runId: null, observed: null, answer };
    };

    const worker = async (w: number) => {
      for (let i = 0; i < OPS_PER_WORKER; i++) {
        const s = servers[(w + i) % servers.length] as ServerProcess;
        // Reads that pick a run come from another server than the one that gets the command.
        const observer = servers[(w + i + 1) % servers.length] as ServerProcess;
        const r = random();
        const result =
          r < 0.4 || enqueued.length < 3
            ? await enqueue(w, s)
            : r < 0.75
              ? await advance(w, s, observer)
              : r < 0.9
                ? await terminate(w, s, observer)
                : await edit(w, s);
        outcomes.push({
          worker: w,
          server: s.name,
          command: result.command,
          runId: result.runId,
          observed: result.observed,
          typename: result.answer.__typename,
          message: result.answer.message ?? null,
          status: result.answer.run?.status ?? null,
        });
      }
    };

    const startedAt = Date.now();
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    const elapsed = Date.now() - startedAt;

    const finalStatuses = new Map(
      (await runsOf(A, '{ runs(first: 1000) { edges { node { id status } } } }')).map((r) => [r.id, r.status]),
    );
    const problems: string[] = [];
    for (const o of outcomes) {
      const what = `${o.command}${o.runId ? ` ${o.runId}` : ''} on ${o.server} (worker ${o.worker}, seen ${o.observed})`;
      if (o.command === 'limitEdit' && o.typename !== 'ConfigPayload' && o.typename !== 'PoolPayload') {
        problems.push(`${what}: ${o.typename} ${o.message}`);
      } else if (o.command === 'enqueueRun' && o.typename !== 'RunPayload') {
        problems.push(`${what}: ${o.typename} ${o.message}`);
      } else if (o.typename === 'RunPayload' && o.observed && o.status && RANK[o.status] < RANK[o.observed]) {
        problems.push(`${what}: answered the run as ${o.status}, older than what was seen before`);
      } else if (o.typename === 'ConflictError') {
        const why = staleConflict(o, o.runId ? finalStatuses.get(o.runId) : undefined);
        if (why) problems.push(`${what}: ${why}`);
      } else if (o.typename !== 'RunPayload' && o.command !== 'limitEdit') {
        problems.push(`${what}: ${o.typename} ${o.message}`);
      }
    }
    const count = (pred: (o: Outcome) => boolean) => outcomes.filter(pred).length;
    console.log(
      `[several-servers] seed ${SEED}: ${outcomes.length} operations in ${elapsed} ms by ${WORKERS} clients; ` +
        `${count((o) => o.command === 'enqueueRun')} enqueues, ${count((o) => o.command.startsWith('mark'))} marks, ` +
        `${count((o) => o.command.startsWith('terminate'))} terminations, ${count((o) => o.command === 'limitEdit')} limit edits, ` +
        `${count((o) => o.typename === 'ConflictError')} genuine-looking conflicts`,
    );
    expect(problems, `seed ${SEED}`).toEqual([]);
    expect(outcomes).toHaveLength(WORKERS * OPS_PER_WORKER);
    // The load did what it was meant to: runs went all the way through, on every server.
    expect(count((o) => o.command.startsWith('markRunFinished') && o.typename === 'RunPayload')).toBeGreaterThan(5);
    expect(new Set(outcomes.map((o) => o.server))).toEqual(new Set(NAMES));
  }, 60_000);

  it('a. given a command acknowledged by one server, when the next command about the same run goes straight to another, then it is decided on a state that includes the first', async () => {
    const [A, B, C] = [server('A'), server('B'), server('C')];
    // No run limit, and a tag nobody may hold, so the runs below are admitted (or held) at once.
    await ok(A, SET_MAX, { limit: -1 });
    await ok(B, SET_TAGS, { limits: [{ key: 'hold', limit: 0 }] });
    const orders: ServerProcess[][] = [
      [A, B, C],
      [B, C, A],
      [C, A, B],
      [A, C, B],
      [C, B, A],
      [B, A, C],
    ];
    const failures: string[] = [];
    const expectStatus = (step: string, answer: FieldAnswer, status: RunStatus) => {
      if (answer.__typename !== 'RunPayload' || answer.run.status !== status) {
        failures.push(`${step}: expected ${status}, got ${answer.__typename} ${answer.message ?? answer.run?.status}`);
      }
    };
    for (let i = 0; i < 12; i++) {
      const [X, Y, Z] = orders[i % orders.length] as [ServerProcess, ServerProcess, ServerProcess];
      const runId = `fresh-${i}`;
      const at = (s: ServerProcess, what: string) => `${runId}: ${what} on ${s.name}`;
      expectStatus(at(X, 'enqueueRun'), await X.field(ENQUEUE, { input: { runId, jobName: 'fresh' } }), 'STARTING');
      // Y has never been asked about the run: it must not answer NotFound nor decide on an old view.
      expectStatus(at(Y, 'markRunStarted'), await Y.field(MARK_STARTED, { runId }), 'STARTED');
      if (i % 2 === 0) {
        expectStatus(at(Z, 'markRunFinished'), await Z.field(MARK_FINISHED, { runId, status: 'SUCCESS' }), 'SUCCESS');
      } else {
        expectStatus(at(Z, 'terminateRun'), await Z.field(TERMINATE, { runId }), 'CANCELING');
        expectStatus(at(X, 'markRunFinished'), await X.field(MARK_FINISHED, { runId, status: 'CANCELED' }), 'CANCELED');
      }
      // A read straight after, on the server that did not take the last command.
      const seen = (await Y.data('query($id: ID!) { run(id: $id) { status } }', { id: runId })).run;
      if (seen?.status !== (i % 2 === 0 ? 'SUCCESS' : 'CANCELED')) failures.push(`${at(Y, 'run')}: ${seen?.status}`);
      // Terminating a finished run is refused, naming how it ended: a genuine conflict.
      const again = await Y.field(TERMINATE, { runId, force: true });
      const ended = i % 2 === 0 ? 'SUCCESS' : 'CANCELED';
      if (again.__typename !== 'ConflictError' || !again.message?.includes(`already finished as ${ended}`)) {
        failures.push(`${at(Y, 'terminateRun')} after it ended: ${again.__typename} ${again.message ?? ''}`);
      }

      // A held run, enqueued on one server, terminated on another at once.
      const heldId = `held-${i}`;
      const held = await Z.field(ENQUEUE, {
        input: { runId: heldId, jobName: 'held', tags: [{ key: 'hold', value: 'x' }] },
      });
      expectStatus(`${heldId}: enqueueRun on ${Z.name}`, held, 'QUEUED');
      expectStatus(`${heldId}: terminateRun on ${X.name}`, await X.field(TERMINATE, { runId: heldId }), 'CANCELED');

      // A limit edit on one server, read and then edited again on another.
      await ok(X, SET_MAX, { limit: 100 + i });
      const read = (await Y.data('{ concurrencyConfig { maxConcurrentRuns } }')).concurrencyConfig.maxConcurrentRuns;
      if (read !== 100 + i) failures.push(`setMaxConcurrentRuns(${100 + i}) on ${X.name}, read on ${Y.name}: ${read}`);
      await ok(Z, SET_MAX, { limit: -1 });
    }
    expect(failures).toEqual([]);
  }, 30_000);

  it('b. given the log after the load, when it is folded event by event, then the revisions have no gap and no run was ever admitted without room under every limit', async () => {
    const events = await readLog();
    const check = checkLog(events);
    console.log(
      `[several-servers] log: ${events.length} events, ${check.admissions} admissions (${check.tightAdmissions} into a last free place), ${check.blocked} holds, ${events.filter((e) => e.actor === 'run-monitor').length} events by run monitors`,
    );
    expect(check.violations).toEqual([]);
    expect(events.map((e) => e.revision)).toEqual(events.map((_, i) => BigInt(i)));
    expect(check.admissions).toBeGreaterThan(10);
    expect(check.tightAdmissions).toBeGreaterThan(0);
    expect(check.blocked).toBeGreaterThan(0);
    // Every server wrote to the log.
    // Open mode: the actor is `anonymous (on behalf of A/w1)`, the note naming server and writer.
    const writers = new Set(events.map((e) => /on behalf of ([^/]+)\//.exec(e.actor)?.[1]));
    for (const name of NAMES) expect(writers).toContain(name);
  });

  it('c. given the load is over, when each server is asked, then all three show the same state, the one the log folds to', async () => {
    // Run monitors may still end runs whose lease ran out: compare at a moment the log stood still.
    const { view, state } = await waitFor(
      async () => {
        const length = (await readLog()).length;
        const all = await Promise.all(servers.map((s) => observable(s.gql)));
        const events = await readLog();
        if (events.length !== length) return null;
        const same = all.every((v) => JSON.stringify(v) === JSON.stringify(all[0]));
        return same ? { view: all[0] as Json, state: checkLog(events).state } : null;
      },
      'the three servers to show the same state',
      8_000,
      { intervalMs: 100 },
    ).catch(async (error: Error) => {
      const all = await Promise.all(servers.map((s) => observable(s.gql)));
      // Show the first difference through the assertion's diff.
      expect(all[1]).toEqual(all[0]);
      expect(all[2]).toEqual(all[0]);
      throw error;
    });
    expect(view.runs.map((r: Json) => [r.id, r.status])).toEqual(
      state.runIds.map((id) => [id, (state.runs.get(id) as RunRecord).status]),
    );
    expect(view.queue.map((r: Json) => r.id)).toEqual([...state.queue.inOrder()]);
    expect(view.decisions.map((d: Json) => d.position)).toEqual(state.decisions.map((d) => String(d.position)));
    expect(view.concurrencyConfig).toEqual({
      maxConcurrentRuns: state.config.maxConcurrentRuns,
      poolGranularity: state.config.poolGranularity,
      defaultPoolLimit: state.config.defaultPoolLimit,
      tagConcurrencyLimits: state.config.tagConcurrencyLimits,
    });
    const inProgress = (v: Json, pool: string) => v.pools.find((p: Json) => p.name === pool)?.inUse;
    for (const pool of ['db', 'gpu']) {
      const expected = [...state.runs.values()].filter((r) => isInProgress(r.status) && r.pools.includes(pool)).length;
      expect(inProgress(view, pool)).toBe(expected);
    }
  });

  it('d. given a subscription on C, when commands on A and B cause decisions, then C streams each within a moment, and its unfiltered stream misses and repeats nothing', async () => {
    const [A, B, C] = [server('A'), server('B'), server('C')];
    await ok(A, SET_MAX, { limit: -1 });
    const after = String((await readLog()).length - 1);
    const everything = new SseCollector(
      C.url,
      'subscription($after: String) { dequeueDecisions(after: $after) { position kind runId } }',
      {
        after,
      },
    );
    const collectors: SseCollector[] = [everything];
    const latencies: number[] = [];
    try {
      await everything.opened;
      expect(everything.status).toBe(200);
      for (let round = 0; round < 4; round++) {
        const origin = round % 2 === 0 ? A : B;
        const runId = `live-${round}`;
        const pool = `live-pool-${round}`;
        const sub = new SseCollector(
          C.url,
          'subscription($runId: ID) { dequeueDecisions(runId: $runId) { position kind runId } }',
          {
            runId,
          },
        );
        collectors.push(sub);
        await sub.opened;
        expect(sub.status).toBe(200);
        const kinds = () => sub.items.map((i: Json) => i.dequeueDecisions.kind);

        await ok(origin, SET_POOL, { pool, limit: 0 });
        const enqueued = await ok(origin, ENQUEUE, { input: { runId, jobName: 'live', steps: [{ key: 's', pool }] } });
        expect(enqueued.run.status).toBe('QUEUED');
        let t0 = Date.now();
        await waitFor(
          () => kinds().includes('BLOCKED'),
          `C to stream the hold of ${runId} decided on ${origin.name}`,
          STREAM_WITHIN_MS,
        );
        latencies.push(Date.now() - t0);

        // Now certainly live: the admission happens after the subscription delivered the hold.
        await ok(origin === A ? B : A, SET_POOL, { pool, limit: 1 });
        t0 = Date.now();
        await waitFor(() => kinds().includes('ADMITTED'), `C to stream the admission of ${runId}`, STREAM_WITHIN_MS);
        latencies.push(Date.now() - t0);
        expect(kinds()).toEqual(['BLOCKED', 'ADMITTED']);
        expect(sub.errors).toEqual([]);
      }
      // The unfiltered stream from `after`: exactly the decisions the log has after it, in order.
      const log = checkLog(await readLog());
      const expected = log.state.decisions.filter((d) => d.position > BigInt(after)).map((d) => String(d.position));
      await waitFor(
        () => everything.items.length >= expected.length,
        'the unfiltered subscription to catch up',
        STREAM_WITHIN_MS,
      );
      expect(everything.items.map((i: Json) => i.dequeueDecisions.position)).toEqual(expected);
      expect(everything.errors).toEqual([]);
    } finally {
      await Promise.all(collectors.map((c) => c.close()));
    }
    console.log(`[several-servers] decisions made on A/B streamed by C after ${latencies.join(', ')} ms`);
  }, 30_000);

  it('e. given maxConcurrentRuns 1 and nothing running, when servers race enqueues for the last free place, then exactly one run is ever admitted at a time', async () => {
    const [A, B, C] = [server('A'), server('B'), server('C')];
    // Admit nothing while clearing, then end every run that is not finished.
    await ok(A, SET_MAX, { limit: 0 });
    for (let pass = 0; pass < 5; pass++) {
      const open = await runsOf(B, UNFINISHED);
      if (open.length === 0) break;
      const answers = await Promise.all(
        open.map((run, i) =>
          (servers[i % servers.length] as ServerProcess).field(TERMINATE, { runId: run.id, force: true }),
        ),
      );
      // A run whose lease ran out may end as FAILURE instead: failed by a run monitor between
      // the listing and the terminate (a ConflictError then), or by the terminate itself, which
      // arrives after the deadline and so ends the run as the deadline says. Either is right,
      // provided the log shows the lease ended it.
      const endedByLease: string[] = [];
      answers.forEach((answer, i) => {
        const runId = (open[i] as { id: string }).id;
        const outcome = `${answer.__typename} ${answer.run?.status ?? answer.message}`;
        if (outcome === 'RunPayload FAILURE' || outcome === `ConflictError ${FINISHED_AS_FAILURE(runId)}`)
          endedByLease.push(runId);
        else expect(outcome, `terminating ${runId}`).toBe('RunPayload CANCELED');
      });
      if (endedByLease.length > 0) {
        const endings = new Map(
          (await readLog())
            .filter((e) => e.type === 'RunFinished')
            .map((e) => [(e.data as Json).runId, e.data as Json]),
        );
        for (const runId of endedByLease)
          expect(endings.get(runId), `how ${runId} ended`).toMatchObject({
            status: 'FAILURE',
            reason: expect.stringMatching(/^lease expired/),
          });
      }
    }
    expect(await runsOf(C, UNFINISHED)).toEqual([]);
    await ok(B, SET_TAGS, { limits: [] });
    await ok(C, SET_MAX, { limit: 1 });
    const from = (await readLog()).length;

    // Clean rounds: nothing running, one enqueue at each server at the same instant.
    for (let round = 0; round < 12; round++) {
      const answers = await Promise.all(
        servers.map((s) => s.field(ENQUEUE, { input: { runId: `race-${round}-${s.name}`, jobName: 'race' } })),
      );
      const statuses = answers.map((a) => `${a.__typename} ${a.run?.status ?? a.message}`).sort();
      expect(statuses, `round ${round}`).toEqual(['RunPayload QUEUED', 'RunPayload QUEUED', 'RunPayload STARTING']);
      const admitted = answers.find((a) => a.run.status === 'STARTING') as FieldAnswer;
      // Cancel the queued ones first, so ending the admitted one admits nobody.
      const queued = answers.filter((a) => a !== admitted);
      await Promise.all(
        queued.map((a, i) => ok(servers[(round + i) % 3] as ServerProcess, TERMINATE, { runId: a.run.id })),
      );
      const finished = await ok(servers[(round + 2) % 3] as ServerProcess, MARK_FINISHED, {
        runId: admitted.run.id,
        status: 'SUCCESS',
      });
      expect(finished.run.status).toBe('SUCCESS');
    }

    // Mixed rounds: enqueues on two servers race a finish (or a forced termination) on the third.
    let current: string | null = null;
    for (let round = 0; round < 12; round++) {
      const [X, Y, Z] = [servers[round % 3], servers[(round + 1) % 3], servers[(round + 2) % 3]] as ServerProcess[];
      const work: Array<Promise<FieldAnswer>> = [
        (X as ServerProcess).field(ENQUEUE, { input: { runId: `mixed-${round}-x`, jobName: 'race' } }),
        (Y as ServerProcess).field(ENQUEUE, { input: { runId: `mixed-${round}-y`, jobName: 'race' } }),
      ];
      if (current !== null) {
        work.push(
          round % 3 === 0
            ? (Z as ServerProcess).field(TERMINATE, { runId: current, force: true })
            : (Z as ServerProcess).field(MARK_FINISHED, { runId: current, status: 'SUCCESS' }),
        );
      }
      const answers = await Promise.all(work);
      for (const a of answers) expect(a.__typename, a.message).toBe('RunPayload');
      const now = await (Z as ServerProcess).data(`{ ${IN_PROGRESS.slice(1, -1)} queue { id } }`);
      const running = now.runs.edges.map((e: Json) => e.node.id);
      // Exactly one in progress: never two, and never none while runs wait.
      expect(running, `round ${round}`).toHaveLength(1);
      current = running[0];
    }
    const check = checkLog(await readLog());
    expect(check.violations).toEqual([]);
    expect(check.maxInProgressFrom(from)).toBe(1);
    const admissionsSince = check.events.slice(from).filter((e) => e.type === 'RunAdmitted').length;
    expect(admissionsSince).toBeGreaterThanOrEqual(12 + 12);
  }, 60_000);

  it('f. given the three servers busy, when a fourth starts on the same file, then it replays the log, follows it live, and ends with the same state', async () => {
    const [A, B, C] = [server('A'), server('B'), server('C')];
    await ok(A, SET_MAX, { limit: 2 });
    let writing = true;
    const writers = servers.map(async (s, w) => {
      let n = 0;
      while (writing && n < 200) {
        const runId = `late-${s.name}-${n++}`;
        await ok(s, ENQUEUE, {
          input: { runId, jobName: 'late', tags: [{ key: 'team', value: pick(['red', 'blue']) }] },
        });
        const running = await runsOf(servers[(w + 1) % servers.length] as ServerProcess, IN_PROGRESS);
        const victim = running[0];
        if (victim) {
          const answer = await s.field(MARK_FINISHED, { runId: victim.id, status: 'SUCCESS' });
          if (answer.__typename !== 'RunPayload' && !answer.message?.includes('already finished as')) {
            throw new Error(`${s.name}: markRunFinished ${victim.id}: ${answer.__typename} ${answer.message}`);
          }
        }
      }
    });
    let late: ServerProcess | null = null;
    try {
      late = await startServerProcess({ name: 'D', dbPath, checkpointPath: join(dir, 'checkpoints-D.db') });
      // A few more writes on the others once it serves, then stop writing.
      await new Promise((done) => setTimeout(done, 300));
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    const D = late;
    try {
      const everyone = [A, B, C, D];
      await waitFor(
        async () => {
          const length = (await readLog()).length;
          const all = await Promise.all(everyone.map((s) => observable(s.gql)));
          if ((await readLog()).length !== length) return false;
          return all.every((v) => JSON.stringify(v) === JSON.stringify(all[0]));
        },
        'the late server to show the same state as the others',
        8_000,
        { intervalMs: 100 },
      ).catch(async (error: Error) => {
        expect(await observable(D.gql)).toEqual(await observable(A.gql));
        throw error;
      });
      // It follows live: a decision made on A reaches D's own subscription.
      const sub = new SseCollector(D.url, 'subscription { dequeueDecisions(runId: "late-live") { kind } }');
      try {
        await sub.opened;
        await ok(A, SET_MAX, { limit: -1 });
        await ok(B, ENQUEUE, { input: { runId: 'late-live', jobName: 'late' } });
        await waitFor(() => sub.items.length > 0, 'D to stream the admission made on B', STREAM_WITHIN_MS);
        expect(sub.items.map((i: Json) => i.dequeueDecisions.kind)).toEqual(['ADMITTED']);
      } finally {
        await sub.close();
      }
      const check = checkLog(await readLog());
      expect(check.violations).toEqual([]);
    } finally {
      expect(await D.stop()).toBe(0);
    }
  }, 60_000);

  it('g. given the three servers, when each gets SIGTERM, then each exits 0', async () => {
    const codes = await stopAll(servers);
    for (const [i, code] of codes.entries()) {
      expect(code, (servers[i] as ServerProcess).describe()).toBe(0);
    }
  }, 30_000);
});
