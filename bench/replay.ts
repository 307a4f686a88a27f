/**
 * Sections 4 and 5: start-up (replaying the log into the projections) from scratch and from a
 * checkpoint, the memory the projections keep, and snapshot(position) (Sluice.stateAt) on a
 * long log with and without checkpoints.
 *
 * The logs are written straight to SQLite from a workload run through the pure core: runs
 * enqueued (10% tagged team=etl, tag limit 2), admitted under maxConcurrentRuns 10, started,
 * one step each claiming a slot of pool `db` (limit 3), finished; about 50 runs kept queued.
 */
import { join } from 'node:path';
import { deserializeState, serializeState } from '../projections/serialize.js';
import { DEPLOYMENT_STREAM, Sluice } from '../src/app/sluice.js';
import { CURRENT_SCHEMA_VERSION, type LoggedEvent } from '../src/domain/events.js';
import { openCheckpointStore } from '../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import type { ExpectedRevision } from '../src/eventstore/store.js';
import { Core } from './core.js';
import {
  bytes,
  collect,
  fileSize,
  fmt,
  heading,
  load,
  memoryMetric,
  note,
  now,
  retainedBytes,
  sizes,
  table,
  tempDir,
} from './harness.js';

const CHECKPOINT_EVERY = 1_000;
const quiet = () => {};

/** Runs the workload until the log holds at least `events` events; ends on a command boundary. */
export function generateLog(events: number): { log: LoggedEvent[]; boundaries: number[] } {
  const core = new Core({ keepLog: true });
  const log = core.log as LoggedEvent[];
  const boundaries: number[] = [];
  core.exec({ type: 'SetTagConcurrencyLimits', limits: [{ key: 'team', value: 'etl', limit: 2 }] });
  core.exec({ type: 'SetPoolLimit', pool: 'db', limit: 3 });
  for (let i = 0; log.length < events; i++) {
    core.enqueue({
      runId: `run-${i}`,
      tags: i % 10 === 0 ? [{ key: 'team', value: 'etl' }] : [],
      steps: [{ key: 'load', pool: 'db' }],
    });
    for (const runId of [...core.state.inProgress]) {
      if (core.run(runId).status !== 'STARTING') continue;
      core.exec({ type: 'MarkRunStarted', runId });
      core.exec({ type: 'ClaimStepSlot', runId, stepKey: 'load' });
    }
    while (core.state.queue.size > 50) {
      const oldest = core.firstInProgress();
      if (!oldest) break;
      core.exec({ type: 'MarkRunFinished', runId: oldest.id, status: i % 7 === 0 ? 'FAILURE' : 'SUCCESS' });
    }
    boundaries.push(log.length);
  }
  return { log, boundaries };
}

async function writeLog(path: string, events: readonly LoggedEvent[]): Promise<void> {
  const store = openSqliteStore({ path, synchronous: 'NORMAL' });
  let expected: ExpectedRevision = 'no_stream';
  for (let i = 0; i < events.length; i += 5_000) {
    const chunk = events.slice(i, i + 5_000).map((e) => ({
      type: e.type,
      schemaVersion: CURRENT_SCHEMA_VERSION,
      data: e.data,
      actor: e.actor,
      at: e.at,
    }));
    expected = (await store.append(DEPLOYMENT_STREAM, chunk, expected)).nextExpectedRevision;
  }
  await store.close();
}

interface Fixture {
  events: number;
  path: string;
  checkpointPath: string;
}

async function openTimed(path: string, checkpointPath: string | null) {
  const store = openSqliteStore({ path });
  const checkpoints = checkpointPath ? openCheckpointStore(checkpointPath) : undefined;
  const t0 = now();
  const sluice = await Sluice.open({ store, checkpoints, checkpointEvery: CHECKPOINT_EVERY, warn: quiet });
  const ms = now() - t0;
  return {
    sluice,
    ms,
    close: async () => {
      await sluice.close();
      await store.close();
      checkpoints?.close();
    },
  };
}

