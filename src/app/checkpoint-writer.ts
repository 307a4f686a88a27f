/**
 * Checkpoints of a large live state written by a worker thread. Serializing the state is the
 * one part of a checkpoint that grows with the deployment (about 100 ms at 15,000 queued runs),
 * and on the server's thread it holds every command and `/health` for that long. So once a
 * checkpoint's text is past `fromBytes`, the server hands it to a worker thread, which keeps a
 * copy of the state (the text parsed), folds the same durable events the server takes in, and
 * from then on serializes and saves each checkpoint itself. The price is a second copy of the
 * live state in memory, which is why small states stay on the server's thread.
 *
 * Only durable events reach the copy, in log order, and a write names the revision it is of:
 * a copy at any other revision refuses to write (a bug, said as a warning, never a wrong
 * checkpoint). A worker that dies is replaced by writing on the server's thread again.
 */
import { Worker } from 'node:worker_threads';
import type { LoggedEvent } from '../domain/events.js';

/** Messages to the worker, in the order they must be handled. */
export type ToWorker =
  | { type: 'start'; text: string }
  | { type: 'events'; events: LoggedEvent[] }
  | { type: 'write'; revision: bigint; eventHash: string }
  | { type: 'close' };

type FromWorker =
  | { type: 'written'; revision: bigint }
  | { type: 'failed'; revision: bigint; message: string }
  | { type: 'warning'; message: string }
  | { type: 'closed' };

/**
 * Under tsx or vitest the sources are TypeScript, which a worker thread cannot load by itself:
 * it registers tsx's loader first (a development dependency, present wherever TypeScript runs).
 * Built, the worker is plain JavaScript.
 */
function newWorker(workerData: Record<string, unknown>): Worker {
  const typescript = import.meta.url.endsWith('.ts');
  const entry = new URL(`./checkpoint-writer-worker.${typescript ? 'ts' : 'js'}`, import.meta.url);
  if (!typescript) return new Worker(entry, { workerData });
  const bootstrap = `
    const { workerData } = require('node:worker_threads');
    const { pathToFileURL } = require('node:url');
    const { join, dirname } = require('node:path');
    const tsx = dirname(require('node:module').createRequire(workerData.from).resolve('tsx/package.json'));
    import(pathToFileURL(join(tsx, 'dist/esm/api/index.mjs')).href)
      .then(({ register }) => { register(); return import(workerData.entry); })
      .catch((error) => { setImmediate(() => { throw error; }); });
  `;
  return new Worker(bootstrap, { eval: true, workerData: { ...workerData, from: import.meta.url, entry: entry.href } });
}

export class CheckpointWriter {
  private pending: LoggedEvent[] = [];
  private scheduled = false;
  private alive = true;
  /** Writes asked for and not yet answered, and who waits for them all to be. */
  private inFlight = 0;
  private readonly idle = new Set<() => void>();

  private constructor(
    private readonly worker: Worker,
    private readonly warn: (message: string) => void,
  ) {
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'warning') warn(message.message);
      else if (message.type === 'failed') {
        warn(`checkpoint at position ${message.revision} not written: ${message.message}`);
        this.answered();
      } else if (message.type === 'written') this.answered();
    });
    worker.on('error', (error) => this.lost(`failed: ${error.message}`));
    worker.on('exit', (code) => this.lost(`exited with code ${code}`));
  }

  /**
   * A writer whose copy of the state starts from `text` (serialized at the last event taken
   * in); null when no worker thread can be started here.
   */
  static start(path: string, kept: number, text: string, warn: (message: string) => void): CheckpointWriter | null {
    try {
      const worker = newWorker({ path, kept });
      // Never what keeps a process alive; close() waits for its last write.
      worker.unref();
      const writer = new CheckpointWriter(worker, warn);
      worker.postMessage({ type: 'start', text } satisfies ToWorker);
      return writer;
    } catch (error) {
      warn(`checkpoints stay on the server's thread: no worker thread (${(error as Error).message})`);
      return null;
    }
  }

  /** False once the worker is gone: checkpoints go back to the server's thread. */
  get working(): boolean {
    return this.alive;
  }

  /** A durable event, after the last one taken; handed over in batches, soon. */
  take(event: LoggedEvent): void {
    if (!this.alive) return;
    this.pending.push(event);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Asks for a checkpoint of the state after the event at `revision` (the last one taken). */
  write(revision: bigint, eventHash: string): void {
    if (!this.alive) return;
    this.flush();
    this.inFlight += 1;
    this.worker.postMessage({ type: 'write', revision, eventHash } satisfies ToWorker);
  }

  /** Resolves once every write asked for so far is written or has failed. */
  settled(): Promise<void> {
    if (this.inFlight === 0 || !this.alive) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  /** Lets the last write finish, then stops the worker. */
  async close(): Promise<void> {
    if (!this.alive) return;
    this.flush();
    await this.settled();
    this.alive = false;
    const closed = new Promise<void>((resolve) => {
      this.worker.on('message', (message: FromWorker) => message.type === 'closed' && resolve());
      this.worker.once('exit', () => resolve());
    });
    this.worker.postMessage({ type: 'close' } satisfies ToWorker);
    await closed;
    await this.worker.terminate();
  }

  /** For tests: the worker stops as if it had crashed. */
  async crashForTest(): Promise<void> {
    await this.worker.terminate();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0 || !this.alive) return;
    const events = this.pending;
    this.pending = [];
    this.worker.postMessage({ type: 'events', events } satisfies ToWorker);
  }

  private answered(): void {
    this.inFlight -= 1;
    if (this.inFlight > 0) return;
    for (const resolve of this.idle) resolve();
    this.idle.clear();
  }

  private lost(why: string): void {
    if (!this.alive) return;
    this.alive = false;
    this.pending = [];
    this.warn(`the checkpoint worker ${why}: checkpoints are written on the server's thread again`);
    this.inFlight = 0;
    for (const resolve of this.idle) resolve();
    this.idle.clear();
  }
}
