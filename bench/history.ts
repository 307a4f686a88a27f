/**
 * Sections 10 and 11: what a long history costs a server that only has a small live queue.
 *
 * 10: heap after a full GC and RSS of a server (startServer in a child process of its own)
 *     after 10,000 / 100,000 / 1,000,000 finished runs, with the same live queue on top.
 * 11: time to ready on a log of 1,000,000 events: from scratch, and from a checkpoint, against
 *     the raw time to read the same events with better-sqlite3 and JSON-parse them.
 *
 * The histories are written straight into the store's table (see logs.ts); each measurement
 * runs in a fresh process so the figures do not depend on one another. A measurement that
 * does not finish within BENCH_CHILD_TIMEOUT_S is stopped and reported as such.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Message, startChild, TimeoutError } from './child.js';
import { bytes, fileSize, fmt, heading, load, note, now, size, sizes, table, tempDir } from './harness.js';
import { writeHistory } from './logs.js';

/** Runs in the live queue: 10 admitted (maxConcurrentRuns' default), the rest queued. */
const LIVE = 110;

/** A time limit, not a size: BENCH_SCALE leaves it alone. */
const timeoutS = () => (process.env.BENCH_CHILD_TIMEOUT_S ? sizes('BENCH_CHILD_TIMEOUT_S', [])[0] : undefined) ?? 180;

/** One measurement in a child process; null when it ran out of time. */
async function measure(name: string, args: string[], timeoutMs: number): Promise<Message | null> {
  // Heaps of a million runs need more than V8's default limit on some machines.
  const child = startChild(name, 'history-child.ts', args, ['--max-old-space-size=8192']);
  try {
    return await child.next('result', timeoutMs);
  } catch (error) {
    if (error instanceof TimeoutError) return null;
    throw error;
  } finally {
    await child.kill();
  }
}

function removeLog(path: string): void {
  for (const suffix of ['', '-wal', '-shm']) {
    rmSync(`${path}${suffix}`, { force: true });
    rmSync(`${path.replace(/\.db$/, '.checkpoints.db')}${suffix}`, { force: true });
  }
}

const mib = (n: unknown) => Number(n) / 2 ** 20;
const count = (n: number) => n.toLocaleString('en-US');

export async function memorySection(): Promise<void> {
  heading('10. Memory after a long history: heap after GC and RSS of a server, same live queue');
  const runCounts = sizes('BENCH_HISTORY_RUNS', [10_000, 100_000, 1_000_000], 100);
  const timeout = timeoutS();
  // startServer (default): the server as deployed. sluice: Sluice.open without checkpoints, only
  // the replay, for when writing the checkpoints of a long history takes too long.
  const opener = process.env.BENCH_HISTORY_OPEN === 'sluice' ? 'sluice' : 'server';
  note(`Each log: N runs enqueued, admitted, started and finished one after another (4 events each),`);
  note(
    opener === 'server'
      ? 'written straight to SQLite. A fresh process runs startServer on it (checkpoints beside the log, as'
      : 'written straight to SQLite. A fresh process runs Sluice.open on it (no checkpoint store, no HTTP;',
  );
  note(
    opener === 'server'
      ? `\`sluice serve\`), then enqueues ${LIVE} runs through Sluice (10 admitted, ${LIVE - 10} queued), then`
      : `BENCH_HISTORY_OPEN=sluice), then enqueues ${LIVE} runs through Sluice (10 admitted, ${LIVE - 10} queued), then`,
  );
  note(`a full GC; heap used and RSS. At most ${timeout} s per measurement. ${load()} at start.`);
  console.log();
  const dir = tempDir();
  const rows: Array<Array<string | number>> = [];
  let base: { heap: number; rss: number } | null = null;
  for (const runs of runCounts) {
    const path = join(dir, `history-${runs}.db`);
    const w0 = now();
    const events = await writeHistory(path, runs);
    const writeS = (now() - w0) / 1000;
    const logBytes = fileSize(path);
    const r = await measure(`${opener} on ${count(runs)} runs`, [opener, path, String(LIVE)], timeout * 1000);
    removeLog(path);
    if (!r) {
      rows.push([count(runs), count(events), bytes(logBytes), fmt(writeS), `> ${timeout}`, '-', '-', '-', '-', '-']);
      continue;
    }
    const heap = mib(r.heapUsed);
    const rss = mib(r.rss);
    base ??= { heap, rss };
    rows.push([
      count(runs),
      count(events),
      bytes(logBytes),
      fmt(writeS),
      fmt(Number(r.readyMs) / 1000),
      fmt(heap),
      fmt(rss),
      `${fmt(heap / base.heap)}×`,
      `${fmt(rss / base.rss)}×`,
      fmt(Number(r.liveMs) / LIVE),
    ]);
  }
  table(
    [
      'finished runs',
      'events',
      'log file',
      'write s',
      'ready s',
      'heap MiB',
      'RSS MiB',
      'heap vs 1st',
      'RSS vs 1st',
      'ms/enqueue',
    ],
    rows,
  );
  note(
    opener === 'server'
      ? '"ready s": startServer until it serves (replay, and the checkpoints due on a first start).'
      : '"ready s": Sluice.open until it follows the log (replay only).',
  );
  note('"> N": not ready within the time allowed (BENCH_CHILD_TIMEOUT_S), process stopped.');
  note('Goal: after 1,000,000 finished runs, heap and RSS within 1.5× of the figures after 10,000.');
}

