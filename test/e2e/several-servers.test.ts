/**
 * Several servers, one store: three real `sluice serve` processes
 * on one SQLite file, driven at once through all of them. Afterwards the log is folded event
 * by event to show that no limit was ever exceeded at an admission, every server ends with
 * the same state, subscriptions on one server see decisions made on another, and servers
 * racing for the last free place never both take it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { isInProgress, type RunStatus } from '../../src/domain/run.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { RecordedEvent } from '../../src/eventstore/store.js';
import { type Json, observable, SseCollector, waitFor } from '../support/e2e-http.js';
import { prng } from '../support/prng.js';
import { type FieldAnswer, type ServerProcess, startServerProcess, stopAll } from '../support/server-process.js';
import {
  checkLog,
  driveRandomLoad,
  ENQUEUE,
  FINISHED_AS_FAILURE,
  IN_PROGRESS,
  MARK_FINISHED,
  MARK_STARTED,
  type Outcome,
  ok,
  runsOf,
  SET_MAX,
  SET_POOL,
  SET_TAGS,
  STREAM_WITHIN_MS,
  TERMINATE,
  UNFINISHED,
} from '../support/several-servers.js';

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
      startServerProcess({ name, dbPath, checkpointPath: join(dir, `checkpoints-${name}.db`), readyTimeoutMs: 90_000 }),
    ),
  );
  servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}, 120_000);

afterAll(async () => {
  await stopAll(servers);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

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

// ---------------------------------------------------------------------------------------------
// Randomness, seeded so a failing run can be replayed as far as the interleaving allows

const SEED = Number(process.env.SLUICE_E2E_SEED ?? Date.now() % 1_000_000);
const random = prng(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

describe('three sluice serve processes on one SQLite file', () => {
  it('a. given run, tag and pool limits set through one server, when several clients drive all three at once, then every command is decided and a ConflictError only ever names a state that forbids it', async () => {
    const {
      outcomes,
      problems,
      elapsed,
      workers: WORKERS,
      opsPerWorker: OPS_PER_WORKER,
    } = await driveRandomLoad(servers, random);
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
    const { view, state, log } = await waitFor(
      async () => {
        const length = (await readLog()).length;
        const all = await Promise.all(servers.map((s) => observable(s.gql)));
        const events = await readLog();
        if (events.length !== length) return null;
        const same = all.every((v) => JSON.stringify(v) === JSON.stringify(all[0]));
        return same ? { view: all[0] as Json, state: checkLog(events).state, log: checkLog(events) } : null;
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
    expect(view.runs.map((r: Json) => [r.id, r.status])).toEqual(log.runs.map((run) => [run.id, run.status]));
    expect(view.queue.map((r: Json) => r.id)).toEqual([...state.queue.inOrder()]);
    expect(view.decisions.map((d: Json) => d.position)).toEqual(log.decisions.map((d) => String(d.position)));
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
      const expected = log.decisions.filter((d) => d.position > BigInt(after)).map((d) => String(d.position));
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
      late = await startServerProcess({
        name: 'D',
        dbPath,
        checkpointPath: join(dir, 'checkpoints-D.db'),
        readyTimeoutMs: 90_000,
      });
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
  }, 150_000);

  it('g. given the three servers, when each gets SIGTERM, then each exits 0', async () => {
    const codes = await stopAll(servers);
    for (const [i, code] of codes.entries()) {
      expect(code, (servers[i] as ServerProcess).describe()).toBe(0);
    }
  }, 30_000);
});
