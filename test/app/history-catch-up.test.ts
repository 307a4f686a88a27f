/**
 * Answering first, history after: a server started on a log whose history read model is gone
 * answers commands as soon as its live state is rebuilt, while the history catches up in the
 * background. A read of the history waits for it (bounded) or says how far it is, never answers
 * from less than the log; once caught up, it answers as a history rebuilt in full does.
 */
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HistoryBehindError, Sluice } from '../../src/app/sluice.js';
import type { Command } from '../../src/domain/commands.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { openHistoryStore } from '../../src/history/history-store.js';
import { createSluiceYoga } from '../../src/server.js';
import { tempDir } from '../support/e2e-http.js';

let dir: ReturnType<typeof tempDir>;
afterEach(() => dir?.remove());

/** Everything the history answers about every run. */
async function answers(sluice: Sluice) {
  const history = await sluice.readHistory();
  const runs = history.runs(null, -1, 100_000);
  return {
    runs: runs.map((r) => [r.id, r.status, r.finishedAt]),
    waits: runs.map((r) => history.waitsOf(r.id)),
    decisions: runs.map((r) => history.decisions({ runId: r.id, limit: 100 })),
    feed: history.decisions({ limit: 100_000 }),
    counts: [...history.countsByStatus()].sort(),
  };
}

async function open(logPath: string, historyPath: string, historyWaitMs?: number) {
  const store = openSqliteStore({ path: logPath });
  let t = Date.parse('2026-11-01T00:00:00.000Z');
  const sluice = await Sluice.open({
    store,
    history: openHistoryStore(historyPath),
    clock: () => new Date((t += 1000)),
    historyWaitMs,
    info: () => {},
  });
  return {
    sluice,
    close: async () => {
      await sluice.close();
      await store.close();
    },
  };
}

function removeHistory(path: string): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
}

/** A log of several thousand events: runs finished long ago, runs queued under limits, waits. */
async function writeLog(logPath: string, historyPath: string): Promise<void> {
  const first = await open(logPath, historyPath);
  const all = (commands: Command[]) => Promise.all(commands.map((command) => first.sluice.execute(command, 'test')));
  await first.sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 2_000 }, 'test');
  // More finished runs than the live state remembers: the first ones only the history knows.
  const done = Array.from({ length: 2_000 }, (_, i) => `done${i}`);
  await all(done.map((runId): Command => ({ type: 'EnqueueRun', input: { runId, jobName: 'j' } })));
  await all(done.map((runId): Command => ({ type: 'MarkRunFinished', runId, status: 'SUCCESS' })));
  await first.sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 2 }, 'test');
  await first.sluice.execute(
    { type: 'SetTagConcurrencyLimits', limits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 1 }] },
    'test',
  );
  await all(
    Array.from(
      { length: 1_500 },
      (_, i): Command => ({
        type: 'EnqueueRun',
        input: { runId: `r${i}`, jobName: 'j', tags: [{ key: 'team', value: `t${i % 5}` }] },
      }),
    ),
  );
  for (let i = 0; i < 30; i++) {
    const [running] = [...first.sluice.state.inProgress];
    if (running === undefined) break;
    await first.sluice.execute({ type: 'MarkRunFinished', runId: running, status: 'SUCCESS' }, 'test');
  }
  await first.close();
}

let template: ReturnType<typeof tempDir>;
beforeAll(async () => {
  template = tempDir('sluice-catch-up-log-');
  await writeLog(join(template.path, 'events.db'), join(template.path, 'history.db'));
}, 120_000);
afterAll(() => template?.remove());

/** A copy of the log, with no history file beside it. */
function logWithoutHistory(): { logPath: string; historyPath: string } {
  dir = tempDir('sluice-catch-up-');
  const logPath = join(dir.path, 'events.db');
  copyFileSync(join(template.path, 'events.db'), logPath);
  return { logPath, historyPath: join(dir.path, 'history.db') };
}