export async function replaySections(): Promise<void> {
  heading(
    '4. Start-up: replay from scratch vs from a checkpoint (spacing: 1000 events, or a quarter of the log), memory',
  );
  const targets = sizes('BENCH_REPLAY_EVENTS', [20_000, 100_000], 1_000);
  const t0 = now();
  const { log, boundaries } = generateLog(Math.max(...targets));
  const dir = tempDir();
  const fixtures: Fixture[] = [];
  for (const target of targets) {
    const end = boundaries.find((b) => b >= target) ?? log.length;
    const path = join(dir, `log-${target}.db`);
    await writeLog(path, log.slice(0, end));
    fixtures.push({ events: end, path, checkpointPath: join(dir, `log-${target}.checkpoints.db`) });
  }
  note(`logs generated and written in ${fmt((now() - t0) / 1000)} s; ${load()}.`);
  note(`memory: ${memoryMetric}, the projections' share (after open minus before).`);
  console.log();
  // Warm-up (untimed): the first replay in a process also pays for compiling the code.
  if (fixtures[0]) await (await openTimed(fixtures[0].path, null)).close();
  const rows: Array<Array<string | number>> = [];
  const checkpointRows: Array<Array<string | number>> = [];
  for (const f of fixtures) {
    collect();
    const before = retainedBytes();
    const scratch = await openTimed(f.path, null);
    const retained = retainedBytes() - before;
    const runs = scratch.sluice.state.runCount;
    // One checkpoint of the state at the head: what the server pays each time one is due.
    const s0 = now();
    const json = serializeState(scratch.sluice.state);
    const serializeMs = now() - s0;
    const d0 = now();
    deserializeState(json);
    const deserializeMs = now() - d0;
    checkpointRows.push([fmtCount(f.events), bytes(Buffer.byteLength(json)), fmt(serializeMs), fmt(deserializeMs)]);
    await scratch.close();
    // First start with a checkpoint store: replays from scratch and writes the checkpoints due.
    const writing = await openTimed(f.path, f.checkpointPath);
    await writing.close();
    const fromCheckpoint = await openTimed(f.path, f.checkpointPath);
    const head = fromCheckpoint.sluice.state.revision;
    await fromCheckpoint.close();
    rows.push([
      fmtCount(f.events),
      fmtCount(runs),
      bytes(fileSize(f.path)),
      fmt(scratch.ms),
      fmt((f.events / scratch.ms) * 1000),
      fmt(writing.ms),
      fmt(fromCheckpoint.ms),
      `${fmt(scratch.ms / fromCheckpoint.ms)}×`,
      bytes(fileSize(f.checkpointPath)),
      bytes((retained / runs) * 1000),
      bytes((retained / f.events) * 1000),
    ]);
    if (head !== BigInt(f.events - 1)) throw new Error(`replayed to ${head}, log ends at ${f.events - 1}`);
  }
  table(
    [
      'events',
      'runs',
      'log file',
      'scratch ms',
      'events/s',
      '1st start + ckpts ms',
      'from ckpt ms',
      'speed-up',
      'ckpt file',
      'mem/1k runs',
      'mem/1k events',
    ],
    rows,
  );
  note('"1st start + ckpts": replay from scratch while writing the checkpoints due (each serializes the whole state).');
  note('Checkpoints are spaced by 1000 events or a quarter of the log, whichever is more: their number grows');
  note('with the logarithm of the log and their total size stays a few times one state.');
  console.log();
  table(['one checkpoint at the head', 'size', 'serialize ms', 'deserialize ms'], checkpointRows);
  note('A checkpoint holds the whole history (every run, decision and wait). While serving, the server');
  note('writes one after the command that made it due has answered.');

  const longest = fixtures.at(-1);
  if (longest) await snapshotSection(longest);
}

const fmtCount = (n: number) => n.toLocaleString('en-US');

async function snapshotSection(f: Fixture): Promise<void> {
  heading(`5. snapshot(position) = Sluice.stateAt on a ${fmtCount(f.events)}-event log, with and without checkpoints`);
  const plain = await openTimed(f.path, null);
  const withCkpt = await openTimed(f.path, f.checkpointPath);
  const rows: Array<Array<string | number>> = [];
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
  for (const share of [0.1, 0.5, 0.9]) {
    const target = Math.floor((f.events - 1) * share);
    const plainMs: number[] = [];
    const ckptMs: number[] = [];
    let repeatMs = 0;
    let same = true;
    // Three neighbouring positions, so Sluice's small cache of past states never answers.
    for (let k = 0; k < 3; k++) {
      const position = BigInt(target - k);
      collect();
      const t0 = now();
      const a = await plain.sluice.stateAt(position);
      const t1 = now();
      const b = await withCkpt.sluice.stateAt(position);
      const t2 = now();
      // The same position again is served from that cache.
      await withCkpt.sluice.stateAt(position);
      repeatMs = Math.max(repeatMs, now() - t2);
      plainMs.push(t1 - t0);
      ckptMs.push(t2 - t1);
      same &&= serializeState(a) === serializeState(b);
    }
    rows.push([
      `${fmtCount(target)} (${share * 100}%)`,
      fmt(median(plainMs)),
      fmt(median(ckptMs)),
      `${fmt(median(plainMs) / median(ckptMs))}×`,
      fmt(repeatMs),
      same ? 'yes' : 'NO',
    ]);
  }
  await plain.close();
  await withCkpt.close();
  table(['position (3 reps, median)', 'no ckpt ms', 'with ckpt ms', 'speed-up', 'cached ms', 'same state'], rows);
  note('Without checkpoints a snapshot replays from event 0; with them, from the nearest checkpoint at or before it.');
}
