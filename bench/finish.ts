/**
 * Sections 8 and 9: what one `markRunFinished` costs as the queue grows, under per-team tag
 * limits (maxConcurrentRuns 10, tag `team` limit 2 per unique value, 8 teams).
 *
 * 8: through the Sluice class on an SQLite file (synchronous FULL, checkpoints beside it, as the
 *    server runs): events and bytes appended per finish, and its time.
 * 9: through a real server (startServer, in this process): from sending markRunFinished over
 *    HTTP to a `dequeueDecisions` subscriber (over SSE) receiving the next ADMITTED decision.
 *
 * The queue is built by writing its runs straight into the log while maxConcurrentRuns is 0,
 * then one ChangeConcurrencyConfig command sets the limits: Sluice admits 10 and records what
 * holds every other run, as it would have run by run.
 */
import { join } from 'node:path';
import { Sluice } from '../src/app/sluice.js';
import { openCheckpointStore } from '../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import { startServer } from '../src/server.js';
import { DEFAULT_SETTINGS } from '../src/settings.js';
import { bytes, fmt, heading, load, note, now, size, sizes, stats, table, tempDir } from './harness.js';
import { appendAll, queuedRuns, TEAMS } from './logs.js';

const quiet = () => {};
const MAX_RUNS = 10;
const TEAM_LIMIT = 2;

interface Fixture {
  queued: number;
  path: string;
  checkpointPath: string;
  /** Runs in progress, oldest admitted first. */
  inProgress: string[];
}

const admittedIn = (events: ReadonlyArray<{ type: string; data: unknown }>) =>
  events.filter((e) => e.type === 'RunAdmitted').map((e) => (e.data as { runId: string }).runId);

/** A log with `queued` runs waiting behind 10 in progress, under per-team limits. */
async function buildQueue(dir: string, queued: number): Promise<Fixture> {
  const path = join(dir, `queue-${queued}.db`);
  const store = openSqliteStore({ path, synchronous: 'NORMAL' });
  const sluice = await Sluice.open({ store, warn: quiet });
  await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 0 }, 'bench');
  await appendAll(store, queuedRuns(queued + MAX_RUNS));
  const outcome = await sluice.execute(
    {
      type: 'ChangeConcurrencyConfig',
      change: {
        maxConcurrentRuns: MAX_RUNS,
        tagConcurrencyLimits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: TEAM_LIMIT }],
      },
    },
    'bench',
  );
  const inProgress = admittedIn(outcome.events);
  if (inProgress.length !== MAX_RUNS) throw new Error(`expected ${MAX_RUNS} runs admitted, got ${inProgress.length}`);
  // Started, as a launcher would: a run left STARTING is failed by the start timeout.
  for (const runId of inProgress) await sluice.execute({ type: 'MarkRunStarted', runId }, 'bench');
  await sluice.close();
  await store.close();
  return { queued, path, checkpointPath: join(dir, `queue-${queued}.checkpoints.db`), inProgress };
}

/** Bytes an event takes in the log: its type, data, actor and time as stored. */
const storedBytes = (e: { type: string; data: unknown; actor: string; at: string }) =>
  Buffer.byteLength(e.type) + Buffer.byteLength(JSON.stringify(e.data)) + Buffer.byteLength(e.actor) + e.at.length;

async function finishThroughSluice(f: Fixture, finishes: number) {
  const store = openSqliteStore({ path: f.path });
  const checkpoints = openCheckpointStore(f.checkpointPath);
  const t0 = now();
  const sluice = await Sluice.open({ store, checkpoints, warn: quiet });
  const openMs = now() - t0;
  // The steady state: after a start the history read model catches up in the background, in
  // steps of about 20 ms that a command may wait behind (a one-off after each start).
  await sluice.historyCaughtUp();
  const ms: number[] = [];
  const events: number[] = [];
  const byteCounts: number[] = [];
  let startsMs = 0;
  const w0 = now();
  for (let i = 0; i < finishes; i++) {
    const runId = f.inProgress.shift() as string;
    const c0 = now();
    const outcome = await sluice.execute({ type: 'MarkRunFinished', runId, status: 'SUCCESS' }, 'bench');
    ms.push(now() - c0);
    events.push(outcome.events.length);
    byteCounts.push(outcome.events.reduce((sum, e) => sum + storedBytes(e), 0));
    const s0 = now();
    for (const admitted of admittedIn(outcome.events)) {
      await sluice.execute({ type: 'MarkRunStarted', runId: admitted }, 'bench');
      f.inProgress.push(admitted);
    }
    startsMs += now() - s0;
    // Whatever the command left for later (a checkpoint) runs before the next one, as between
    // two requests to the server.
    await new Promise((done) => setImmediate(done));
  }
  const wallMs = now() - w0 - startsMs;
  await sluice.close();
  await store.close();
  checkpoints.close();
  return { openMs, ms, events, byteCounts, wallMs };
}

