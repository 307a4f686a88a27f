/**
 * COMMAND as a child process: stdin, stdout and stderr passed through, SIGINT / SIGTERM /
 * SIGHUP forwarded while it runs, stopped with SIGTERM then SIGKILL after a grace period when
 * its run ends elsewhere, and its end told as a shell tells it (code, or 128+N for a signal).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';

export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export interface CommandEnd {
  /** The code a shell would report: the exit code, 128+N for signal N, 127 / 126 when it could not start. */
  code: number;
  signal: NodeJS.Signals | null;
  /** Why it could not start (ENOENT, EACCES), when it could not. */
  spawnError: string | null;
}

export function signalCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

export class RunningCommand {
  readonly child: ChildProcess;
  readonly ended: Promise<CommandEnd>;
  /** The first signal forwarded to COMMAND from the wrapper's own, if any. */
  forwarded: NodeJS.Signals | null = null;
  private readonly listeners = new Map<NodeJS.Signals, () => void>();
  private killTimer: NodeJS.Timeout | null = null;

  /**
   * Forwards the wrapper's signals from before COMMAND is spawned: a signal that finds no
   * listener takes the process's default action and kills the wrapper at once, leaving COMMAND
   * running and its run unrecorded. Callers keep their own listeners until this one is made.
   */
  constructor(argv: readonly string[], env: NodeJS.ProcessEnv) {
    const [file, ...args] = argv as [string, ...string[]];
    for (const signal of FORWARDED_SIGNALS) {
      // Called from the event loop only, so after `child` is set below.
      const listener = () => {
        this.forwarded ??= signal;
        this.child.kill(signal);
      };
      this.listeners.set(signal, listener);
      process.on(signal, listener);
    }
    this.child = spawn(file, args, { stdio: 'inherit', env });
    this.ended = new Promise((done) => {
      this.child.once('error', (error: NodeJS.ErrnoException) => {
        // 127: not found; 126: found but not runnable (as a shell says).
        done({ code: error.code === 'ENOENT' ? 127 : 126, signal: null, spawnError: `${file}: ${error.message}` });
      });
      this.child.once('exit', (code, signal) => {
        done({ code: signal ? signalCode(signal) : (code ?? 1), signal, spawnError: null });
      });
    }).then((end) => {
      this.stopForwarding();
      if (this.killTimer) clearTimeout(this.killTimer);
      return end as CommandEnd;
    });
  }

  /** SIGTERM now, SIGKILL after `graceSeconds` if it is still running. */
  terminate(graceSeconds: number): void {
    if (this.killTimer || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    this.killTimer = setTimeout(() => this.child.kill('SIGKILL'), graceSeconds * 1000);
  }

  private stopForwarding(): void {
    for (const [signal, listener] of this.listeners) process.off(signal, listener);
    this.listeners.clear();
  }
}
