/**
 * What the several-servers suites share, whatever the store: the documents they send, a random
 * load driven by concurrent clients through every server, and the check that folds the log
 * event by event to show that no run was ever admitted without room under every limit.
 */
import { expect } from 'vitest';
import { decisionOf } from '../../projections/decisions.js';
import { evolve } from '../../projections/evolve.js';
import { type Decision, initialState, type RunRecord, type State } from '../../projections/state.js';
import { toLoggedEvent } from '../../src/app/sluice.js';
import type { ConcurrencyConfig } from '../../src/domain/config.js';
import { runLimitsOf } from '../../src/domain/constraints.js';
import { isInProgress, type RunStatus } from '../../src/domain/run.js';
import type { RecordedEvent } from '../../src/eventstore/store.js';
import type { FieldAnswer, ServerProcess } from './server-process.js';

// ---------------------------------------------------------------------------------------------
// Documents

export const RUN_ANSWER = '__typename ... on RunPayload { run { id status } } ... on Error { message }';
export const ENQUEUE = `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { ${RUN_ANSWER} } }`;
export const MARK_STARTED = `mutation($runId: ID!) { markRunStarted(runId: $runId) { ${RUN_ANSWER} } }`;
export const MARK_FINISHED = `mutation($runId: ID!, $status: RunStatus!) {
  markRunFinished(runId: $runId, status: $status) { ${RUN_ANSWER} } }`;
export const HEARTBEAT = `mutation($runId: ID!) { heartbeat(runId: $runId) { ${RUN_ANSWER} } }`;
export const TERMINATE = `mutation($runId: ID!, $force: Boolean) { terminateRun(runId: $runId, force: $force) { ${RUN_ANSWER} } }`;
export const CONFIG_ANSWER =
  '__typename ... on ConfigPayload { config { maxConcurrentRuns } } ... on Error { message }';
export const SET_MAX = `mutation($limit: Int!) { setMaxConcurrentRuns(limit: $limit) { ${CONFIG_ANSWER} } }`;
export const SET_TAGS = `mutation($limits: [TagConcurrencyLimitInput!]!) {
  setTagConcurrencyLimits(limits: $limits) { ${CONFIG_ANSWER} } }`;
export const SET_RUN_GRANULARITY = `mutation { setPoolGranularity(granularity: RUN) { ${CONFIG_ANSWER} } }`;
export const SET_DEFAULT_POOL = `mutation($limit: Int) { setDefaultPoolLimit(limit: $limit) { ${CONFIG_ANSWER} } }`;
export const SET_POOL = `mutation($pool: String!, $limit: Int!) {
  setPoolLimit(pool: $pool, limit: $limit) { __typename ... on PoolPayload { pool { name limit } } ... on Error { message } } }`;
/**
 * How long a decision made on one server may take to reach another's subscriber before the test
 * calls it lost. Generous on purpose: this checks that it arrives, not how fast (see the bench).
 */
export const STREAM_WITHIN_MS = 10_000;
export const FINISHED_AS_FAILURE = (runId: string) => `run ${runId} already finished as FAILURE: nothing to terminate`;
export const UNFINISHED = `{ runs(statuses: [QUEUED, STARTING, STARTED, CANCELING], first: 1000) { edges { node { id status } } } }`;
export const IN_PROGRESS = `{ runs(statuses: [STARTING, STARTED, CANCELING], first: 1000) { edges { node { id status } } } }`;

export const RANK: Record<RunStatus, number> = {
  QUEUED: 0,
  STARTING: 1,
  STARTED: 2,
  CANCELING: 3,
  SUCCESS: 4,
  FAILURE: 4,
  CANCELED: 4,
};
export const FINAL = new Set<string>(['SUCCESS', 'FAILURE', 'CANCELED']);

/** A server's mutation answer that must be the payload, not an error. */
export async function ok(s: ServerProcess, doc: string, variables?: Record<string, unknown>): Promise<FieldAnswer> {
  const answer = await s.field(doc, variables, `test/${s.name}`);
  if (!answer.__typename.endsWith('Payload')) {
    throw new Error(`server ${s.name}: ${answer.__typename}: ${answer.message} (${JSON.stringify(variables)})`);
  }
  return answer;
}

export async function runsOf(s: ServerProcess, doc: string): Promise<Array<{ id: string; status: RunStatus }>> {
  return (await s.data(doc)).runs.edges.map((e: { node: { id: string; status: RunStatus } }) => e.node);
}

// ---------------------------------------------------------------------------------------------
// The log, folded position by position

export interface Limit {
  kind: string;
  key: string | null;
  value: string | null;
  pool: string | null;
  limit: number;
}

/** The limits on a run, derived from the config here, independently of the decider's code. */
export function limitsByHand(run: RunRecord, config: ConcurrencyConfig): Limit[] {
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
export function countsAgainst(limit: Limit, other: RunRecord): boolean {
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

export const describeLimit = (l: Limit) =>
  l.kind === 'MAX_CONCURRENT_RUNS'
    ? 'maxConcurrentRuns'
    : l.kind === 'POOL_LIMIT'
      ? `pool ${l.pool}`
      : `tag ${l.key}${l.value === null ? '' : `=${l.value}`}`;

export interface LogCheck {
  state: State;
  /** Every run in enqueue order, with its status at the end of the log. */
  runs: RunRecord[];
  decisions: Decision[];
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
export function checkLog(events: RecordedEvent[]): LogCheck {
  const state = initialState();
  // Every run of the log, finished ones included (the live state keeps only live ones).
  const runs = new Map<string, RunRecord>();
  const decisions: Decision[] = [];
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
    const run = runId === null ? undefined : runs.get(runId);
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
    if (event.type === 'RunEnqueued' && !run) runs.set(event.data.runId, state.runs.get(event.data.runId) as RunRecord);
    const decision = decisionOf(event);
    if (decision) decisions.push(decision);
    inProgressAfter.push(state.inProgress.size);
  });
  return {
    state,
    runs: [...runs.values()],
    decisions,
    events,
    violations,
    admissions,
    tightAdmissions,
    blocked,
    maxInProgressFrom: (from) => Math.max(0, ...inProgressAfter.slice(from)),
  };
}

// ---------------------------------------------------------------------------------------------

/** What one client sent, what it had seen of the run just before, and what came back. */
export interface Outcome {
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

export const CLAIMED = /^run \S+ (?:is|already finished as) ([A-Z]+)\b/;

/**
 * Why a ConflictError is not a genuine one, or null when it is: the status it names must be
 * at least as late as what the client had already seen (anything else is a stale view), and
 * must be a status that forbids the command.
 */
export function staleConflict(o: Outcome, finalStatus: RunStatus | undefined): string | null {
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

export interface RandomLoad {
  outcomes: Outcome[];
  /** Every answer that was not what a correct server may answer, in words. */
  problems: string[];
  elapsed: number;
  workers: number;
  opsPerWorker: number;
}

/**
 * Sets run, tag and pool limits through the servers, then has concurrent clients send random
 * commands (enqueue, start, finish, heartbeat, terminate, limit edits) round-robin through all
 * of them, each command about a run picked from what another server answered just before.
 */
export async function driveRandomLoad(servers: readonly ServerProcess[], random: () => number): Promise<RandomLoad> {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const outcomes: Outcome[] = [];
  const enqueued: string[] = [];
  const [A, B, C] = [0, 1, 2].map((i) => servers[i % servers.length] as ServerProcess) as [
    ServerProcess,
    ServerProcess,
    ServerProcess,
  ];
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
  return { outcomes, problems, elapsed, workers: WORKERS, opsPerWorker: OPS_PER_WORKER };
}
