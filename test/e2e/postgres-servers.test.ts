/**
 * Several servers on one PostgreSQL database: 2 and then 3 real `sluice serve`
 * processes on a fresh schema each, started at once (so they race the migration), driven by
 * concurrent clients with random commands through every server. Then the log is folded event by
 * event to show no limit was ever exceeded, every server shows the state the log folds to, and
 * servers racing for the last free place never both take it. Never skipped under CI=true.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Json, observable, waitFor } from '../support/e2e-http.js';
import {
  type PostgresServer,
  postgresUnavailableBecause,
  readPostgresLog,
  startPostgres,
} from '../support/postgres-cluster.js';
import { prng } from '../support/prng.js';
import { type ServerProcess, startServerProcess, stopAll } from '../support/server-process.js';
import {
  checkLog,
  driveRandomLoad,
  ENQUEUE,
  MARK_FINISHED,
  ok,
  runsOf,
  SET_MAX,
  SET_TAGS,
  TERMINATE,
  UNFINISHED,
} from '../support/several-servers.js';

const missing = postgresUnavailableBecause();
const runHere = missing === null || process.env.CI === 'true';
const SEED = Number(process.env.SLUICE_E2E_SEED ?? Date.now() % 1_000_000);

describe.skipIf(!runHere)('sluice serve processes on one PostgreSQL database', () => {
  let database: PostgresServer;
  let dir = '';

  beforeAll(async () => {
    database = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), 'sluice-pg-servers-'));
  }, 120_000);

  afterAll(async () => {
    await database?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  for (const count of [2, 3]) {
    describe(`${count} servers`, () => {
      const names = ['A', 'B', 'C'].slice(0, count);
      let url = '';
      let servers: ServerProcess[] = [];
      const readLog = () => readPostgresLog(url);

      beforeAll(async () => {
        url = database.newStoreUrl(`servers${count}`);
        const started = await Promise.allSettled(
          names.map((name) =>
            startServerProcess({
              name,
              eventStoreUrl: url,
              checkpointPath: join(dir, `checkpoints-${count}-${name}.db`),
              readyTimeoutMs: 90_000,
            }),
          ),
        );
        servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
        const failed = started.find((s) => s.status === 'rejected');
        if (failed) throw (failed as PromiseRejectedResult).reason;
      }, 120_000);

      afterAll(async () => {
        await stopAll(servers);
      }, 30_000);

      it('a. given limits set through one server, when concurrent clients send random commands through every server, then every answer is one a correct server may give', async () => {
        const seed = SEED + count;
        const load = await driveRandomLoad(servers, prng(seed));
        console.log(
          `[postgres-servers] ${count} servers, seed ${seed}: ${load.outcomes.length} operations in ${load.elapsed} ms`,
        );
        expect(load.problems, `seed ${seed}`).toEqual([]);
        expect(load.outcomes).toHaveLength(load.workers * load.opsPerWorker);
        expect(new Set(load.outcomes.map((o) => o.server))).toEqual(new Set(names));
      }, 120_000);

      it('b. given the log after the load, when folded event by event, then the revisions have no gap, no run was admitted without room, and every server wrote', async () => {
        const events = await readLog();
        const check = checkLog(events);

        expect(check.violations).toEqual([]);
        expect(events.map((e) => e.revision)).toEqual(events.map((_, i) => BigInt(i)));
        expect(check.admissions).toBeGreaterThan(10);
        expect(check.tightAdmissions).toBeGreaterThan(0);
        const writers = new Set(events.map((e) => /on behalf of ([^/]+)\//.exec(e.actor)?.[1]));
        for (const name of names) expect(writers).toContain(name);
      });

      it('c. given the load is over, when each server is asked, then all show the same state, the one the log folds to', async () => {
        const { view, state, log } = await waitFor(
          async () => {
            const length = (await readLog()).length;
            const all = await Promise.all(servers.map((s) => observable(s.gql)));
            const events = await readLog();
            if (events.length !== length) return null;
            const same = all.every((v) => JSON.stringify(v) === JSON.stringify(all[0]));
            return same ? { view: all[0] as Json, state: checkLog(events).state, log: checkLog(events) } : null;
          },
          'every server to show the same state',
          15_000,
          { intervalMs: 100 },
        ).catch(async (error: Error) => {
          const all = await Promise.all(servers.map((s) => observable(s.gql)));
          for (const other of all.slice(1)) expect(other).toEqual(all[0]);
          throw error;
        });
        expect(view.runs.map((r: Json) => [r.id, r.status])).toEqual(log.runs.map((run) => [run.id, run.status]));
        expect(view.queue.map((r: Json) => r.id)).toEqual([...state.queue.inOrder()]);
        expect(view.concurrencyConfig.maxConcurrentRuns).toBe(state.config.maxConcurrentRuns);
      }, 30_000);

      it('d. given maxConcurrentRuns 1 and nothing running, when every server enqueues at the same instant, then exactly one run is admitted each round', async () => {
        await ok(servers[0] as ServerProcess, SET_MAX, { limit: 0 });
        for (let pass = 0; pass < 5; pass++) {
          const open = await runsOf(servers[0] as ServerProcess, UNFINISHED);
          if (open.length === 0) break;
          // A run monitor may fail a run whose lease ran out meanwhile: either way it ends.
          await Promise.all(
            open.map((run, i) =>
              (servers[i % count] as ServerProcess).field(TERMINATE, { runId: run.id, force: true }),
            ),
          );
        }
        expect(await runsOf(servers[count - 1] as ServerProcess, UNFINISHED)).toEqual([]);
        await ok(servers[0] as ServerProcess, SET_TAGS, { limits: [] });
        await ok(servers[count - 1] as ServerProcess, SET_MAX, { limit: 1 });
        const from = (await readLog()).length;

        for (let round = 0; round < 10; round++) {
          const answers = await Promise.all(
            servers.map((s) =>
              s.field(ENQUEUE, { input: { runId: `race-${count}-${round}-${s.name}`, jobName: 'race' } }),
            ),
          );
          const statuses = answers.map((a) => `${a.__typename} ${a.run?.status ?? a.message}`).sort();
          expect(statuses, `round ${round}`).toEqual([
            ...Array.from({ length: count - 1 }, () => 'RunPayload QUEUED'),
            'RunPayload STARTING',
          ]);
          const admitted = answers.find((a) => a.run.status === 'STARTING');
          for (const [i, a] of answers.entries()) {
            if (a !== admitted) await ok(servers[(round + i) % count] as ServerProcess, TERMINATE, { runId: a.run.id });
          }
          await ok(servers[(round + 1) % count] as ServerProcess, MARK_FINISHED, {
            runId: admitted?.run.id,
            status: 'SUCCESS',
          });
        }
        const check = checkLog(await readLog());
        expect(check.violations).toEqual([]);
        expect(check.maxInProgressFrom(from)).toBe(1);
      }, 120_000);

      it('e. given the servers, when each gets SIGTERM, then each exits 0', async () => {
        const codes = await stopAll(servers);
        for (const [i, code] of codes.entries()) expect(code, (servers[i] as ServerProcess).describe()).toBe(0);
      }, 30_000);
    });
  }
});

if (!runHere) {
  describe('sluice serve processes on one PostgreSQL database', () => {
    it.skip(`skipped: ${missing}`, () => {});
  });
}