export async function readySection(): Promise<void> {
  const target = size('BENCH_READY_EVENTS', 1_000_000, 10_000);
  heading(`11. Time to ready on a ${count(target)}-event log: from scratch, from a checkpoint, raw read`);
  const timeout = timeoutS();
  const dir = tempDir();
  const path = join(dir, 'ready.db');
  const w0 = now();
  const events = await writeHistory(path, Math.ceil(target / 4));
  note(`${count(events)} events (${count(events / 4)} finished runs), ${bytes(fileSize(path))}, written in`);
  note(`${fmt((now() - w0) / 1000)} s. Each measurement in a fresh process, at most ${timeout} s. ${load()}.`);
  console.log();
  const steps: Array<{ what: string; args: string[]; rebuild?: boolean }> = [
    { what: 'raw: better-sqlite3 read + JSON.parse of every event', args: ['raw', path] },
    {
      what: 'Sluice.open, no checkpoint store (replay from event 0), history in memory',
      args: ['sluice', path, '0'],
      rebuild: true,
    },
    {
      what: 'startServer, first start (no checkpoint, no history file yet)',
      args: ['server', path, '0'],
      rebuild: true,
    },
    { what: 'startServer again (from the checkpoint the first wrote)', args: ['server', path, '0'] },
  ];
  const rows: Array<Array<string | number>> = [];
  let rawMs: number | null = null;
  for (const step of steps) {
    const r = await measure(step.what, step.args, timeout * 1000);
    if (!r) {
      rows.push([step.what, `> ${timeout}`, '-', '-', '-']);
      continue;
    }
    const ms = Number(r.readyMs);
    if (step.args[0] === 'raw') rawMs = ms;
    const historyMs = r.historyMs === undefined ? null : Number(r.historyMs);
    rows.push([
      step.what,
      fmt(ms / 1000),
      rawMs === null ? '-' : `${fmt(ms / rawMs)}×`,
      historyMs === null ? '-' : fmt(historyMs / 1000),
      historyMs === null || !step.rebuild ? '-' : fmt((events / (historyMs - ms)) * 1000),
    ]);
  }
  table(['', 'ready s', 'vs raw', 'history caught up s', 'history events/s'], rows);
  note('"ready": answering (live state rebuilt, following the log); the history read model then catches up in');
  note('the background ("history caught up", from the start of the open). "history events/s": the rebuild of a');
  note('history from nothing, after ready; a history kept beside the log is behind only by what was appended since.');
  note(`checkpoint file after both starts: ${bytes(fileSize(path.replace(/\.db$/, '.checkpoints.db')))}.`);
  note('Goals: ready within 3 s from a checkpoint; from scratch within 1.5× of the raw read.');
  removeLog(path);
}
