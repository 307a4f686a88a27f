/**
 * Commands naming their own run ids while the history read model catches up after a start.
 * Dagster's enqueues choose their run ids, and such an id may be a run only the history knows;
 * the history as far as it goes and the runs enqueued in the log after it tell at once whether
 * it is one. So a new id, a finished run the history holds, and a finished run it has not reached
 * yet are each answered before the history has caught up, with the answer given after it has.
 *
 * The history file here is the real one, held behind by a fault: its writes fail (as when
 * another server holds the file) until the test lets them through.
 */
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import type { Command } from '../../src/domain/commands.js';
import { StoreUnavailableError } from '../../src/eventstore/errors.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { type HistoryStore, openHistoryStore } from '../../src/history/history-store.js';
import { createSluiceYoga } from '../../src/server.js';
import { Gql, type Json, tempDir } from '../support/e2e-http.js';

/** The fields the Python client (and so Dagster's coordinator) asks of an enqueued run. */
const REASON = 'kind message limit inUse pool key value perUniqueValue';
const CLAIM = `runId stepKey pool granted released queuePosition retryAfterSeconds reasons { ${REASON} }`;
const RUN = `id jobName status priority tags { key value } steps { key pool priority } pools
  enqueuedAt admittedAt startedAt finishedAt cancelRequestedAt lastHeartbeatAt finishReason failureReason
  leaseSeconds maxConcurrentSteps blockedBy { ${REASON} } ignoredTags { key reason }
  stepClaims { ${CLAIM} } deadline { at reason status }`;
const RUN_RESULT = `{ __typename ... on RunPayload { run { ${RUN} } } ... on Error { message } }`;

/** More finished runs than the live state remembers (1,000): the first ones only the history knows. */
const RUNS = 1_200;

let template: ReturnType<typeof tempDir>;
let clockMs = Date.parse('2026-11-01T00:00:00.000Z');
const clock = () => new Date((clockMs += 1000));

async function openOn(logPath: string, history: HistoryStore, historyWaitMs?: number) {
  const store = openSqliteStore({ path: logPath });
  const sluice = await Sluice.open({ store, history, clock, historyWaitMs, info: () => {}, warn: () => {} });
  return { sluice, close: () => sluice.close().then(() => store.close()) };
}

async function finishRuns(sluice: Sluice, prefix: string): Promise<void> {
  const ids = Array.from({ length: RUNS }, (_, i) => `${prefix}${i}`);
  const all = (commands: Command[]) => Promise.all(commands.map((command) => sluice.execute(command, 'test')));
  await all(ids.map((runId): Command => ({ type: 'EnqueueRun', input: { runId, jobName: 'j' } })));
  await all(ids.map((runId): Command => ({ type: 'MarkRunFinished', runId, status: 'SUCCESS' })));
}

/**
 * A log whose history file holds the runs `early*` and not the runs `late*`, written after it
 * by a server that kept its history elsewhere.
 */
beforeAll(async () => {
  template = tempDir('sluice-behind-template-');
  const logPath = join(template.path, 'events.db');
  const first = await openOn(logPath, openHistoryStore(join(template.path, 'history.db')));
  await first.sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 5_000 }, 'test');
  await finishRuns(first.sluice, 'early');
  await first.close();
  const second = await openOn(logPath, openHistoryStore(':memory:'));
  await finishRuns(second.sluice, 'late');
  await second.close();
}, 120_000);
afterAll(() => template?.remove());

/** The real history file, whose writes fail while `held`. */
function heldHistory(path: string): { history: HistoryStore; release: () => void } {
  const real = openHistoryStore(path);
  let held = true;
  const history = new Proxy(real, {
    get(target, property) {
      if (property === 'apply' && held) {
        return () => {
          throw new StoreUnavailableError('history: cannot record events: database is locked (held by the test)');
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { history, release: () => (held = false) };
}

describe('commands naming their own run ids while the history catches up', () => {
  it('given a server started on a log its history is behind, when enqueues name a new id, a finished run the history holds and one it has not reached, then each answers at once as it does once the history has caught up', async () => {
    const dir = tempDir('sluice-behind-');
    try {
      const logPath = join(dir.path, 'events.db');
      const historyPath = join(dir.path, 'history.db');
      for (const file of ['events.db', 'history.db']) copyFileSync(join(template.path, file), join(dir.path, file));
      for (const suffix of ['-wal', '-shm']) rmSync(historyPath + suffix, { force: true });
      const { history, release } = heldHistory(historyPath);
      // No time to wait for the history: a command that waited for it would be refused.
      const server = await openOn(logPath, history, 0);
      try {
        const yoga = createSluiceYoga(server.sluice);
        const gql = new Gql('http://sluice.test/graphql', (url, init) => yoga.fetch(url, init));
        const enqueue = async (runId: string) =>
          (
            await gql.data(`mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) ${RUN_RESULT} }`, {
              input: { runId, jobName: 'j' },
            })
          ).enqueueRun as Json;
        const started = async (runId: string) =>
          (await gql.data(`mutation($runId: ID!) { markRunStarted(runId: $runId) ${RUN_RESULT} }`, { runId }))
            .markRunStarted as Json;
        const state = server.sluice.state;
        for (const runId of ['early0', 'late0']) {
          expect(state.runs.has(runId) || state.recentlyFinished.has(runId), runId).toBe(false);
        }

        const ids = ['fresh', 'early0', 'late0'];
        const before: Json[] = [];
        for (const runId of ids) before.push(await enqueue(runId));
        const unknown = await started('nobody');
        const runsBefore = await Promise.all(['early0', 'late0'].map((id) => server.sluice.run(id)));
        expect(server.sluice.historyStatus().catchingUp).toBe(true);

        expect(before.map((answer) => answer.__typename)).toEqual(['RunPayload', 'RunPayload', 'RunPayload']);
        expect(before.map((answer) => (answer.run as Json).status)).toEqual(['STARTING', 'SUCCESS', 'SUCCESS']);
        expect(unknown).toMatchObject({ __typename: 'NotFoundError' });
        // The finished runs' ids were retries: only the new id was enqueued.
        expect(state.runCount).toBe(2 * RUNS + 1);

        release();
        await server.sluice.historyCaughtUp();
        const after: Json[] = [];
        for (const runId of ids) after.push(await enqueue(runId));
        expect(after).toEqual(before);
        expect(await started('nobody')).toEqual(unknown);
        expect(await Promise.all(['early0', 'late0'].map((id) => server.sluice.run(id)))).toEqual(runsBefore);
        expect(server.sluice.state.runCount).toBe(2 * RUNS + 1);
      } finally {
        await server.close();
      }
    } finally {
      dir.remove();
    }
  }, 120_000);
});