export async function finishEventsSection(fixtures: Fixture[], finishes: number): Promise<void> {
  heading('8. Events appended per markRunFinished as the queue grows (per-team tag limits), Sluice + SQLite FULL');
  note(`maxConcurrentRuns ${MAX_RUNS}, tag team limit ${TEAM_LIMIT} per unique value, ${TEAMS} teams, runs spread`);
  note(`over the teams in turn; ${finishes} finishes per size, oldest run in progress first, each admitting one`);
  note('queued run (which is then started, untimed). Checkpoint store beside the log, as the server keeps it;');
  note('timed once the history read model has caught up after the open.');
  note(`${load()} at start.`);
  console.log();
  const rows: Array<Array<string | number>> = [];
  for (const f of fixtures) {
    const r = await finishThroughSluice(f, finishes);
    const e = stats(r.events);
    const b = stats(r.byteCounts);
    const t = stats(r.ms);
    rows.push([
      f.queued.toLocaleString('en-US'),
      e.p50,
      e.max,
      bytes(b.p50),
      t.p50,
      t.p99,
      r.wallMs / finishes,
      fmt(r.openMs / 1000),
    ]);
  }
  table(
    ['queued', 'events p50', 'events max', 'bytes p50', 'ms p50', 'ms max', 'ms/finish incl. ckpt', 'open s'],
    rows,
  );
  note('bytes: type, data, actor and time of the appended events as stored. "incl. ckpt": wall time of the');
  note('finishes with the checkpoints they made due. "open": Sluice.open on the log, before the finishes.');
  note('Goal: events per finish flat, at most 10.');
}

// ---------------------------------------------------------------------------------------------

interface Seen {
  at: number;
  kind: string;
  runId: string;
}

/**
 * A `dequeueDecisions` subscriber over SSE that notes when each decision arrives. It resolves
 * once the response has started, which Yoga does only after the subscription is registered, so
 * no decision made after that can be missed.
 */
