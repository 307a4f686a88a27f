/**
 * Benchmark children: a script run in its own Node process (with --expose-gc, through tsx),
 * talking to the parent over IPC, so each server or memory figure is measured in a process of
 * its own and the load generator's work is not counted in the server's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');

/** A message between parent and child: a type and anything else. */
export interface Message {
  type: string;
  [field: string]: unknown;
}

export class Child {
  private readonly waiting: Array<{ type: string; done: (m: Message) => void; fail: (e: Error) => void }> = [];
  private output = '';
  private exitText: string | null = null;
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (chunk: unknown) => {
      // The end of what it printed is enough to explain a failure.
      this.output = (this.output + String(chunk)).slice(-4_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('message', (raw) => {
      const message = raw as Message;
      const at = this.waiting.findIndex((w) => w.type === message.type || message.type === 'failed');
      if (at === -1) return;
      const [waiter] = this.waiting.splice(at, 1);
      if (message.type === 'failed') waiter?.fail(new Error(`${this.name}: ${String(message.message)}`));
      else waiter?.done(message);
    });
    this.exited = new Promise((done) => {
      child.once('exit', (code, signal) => {
        this.exitText = `exited (code ${code}, signal ${signal})`;
        for (const w of this.waiting.splice(0)) w.fail(new Error(`${this.name} ${this.exitText}\n${this.output}`));
        done();
      });
    });
  }

  /** Waits for the next message of a type; fails if the child exits or reports failure first. */
  next(type: string, timeoutMs: number): Promise<Message> {
    if (this.exitText) return Promise.reject(new Error(`${this.name} ${this.exitText}\n${this.output}`));
    return new Promise((done, fail) => {
      const timer = setTimeout(() => {
        const at = this.waiting.indexOf(waiter);
        if (at !== -1) this.waiting.splice(at, 1);
        fail(new TimeoutError(`${this.name}: no "${type}" within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      const waiter = {
        type,
        done: (m: Message) => {
          clearTimeout(timer);
          done(m);
        },
        fail: (e: Error) => {
          clearTimeout(timer);
          fail(e);
        },
      };
      this.waiting.push(waiter);
    });
  }

  /** Sends a request and waits for the answer of the same type. */
  ask(message: Message, timeoutMs = 60_000): Promise<Message> {
    const answer = this.next(message.type, timeoutMs);
    this.child.send(message);
    return answer;
  }

  /** Asks the child to stop; kills it if it has not exited after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exitText) return;
    if (this.child.connected) this.child.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  kill(): Promise<void> {
    if (!this.exitText) this.child.kill('SIGKILL');
    return this.exited;
  }
}

export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/** BENCH_CHILD_PROF=DIR: every child writes a CPU profile (--cpu-prof) into DIR when it exits. */
const profiling = process.env.BENCH_CHILD_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CHILD_PROF}`] : [];

/** Starts `bench/<script>` in a child Node process with a full GC at hand and an IPC channel. */
export function startChild(name: string, script: string, args: string[], nodeOptions: string[] = []): Child {
  const spawned = spawn(
    process.execPath,
    ['--expose-gc', ...profiling, ...nodeOptions, '--import', 'tsx', resolve(ROOT, 'bench', script), ...args],
    { cwd: ROOT, env: { ...process.env, NODE_ENV: 'production' }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
  );
  return new Child(name, spawned);
}

// ---------------------------------------------------------------------------------------------
// The child's side

/** Sends a message to the parent. */
export function tell(message: Message): void {
  process.send?.(message);
}

/**
 * Runs a child's work: answers each request with `handle`, reports an error as `failed`, and
 * exits on `stop` (after `onStop`) or when the parent goes away.
 */
export function serveParent(
  handle: (message: Message) => Promise<Message | null>,
  onStop: () => Promise<void> = async () => {},
): void {
  const stop = async () => {
    await onStop().catch(() => undefined);
    process.exit(0);
  };
  process.on('disconnect', () => void stop());
  process.on('message', (raw) => {
    const message = raw as Message;
    if (message.type === 'stop') {
      void stop();
      return;
    }
    handle(message).then(
      (answer) => answer && tell(answer),
      (error: unknown) => tell({ type: 'failed', message: (error as Error).stack ?? String(error) }),
    );
  });
}

/** Reports a failure of the child's start-up and exits. */
export function failStart(error: unknown): void {
  tell({ type: 'failed', message: (error as Error).stack ?? String(error) });
  setTimeout(() => process.exit(1), 100);
}
