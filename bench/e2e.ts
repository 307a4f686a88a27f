/**
 * Section 3: commands through Sluice and the SQLite store on a temporary file, as the server
 * runs them (catch up, decide, append with the expected revision, fold; a checkpoint store
 * beside the log), one command at a time: synchronous FULL against NORMAL.
 */
import { join } from 'node:path';
import { Sluice } from '../src/app/sluice.js';
import type { Command } from '../src/domain/commands.js';
import { openCheckpointStore } from '../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import {
  bytes,
  emptySamples,
  fileSize,
  fmt,
  heading,
  load,
  note,
  type Samples,
  size,
  stats,
  table,
  tempDir,
} from './harness.js';

interface Phase {
  name: string;
  samples: Samples;
  events: number;
  wallMs: number;
}

async function timeAsync(into: Samples, op: () => Promise<unknown>): Promise<void> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await op();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  into.wall.push(wall);
  into.cpu.push((c.user + c.system) / 1000);
}

async function runMode(synchronous: 'FULL' | 'NORMAL', commands: number) {
  const dir = tempDir();
  const path = join(dir, 'events.db');
  const store = openSqliteStore({ path, synchronous });
  const checkpoints = openCheckpointStore(join(dir, 'events.checkpoints.db'));
  const sluice = await Sluice.open({ store, checkpoints, warn: (m) => console.warn(m) });
  const phases: Phase[] = [];
  const run = async (name: string, n: number, command: (i: number) => Command) => {
    const phase: Phase = { name, samples: emptySamples(), events: 0, wallMs: 0 };
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      await timeAsync(phase.samples, async () => {
        phase.events += (await sluice.execute(command(i), 'bench')).events.length;
      });
    }
    phase.wallMs = performance.now() - t0;
    phases.push(phase);
  };
  const half = Math.max(1, Math.floor(commands / 2));
  // maxConcurrentRuns stays at its default of 10: the first 10 are admitted, the rest held.
  await run('enqueue', half, (i) => ({
    type: 'EnqueueRun',
    input: { runId: `run-${i}`, jobName: 'job', tags: i % 10 === 0 ? [{ key: 'team', value: 'etl' }] : [] },
  }));
  // Each finish frees a place and admits the next queued run.
  await run('finish', half, () => {
    const [runId] = sluice.state.inProgress;
    if (runId === undefined) throw new Error('no run in progress to finish');
    return { type: 'MarkRunFinished', runId, status: 'SUCCESS' };
  });
  await sluice.close();
  await store.close();
  checkpoints.close();
  return { synchronous, phases, logBytes: fileSize(path) };
}

export async function e2eSection(): Promise<void> {
  heading('3. End-to-end commands through Sluice + SQLite (temp file), one at a time');
  const commands = size('BENCH_E2E_COMMANDS', 2_000, 20);
  note(`${commands} commands per mode: ${Math.floor(commands / 2)} enqueues, then as many finishes (each admits one).`);
  note(`Checkpoint store beside the log, checkpointEvery 1000 (the server's default). ${load()} at start.`);
  console.log();
  const rows: Array<Array<string | number>> = [];
  for (const mode of ['FULL', 'NORMAL'] as const) {
    const result = await runMode(mode, commands);
    for (const p of result.phases) {
      const wall = stats(p.samples.wall);
      const cpu = stats(p.samples.cpu);
      rows.push([
        `${mode} ${p.name}`,
        fmt((p.samples.wall.length / p.wallMs) * 1000),
        fmt(wall.p50),
        fmt(wall.p99),
        fmt(wall.max),
        fmt(cpu.mean * 1000),
        fmt(p.events / p.samples.wall.length),
      ]);
    }
    rows.push([`${mode} log file`, bytes(result.logBytes), '', '', '', '', '']);
  }
  table(['mode phase', 'commands/s', 'p50 ms', 'p99 ms', 'max ms', 'CPU µs/cmd', 'events/cmd'], rows);
  note('FULL fsyncs the WAL on every commit (survives power loss); NORMAL survives a killed process, not power loss.');
}
