/**
 * The history read model is rebuilt from the log when it is missing or behind, and then answers
 * exactly as before: runs, waits, decisions.
 */
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import type { Command } from '../../src/domain/commands.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { openHistoryStore } from '../../src/history/history-store.js';
import { tempDir } from '../support/e2e-http.js';

let dir: ReturnType<typeof tempDir>;
afterEach(() => dir?.remove());

const commands: Command[] = [
  { type: 'SetMaxConcurrentRuns', limit: 1 },
  { type: 'SetTagConcurrencyLimits', limits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 1 }] },
  ...['a1', 'b1', 'a2', 'b2', 'c1'].map(
    (runId): Command => ({
      type: 'EnqueueRun',
      input: { runId, jobName: 'j', tags: [{ key: 'team', value: runId.slice(0, 1) }] },
    }),
  ),
  { type: 'MarkRunFinished', runId: 'a1', status: 'SUCCESS' },
  { type: 'SetMaxConcurrentRuns', limit: 3 },
  { type: 'MarkRunFinished', runId: 'b1', status: 'FAILURE' },
];
const later: Command[] = [
  { type: 'TerminateRun', runId: 'c1', force: true },
  { type: 'MarkRunFinished', runId: 'a2', status: 'SUCCESS' },
];

/** Everything the history answers about every run. */
async function answers(sluice: Sluice) {
  const history = await sluice.readHistory();
  const runs = history.runs(null, -1, 100);
  return {
    runs: runs.map((r) => [r.id, r.status, r.finishedAt]),
    waits: runs.map((r) => history.waitsOf(r.id)),
    decisions: runs.map((r) => history.decisions({ runId: r.id, limit: 100 })),
    feed: history.decisions({ limit: 1_000 }),
    counts: [...history.countsByStatus()].sort(),
  };
}

async function open(logPath: string, historyPath: string) {
  const store = openSqliteStore({ path: logPath });
  let t = Date.parse('2026-11-01T00:00:00.000Z');
  const sluice = await Sluice.open({
    store,
    history: openHistoryStore(historyPath),
    clock: () => new Date((t += 1000)),
  });
  return {
    sluice,
    close: async () => {
      await sluice.close();
      await store.close();
    },
  };
}

describe('the history read model', () => {
  it('given a history file that is deleted, when the server starts, then it is rebuilt from the log and answers the same', async () => {
    dir = tempDir('sluice-history-');
    const log = join(dir.path, 'events.db');
    const historyPath = join(dir.path, 'history.db');
    const first = await open(log, historyPath);
    for (const command of [...commands, ...later]) await first.sluice.execute(command, 'test');
    const before = await answers(first.sluice);
    await first.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(historyPath + suffix, { force: true });

    const second = await open(log, historyPath);
    expect(await answers(second.sluice)).toEqual(before);
    await second.close();
  });

  it('given a history file left behind the log, when the server starts, then it catches up and answers the same', async () => {
    dir = tempDir('sluice-history-');
    const log = join(dir.path, 'events.db');
    const historyPath = join(dir.path, 'history.db');
    const old = join(dir.path, 'history-then.db');
    const first = await open(log, historyPath);
    for (const command of commands) await first.sluice.execute(command, 'test');
    await first.sluice.readHistory();
    await first.close();
    copyFileSync(historyPath, old);
    const again = await open(log, historyPath);
    for (const command of later) await again.sluice.execute(command, 'test');
    const before = await answers(again.sluice);
    await again.close();

    // The copy from before the later commands stands in for a history that fell behind.
    const behind = await open(log, old);
    expect(await answers(behind.sluice)).toEqual(before);
    await behind.close();
  });

  it('given a history file of another log, when the server starts, then it is emptied and rebuilt for this one', async () => {
    dir = tempDir('sluice-history-');
    const historyPath = join(dir.path, 'history.db');
    const other = await open(join(dir.path, 'other.db'), historyPath);
    await other.sluice.execute({ type: 'EnqueueRun', input: { runId: 'someone-else', jobName: 'j' } }, 'test');
    await other.close();

    const mine = await open(join(dir.path, 'events.db'), historyPath);
    for (const command of commands) await mine.sluice.execute(command, 'test');
    const runs = (await mine.sluice.readHistory()).runs(null, -1, 100).map((r) => r.id);
    expect(runs).toEqual(['a1', 'b1', 'a2', 'b2', 'c1']);
    await mine.close();
  });
});