describe('answering first, history after', () => {
  it('given a log whose history is deleted, when the server starts, then commands answer at once, history reads say how far the history is, and once caught up it answers as a full rebuild', async () => {
    const { logPath, historyPath } = logWithoutHistory();

    const server = await open(logPath, historyPath, 0);
    const head = server.sluice.state.revision;
    // Several steps of the catch-up (the first of 500 events, each at most double the last), so the
    // reads below come before its end.
    expect(head).toBeGreaterThan(8_000n);
    expect(server.sluice.historyStatus()).toMatchObject({ catchingUp: true, logPosition: head });

    // A read of the history that it has not reached: it says how far it is.
    const refused = await server.sluice.readHistory().then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(HistoryBehindError);
    const behind = refused as HistoryBehindError;
    expect(behind.logPosition).toBe(head);
    expect(behind.historyPosition).toBeLessThan(head);

    // /ready: ready (the server answers), and how far the history is.
    const ready = await createSluiceYoga(server.sluice).fetch('http://127.0.0.1/ready');
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { status: string; history: { logPosition: string; behind: number } };
    expect(body).toMatchObject({ status: 'ready', history: { catchingUp: true, logPosition: head.toString() } });
    expect(body.history.behind).toBeGreaterThan(0);

    // A command about the live state answers before the history has caught up.
    const order: string[] = [];
    const caughtUp = server.sluice.historyCaughtUp().then(() => order.push('history caught up'));
    const enqueued = await server.sluice.execute({ type: 'EnqueueRun', input: { jobName: 'j' } }, 'test');
    order.push('command answered');
    expect(enqueued.events.length).toBeGreaterThan(0);
    expect(order).toEqual(['command answered']);

    // A command naming a run the live state does not hold may name a finished one: with no time
    // to wait for the history, the log after the history's position tells that it is one (a
    // retry: nothing is recorded) and gives its record, the one the history will hold.
    const finishedRun = 'done0';
    expect(server.sluice.state.runs.has(finishedRun)).toBe(false);
    expect(server.sluice.state.recentlyFinished.has(finishedRun)).toBe(false);
    const revisionBefore = server.sluice.state.revision;
    await expect(
      server.sluice.execute({ type: 'EnqueueRun', input: { runId: finishedRun, jobName: 'j' } }, 'test'),
    ).resolves.toEqual({ events: [], runId: finishedRun });
    expect(server.sluice.state.revision).toBe(revisionBefore);
    const finishedBefore = await server.sluice.run(finishedRun);
    expect(finishedBefore?.status).toBe('SUCCESS');
    expect(order).toEqual(['command answered']);

    await caughtUp;
    expect(order).toEqual(['command answered', 'history caught up']);
    expect(server.sluice.historyStatus()).toMatchObject({ catchingUp: false, position: server.sluice.state.revision });
    expect(await server.sluice.run(finishedRun)).toEqual(finishedBefore);
    const answersCaughtUp = await answers(server.sluice);
    await server.close();

    removeHistory(historyPath);
    const rebuilt = await open(logPath, historyPath);
    expect(await answers(rebuilt.sluice)).toEqual(answersCaughtUp);
    await rebuilt.close();
  }, 60_000);

  it('given a log whose history is deleted, when history reads and a command naming a finished run come before it has caught up, then the reads wait for it and both answer as on a full history', async () => {
    const { logPath, historyPath } = logWithoutHistory();
    const full = await open(logPath, historyPath);
    const before = await answers(full.sluice);
    await full.close();
    removeHistory(historyPath);

    const server = await open(logPath, historyPath, 60_000);
    expect(server.sluice.historyStatus().catchingUp).toBe(true);
    const [read, again] = await Promise.all([
      answers(server.sluice),
      server.sluice.execute({ type: 'EnqueueRun', input: { runId: 'done0', jobName: 'j' } }, 'test').then(
        (outcome) => ({ outcome }),
        (error: unknown) => ({ error }),
      ),
    ]);
    expect(read).toEqual(before);
    // The finished run is known from the history: its id is not taken for a new run.
    expect(server.sluice.state.runs.has('done0')).toBe(false);
    expect(again).toEqual({ outcome: { events: [], runId: 'done0' } });
    await server.close();
  }, 60_000);
});
