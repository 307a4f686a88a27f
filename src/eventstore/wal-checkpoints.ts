/**
 * SQLite's WAL checkpoints, moved off the event loop. By default the connection whose commit
 * pushes the write-ahead log past 1,000 pages copies it into the database file and syncs it, in
 * that commit: on the server's one thread, a stall of 100-300 ms every few thousand commands
 * (the log, the history and the checkpoints each have a WAL). Instead, those connections turn
 * automatic checkpoints off and a worker thread runs a PASSIVE checkpoint of each file every
 * CHECKPOINT_EVERY_MS on a connection of its own, which SQLite lets run beside the writer
 * (https://www.sqlite.org/wal.html#application_initiated_checkpoints).
 *
 * The worker opens each file for the checkpoint and closes it after, and a connection that gives
 * its checkpoints back waits until the worker has let go of its file, so that no connection of
 * this process is on a file its owner has closed: a copy made after the close sees the file whole.
 * If the worker cannot run, or dies, the connections get their automatic checkpoints back: stalls
 * again, but the WAL never grows without bound.
 */
import { isMainThread, Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

const CHECKPOINT_EVERY_MS = 1_000;
/** How long giving a file's checkpoints back waits for the worker to let go of it at most. */
const RELEASE_WAIT_MS = 2_000;
/** SQLite's own default, given back when the worker is not there to do it. */
const AUTOMATIC_PAGES = 1_000;

/**
 * Plain JavaScript, evaluated in the worker: it runs the same under tsx, vitest and the built
 * server, and loads better-sqlite3 as this module resolves it.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require('node:module').createRequire(workerData.from)('better-sqlite3');
// Running: a removal from now on is answered (see letGo).
Atomics.store(workerData.removed, 1, 1);
// A path may be registered by several connections of this process: counted, kept while any is.
const paths = new Map();
const failing = new Map();
function checkpointAll() {
  for (const path of paths.keys()) {
    let db;
    try {
      db = new Database(path, { fileMustExist: true });
      db.pragma('wal_checkpoint(PASSIVE)');
      failing.delete(path);
    } catch (error) {
      const message = String(error && error.message || error);
      if (paths.has(path) && failing.get(path) !== message) {
        failing.set(path, message);
        parentPort.postMessage({ type: 'failed', path, message });
      }
    } finally {
      try { if (db) db.close(); } catch {}
    }
  }
}
// Messages come between checkpoints (checkpointAll runs to its end): when one is taken, no
// connection of this worker is open, and a removed path is never opened again.
parentPort.on('message', (message) => {
  const count = paths.get(message.path) || 0;
  if (message.type === 'add') paths.set(message.path, count + 1);
  else if (message.type === 'remove' && count > 1) paths.set(message.path, count - 1);
  else if (message.type === 'remove') { paths.delete(message.path); failing.delete(message.path); }
  if (message.type === 'remove') {
    Atomics.store(workerData.removed, 0, message.seq);
    Atomics.notify(workerData.removed, 0);
  }
});
setInterval(checkpointAll, workerData.everyMs);
`;

interface Registered {
  db: Database.Database;
  path: string;
  warn: (message: string) => void;
}

export interface WalCheckpointerOptions {
  everyMs?: number;
  /** The worker's code (tests give one that fails, to see the connections take checkpoints back). */
  source?: string;
}

export class WalCheckpointer {
  private worker: Worker | null = null;
  private readonly registered = new Set<Registered>();
  /** Shared with the worker: the last removal it has taken (its `seq`), and 1 once it runs. */
  private readonly removed = new Int32Array(new SharedArrayBuffer(8));
  private removals = 0;

  constructor(private readonly options: WalCheckpointerOptions = {}) {}

  /**
   * Hands a connection's checkpoints to the worker; the returned function gives them back
   * (call it before closing the connection).
   */
  register(db: Database.Database, path: string, warn: (message: string) => void): () => void {
    // A connection opened in a worker thread (the checkpoint writer's) is off the server's thread
    // already: it keeps SQLite's own checkpoints rather than start a worker of its own.
    if (!isMainThread) return () => {};
    const entry: Registered = { db, path, warn };
    const worker = this.start(warn);
    if (worker === null) return () => {};
    db.pragma('wal_autocheckpoint = 0');
    this.registered.add(entry);
    worker.postMessage({ type: 'add', path });
    return () => {
      if (!this.registered.delete(entry)) return;
      this.letGo(path);
      if (this.registered.size === 0) this.stop();
      // The file whole when its owner closes it, as SQLite leaves it by itself when the closing
      // connection is the last: the worker may hold it open at this moment, which would leave
      // the newest pages in the WAL beside it (a copy of the file alone would miss them).
      try {
        if (db.open) db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // A full disk or another writer: SQLite's own checkpoint at close, or the next opener's, does it.
      }
    };
  }

  /**
   * Tells the worker to stop checkpointing a file, and waits (blocking, briefly: at most one
   * round of checkpoints) until it has: its connection on the file is closed by then.
   */
  private letGo(path: string): void {
    const worker = this.worker;
    if (worker === null) return;
    const seq = ++this.removals;
    worker.postMessage({ type: 'remove', path, seq });
    // A worker not running yet takes the removal before its first round: nothing to wait for.
    if (Atomics.load(this.removed, 1) !== 1) return;
    const deadline = performance.now() + RELEASE_WAIT_MS;
    for (;;) {
      const seen = Atomics.load(this.removed, 0);
      const left = deadline - performance.now();
      // A worker that died or hangs is waited for no longer than that.
      if (seen >= seq || left <= 0) return;
      Atomics.wait(this.removed, 0, seen, Math.min(left, 50));
    }
  }

  private start(warn: (message: string) => void): Worker | null {
    if (this.worker) return this.worker;
    try {
      Atomics.store(this.removed, 1, 0);
      const worker = new Worker(this.options.source ?? WORKER_SOURCE, {
        eval: true,
        workerData: {
          from: import.meta.url,
          everyMs: this.options.everyMs ?? CHECKPOINT_EVERY_MS,
          removed: this.removed,
        },
      });
      // Never what keeps a process alive.
      worker.unref();
      worker.on('message', (message: { type: string; path: string; message: string }) => {
        if (message.type !== 'failed') return;
        for (const entry of this.registered) {
          if (entry.path === message.path) entry.warn(`WAL checkpoint of ${message.path} failed: ${message.message}`);
        }
      });
      worker.on('error', (error) => this.lost(worker, error.message));
      worker.on('exit', (code) => this.lost(worker, `exited with code ${code}`));
      this.worker = worker;
      return worker;
    } catch (error) {
      warn(`WAL checkpoints stay in the commits: no worker thread (${(error as Error).message})`);
      return null;
    }
  }

  private stop(): void {
    const worker = this.worker;
    this.worker = null;
    void worker?.terminate();
  }

  /** True while a worker takes the registered files' checkpoints. */
  get running(): boolean {
    return this.worker !== null;
  }

  /** The worker is gone unasked: every connection checkpoints for itself again. */
  private lost(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = null;
    for (const { db, warn } of this.registered) {
      warn(`the WAL checkpoint worker stopped (${why}): checkpoints are back in the commits`);
      try {
        if (db.open) db.pragma(`wal_autocheckpoint = ${AUTOMATIC_PAGES}`);
      } catch {
        // A connection that cannot take the setting is closing.
      }
    }
    this.registered.clear();
  }
}

/** Where a store opened without a logger tells what it could not do. */
export function warnProcess(message: string): void {
  process.emitWarning(message);
}

/** One worker for the process, started with the first file and stopped after the last. */
export const walCheckpoints = new WalCheckpointer();
