/**
 * COMMAND's forwarding of the wrapper's signals is in place before COMMAND is spawned: a signal
 * that finds no listener takes the default action and kills the wrapper, leaving COMMAND running
 * and its run unrecorded (seen under load: the wrapper was SIGTERMed right as COMMAND started).
 */
import type * as childProcess from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it, vi } from 'vitest';

const atSpawn: Array<Record<string, number>> = [];

vi.mock('node:child_process', async (importOriginal) => {
  const original = await importOriginal<typeof childProcess>();
  return {
    ...original,
    spawn: (...args: Parameters<typeof original.spawn>) => {
      atSpawn.push(
        Object.fromEntries(['SIGINT', 'SIGTERM', 'SIGHUP'].map((signal) => [signal, process.listenerCount(signal)])),
      );
      return original.spawn(...args);
    },
  };
});

const { FORWARDED_SIGNALS, RunningCommand } = await import('../../src/cli/wrap-command.js');

afterEach(() => {
  atSpawn.length = 0;
});

it('given no other listener, when COMMAND is spawned, then each signal the wrapper forwards already has a listener', async () => {
  const before = Object.fromEntries(FORWARDED_SIGNALS.map((signal) => [signal, process.listenerCount(signal)]));
  const command = new RunningCommand(['sh', '-c', 'exit 0'], process.env);
  expect(atSpawn).toEqual([Object.fromEntries(FORWARDED_SIGNALS.map((signal) => [signal, (before[signal] ?? 0) + 1]))]);
  expect((await command.ended).code).toBe(0);
  // And none is left once COMMAND has ended.
  expect(Object.fromEntries(FORWARDED_SIGNALS.map((signal) => [signal, process.listenerCount(signal)]))).toEqual(
    before,
  );
});

it('given COMMAND running, when the wrapper gets SIGTERM, then COMMAND gets it and its end says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-running-command-'));
  const ready = join(dir, 'ready');
  try {
    const command = new RunningCommand(
      ['sh', '-c', `trap 'kill $!; exit 5' TERM; sleep 30 & touch ${ready}; wait`],
      process.env,
    );
    // Once the shell has set its trap, this process is signalled as a user would the wrapper.
    while (!existsSync(ready)) await new Promise((done) => setTimeout(done, 10));
    process.emit('SIGTERM', 'SIGTERM');
    const end = await command.ended;
    expect(command.forwarded).toBe('SIGTERM');
    expect(end.code).toBe(5);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