async function subscribe(url: string, onDecision: (seen: Seen) => void): Promise<{ close: () => Promise<void> }> {
  const abort = new AbortController();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query: 'subscription { dequeueDecisions { kind runId } }' }),
    signal: abort.signal,
  });
  if (response.status !== 200 || !response.body) throw new Error(`subscription refused: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const reading = (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const at = now();
        buffer += decoder.decode(value, { stream: true });
        for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5))
            .join('\n');
          if (!block.startsWith('event: next') || data === '') continue;
          const d = JSON.parse(data).data?.dequeueDecisions as { kind: string; runId: string } | undefined;
          if (d) onDecision({ at, kind: d.kind, runId: d.runId });
        }
      }
    } catch (error) {
      if (!abort.signal.aborted) console.warn(`  subscriber: ${(error as Error).message}`);
    }
  })();
  return {
    close: async () => {
      abort.abort();
      await reading;
    },
  };
}

/** Posts a run mutation that must answer a RunPayload. */
async function post(url: string, query: string, variables: Record<string, unknown>) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  if (response.status !== 200 || !text.includes('"RunPayload"')) throw new Error(`HTTP ${response.status}: ${text}`);
}

const FINISH = 'mutation($id: ID!) { markRunFinished(runId: $id, status: SUCCESS) { __typename } }';
const START = 'mutation($id: ID!) { markRunStarted(runId: $id) { __typename } }';

/** Waits until `check` holds, polling; fails after `timeoutMs`. */
async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = now() + timeoutMs;
  while (!check()) {
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 1));
  }
}

async function latencyOn(f: Fixture, finishes: number) {
  const server = await startServer(
    {
      ...DEFAULT_SETTINGS,
      port: 0,
      host: '127.0.0.1',
      eventStoreUrl: `sqlite:${f.path}`,
      checkpointPath: f.checkpointPath,
    },
    quiet,
  );
  // The steady state, as in section 8: the history has caught up after the start.
  await server.sluice.historyCaughtUp();
  const seen: Seen[] = [];
  const subscriber = await subscribe(server.url, (s) => seen.push(s));
  const latency: number[] = [];
  const perFinish: number[] = [];
  try {
    // The first finish warms the server's code paths up and is not counted.
    for (let i = -1; i < finishes; i++) {
      const runId = f.inProgress.shift() as string;
      const from = seen.length;
      const sent = now();
      let admittedAt = 0;
      const answered = post(server.url, FINISH, { id: runId });
      const admission = until(
        () => {
          const admitted = seen.slice(from).find((s) => s.kind === 'ADMITTED');
          if (admitted) admittedAt = admitted.at;
          return admitted !== undefined;
        },
        `the admission after finishing ${runId}`,
        120_000,
      );
      await answered;
      await admission;
      // The rest of the command's decisions arrive before the next finish is sent.
      let last = seen.length;
      let quietSince = now();
      await until(
        () => {
          if (seen.length !== last) {
            last = seen.length;
            quietSince = now();
          }
          return now() - quietSince > 100;
        },
        'the decisions to stop',
        60_000,
      );
      for (const s of seen.slice(from)) {
        if (s.kind !== 'ADMITTED') continue;
        await post(server.url, START, { id: s.runId });
        f.inProgress.push(s.runId);
      }
      if (i < 0) continue;
      latency.push(admittedAt - sent);
      perFinish.push(seen.length - from);
    }
  } finally {
    await subscriber.close();
    await server.close();
  }
  return { latency, perFinish };
}

export async function admissionLatencySection(fixtures: Fixture[], finishes: number): Promise<void> {
  heading('9. Finish-to-next-admission latency seen by a dequeueDecisions subscriber (real server, SSE)');
  note('From sending markRunFinished over HTTP to the subscriber receiving the ADMITTED decision it led to;');
  note(
    `same queues and limits as section 8, ${finishes} finishes each, server in this process, timed once its history has caught up. ${load()}.`,
  );
  console.log();
  const rows: Array<Array<string | number>> = [];
  const p50s: number[] = [];
  for (const f of fixtures) {
    const r = await latencyOn(f, finishes);
    const l = stats(r.latency);
    p50s.push(l.p50);
    rows.push([f.queued.toLocaleString('en-US'), l.p50, l.p99, l.max, stats(r.perFinish).p50]);
  }
  table(['queued', 'p50 ms', 'p99 ms', 'max ms', 'decisions pushed/finish'], rows);
  const first = fixtures[0];
  const last = fixtures.at(-1);
  if (first && last && first !== last) {
    note(
      `ratio p50 at ${last.queued.toLocaleString('en-US')} vs ${first.queued.toLocaleString('en-US')} queued: ` +
        `${fmt((p50s.at(-1) as number) / (p50s[0] as number))}× (goal: at most 1.5×)`,
    );
  }
}

/** Sections 8 and 9 share their queues: built once, finished through Sluice, then the server. */
export async function finishSections(events: boolean, latency: boolean): Promise<void> {
  const queueSizes = sizes('BENCH_FINISH_QUEUES', [100, 10_000, 100_000], 10);
  const finishes = size('BENCH_FINISHES', 10, 3);
  const dir = tempDir();
  const t0 = now();
  const fixtures: Fixture[] = [];
  for (const queued of queueSizes) fixtures.push(await buildQueue(dir, queued));
  const built = `queues of ${queueSizes.map((n) => n.toLocaleString('en-US')).join(' / ')} runs built in ${fmt((now() - t0) / 1000)} s`;
  if (events) {
    await finishEventsSection(fixtures, finishes);
    note(built);
  }
  if (latency) await admissionLatencySection(fixtures, finishes);
}
