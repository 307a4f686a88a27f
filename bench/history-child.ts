/**
 * One measurement on a long log, in a process of its own (see child.ts), answered as `result`:
 *   history-child.ts server DB_PATH LIVE   startServer on the log (checkpoints beside it, as
 *                                          `sluice serve` keeps them); time to ready, and until
 *                                          the history read model has caught up; then LIVE
 *                                          runs enqueued through Sluice (10 admitted, the rest
 *                                          queued); heap after a full GC and RSS
 *   history-child.ts sluice DB_PATH LIVE   Sluice.open with no checkpoint store: a replay from
 *                                          the first event; time to ready; then as `server`
 *   history-child.ts raw DB_PATH           read every event with better-sqlite3 and JSON-parse
 *                                          its data, nothing else: the floor for a replay
 */
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { Sluice } from '../src/app/sluice.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import { startServer } from '../src/server.js';
import { DEFAULT_SETTINGS } from '../src/settings.js';
import { failStart, type Message, serveParent, tell } from './child.js';
import { teamOf } from './logs.js';

const quiet = () => {};

function retained(): { heapUsed: number; rss: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc();
  const usage = process.memoryUsage();
  return { heapUsed: usage.heapUsed, rss: usage.rss };
}

/** Enqueues the live queue through Sluice; then the heap after a full GC and the RSS. */
async function liveAndMemory(sluice: Sluice, live: number) {
  const t0 = performance.now();
  for (let i = 0; i < live; i++) {
    await sluice.execute(
      { type: 'EnqueueRun', input: { runId: `live-${i}`, jobName: 'job', tags: [{ key: 'team', value: teamOf(i) }] } },
      'bench',
    );
  }
  const liveMs = performance.now() - t0;
  // A checkpoint made due by those commands is written on a later tick: let it run first.
  await new Promise((done) => setTimeout(done, 50));
  return { liveMs, ...retained() };
}

async function serverResult(path: string, live: number): Promise<Message> {
  const t0 = performance.now();
  const server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, host: '127.0.0.1', eventStoreUrl: `sqlite:${path}` },
    quiet,
  );
  const readyMs = performance.now() - t0;
  await server.sluice.historyCaughtUp();
  const historyMs = performance.now() - t0;
  const measured = await liveAndMemory(server.sluice, live);
  await server.close();
  return { type: 'result', readyMs, historyMs, ...measured };
}

async function sluiceResult(path: string, live: number): Promise<Message> {
  const store = openSqliteStore({ path });
  const t0 = performance.now();
  const sluice = await Sluice.open({ store, warn: quiet });
  const readyMs = performance.now() - t0;
  await sluice.historyCaughtUp();
  const historyMs = performance.now() - t0;
  const measured = await liveAndMemory(sluice, live);
  await sluice.close();
  await store.close();
  return { type: 'result', readyMs, historyMs, ...measured };
}

function rawResult(path: string): Message {
  const t0 = performance.now();
  const db = new Database(path, { readonly: true });
  let events = 0;
  let fields = 0;
  for (const row of db.prepare('SELECT revision, type, data, actor, at FROM events ORDER BY position').iterate()) {
    const data = JSON.parse((row as { data: string }).data) as object;
    // Touch the result, so the parse cannot be skipped.
    fields += Object.keys(data).length;
    events++;
  }
  db.close();
  return { type: 'result', readyMs: performance.now() - t0, events, fields };
}

async function main(): Promise<void> {
  const [mode, path, live] = process.argv.slice(2);
  serveParent(async () => null);
  if (!path) throw new Error('usage: history-child.ts server|sluice|raw DB_PATH [LIVE]');
  if (mode === 'server') tell(await serverResult(path, Number(live ?? 0)));
  else if (mode === 'sluice') tell(await sluiceResult(path, Number(live ?? 0)));
  else if (mode === 'raw') tell(rawResult(path));
  else throw new Error(`unknown mode ${mode}`);
}

main().catch(failStart);
