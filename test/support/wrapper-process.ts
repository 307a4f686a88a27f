/**
 * `sluice run` / `sluice slot` as real child processes (`node --import tsx src/cli.ts ...`),
 * for the wrapper's end-to-end tests: what they wrote, their --json events, how they exited,
 * and a `sluice` on PATH so that a COMMAND can call `sluice slot` as a user's script would.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Json } from './e2e-http.js';

const ROOT = resolve(import.meta.dirname, '../..');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class WrapperProcess {
  stdout = '';
  stderr = '';
  exitInfo: Exit | null = null;
  readonly exited: Promise<Exit>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk) => (this.stdout += String(chunk)));
    child.stderr?.on('data', (chunk) => (this.stderr += String(chunk)));
    this.exited = new Promise((done) =>
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        done(this.exitInfo);
      }),
    );
  }

  /** The --json events written so far (other lines, e.g. a nested wrapper's text, skipped). */
  events(): Json[] {
    return this.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line));
  }

  describe(): string {
    return `exit ${JSON.stringify(this.exitInfo)}\n--- stderr ---\n${this.stderr}\n--- stdout ---\n${this.stdout}`;
  }

  /** The exit code; fails with the output when it does not end within `timeoutMs`. */
  async code(timeoutMs = 60_000): Promise<number | null> {
    const timer = new Promise<'timeout'>((done) => setTimeout(() => done('timeout'), timeoutMs).unref());
    if ((await Promise.race([this.exited, timer])) === 'timeout') {
      this.child.kill('SIGKILL');
      throw new Error(`wrapper did not end within ${timeoutMs} ms\n${this.describe()}`);
    }
    return this.exitInfo?.code ?? null;
  }
}

/** Writes an executable `sluice` into `dir` that runs this checkout's CLI through tsx. */
export function sluiceOnPath(dir: string): string {
  const path = join(dir, 'sluice');
  writeFileSync(path, `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(ROOT, 'src/cli.ts')}" "$@"\n`);
  chmodSync(path, 0o755);
  return dir;
}

export function startWrapper(args: readonly string[], env: Record<string, string> = {}): WrapperProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, SLUICE_RUN_ID: '', SLUICE_URL: '', SLUICE_TOKEN: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new WrapperProcess(child);
}
