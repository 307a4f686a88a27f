/**
 * Section 6: two Sluice instances in one process, each with its own connection to one SQLite
 * file, racing enqueues and finishes under maxConcurrentRuns 2. Each instance decides on its own
 * projections and appends with the expected revision; a lost race (ConcurrencyError) makes it
 * catch up and decide again. Lost races are counted by wrapping each store's append. Afterwards
 * the log is read back through a third connection and checked by a fold independent of the
 * projections: at no point may more than the limit be in progress.
 */
import { join } from 'node:path';
import { DEPLOYMENT_STREAM, Sluice, TooMuchContentionError } from '../src/app/sluice.js';
import type { Command } from '../src/domain/commands.js';
import { DomainError } from '../src/domain/errors.js';
import { ConcurrencyError } from '../src/eventstore/errors.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import type { EventStore, RecordedEvent } from '../src/eventstore/store.js';
import { prng } from '../test/support/prng.js';
import { emptySamples, fmt, heading, load, note, type Samples, size, stats, table, tempDir } from './harness.js';

const LIMIT = 2;

export interface Counts {
  appends: number;
  lost: number;
}

/** The store, with every append and every lost race counted. */
export function counting(store: EventStore, counts: Counts): EventStore {
  return {
    get description() {
      return store.description;
    },
    async append(stream, events, expected) {
      counts.appends++;
      try {
        return await store.append(stream, events, expected);
      } catch (error) {
        if (error instanceof ConcurrencyError) counts.lost++;
        throw error;
      }
    },
    readStream: (stream, options) => store.readStream(stream, options),
    readAll: (options) => store.readAll(options),
    streamRevision: (stream) => store.streamRevision(stream),
    subscribe: (stream, options, onEvent, onError) => store.subscribe(stream, options, onEvent, onError),
    close: () => store.close(),
  };
}

export interface Tally {
  commands: number;
  noOps: number;
  refused: number;
  /** Commands that lost the race for the log on every attempt (TooMuchContentionError). */
  gaveUp: number;
  latency: Samples;
}

export async function worker(sluice: Sluice, name: string, commands: number, tally: Tally): Promise<void> {
  const random = prng(name.length * 7919 + name.charCodeAt(0));
  for (let i = 0; i < commands; i++) {
    // Decided on this instance's view, which may be behind the other instance: that is the race.
    const inProgress = [...sluice.state.inProgress];
    const finish = inProgress.length > 0 && random() < 0.5;
    const command: Command = finish
      ? {
          type: 'MarkRunFinished',
          runId: inProgress[Math.floor(random() * inProgress.length)] as string,
          status: 'SUCCESS',
        }
      : { type: 'EnqueueRun', input: { runId: `${name}-${i}`, jobName: 'job' } };
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    try {
      const outcome = await sluice.execute(command, name);
      if (outcome.events.length === 0) tally.noOps++;
    } catch (error) {
      if (error instanceof TooMuchContentionError) tally.gaveUp++;
      else if (error instanceof DomainError) tally.refused++;
      else throw error;
    }
    const c = process.cpuUsage(c0);
    tally.latency.wall.push(performance.now() - t0);
    tally.latency.cpu.push((c.user + c.system) / 1000);
    tally.commands++;
  }
}

/** Folds the log with no help from the projections; reports the most runs ever in progress. */
async function audit(path: string) {
  const store = openSqliteStore({ path });
  const events = await store.readStream(DEPLOYMENT_STREAM);
  await store.close();
  return auditLog(events);
}

export function auditLog(events: readonly RecordedEvent[]) {
  let limit = 10;
  const status = new Map<string, string>();
  let inProgress = 0;
  let maxInProgress = 0;
  let admitted = 0;
  const violations: string[] = [];
  for (const e of events) {
    const data = e.data as { runId?: string; limit?: number; status?: string };
    switch (e.type) {
      case 'MaxConcurrentRunsSet':
        limit = data.limit as number;
        break;
      case 'RunEnqueued':
        if (status.has(data.runId as string)) violations.push(`run ${data.runId} enqueued twice at ${e.revision}`);
        status.set(data.runId as string, 'QUEUED');
        break;
      case 'RunAdmitted':
        if (status.get(data.runId as string) !== 'QUEUED') {
          violations.push(`run ${data.runId} admitted while ${status.get(data.runId as string)} at ${e.revision}`);
        }
        status.set(data.runId as string, 'STARTING');
        admitted++;
        inProgress++;
        maxInProgress = Math.max(maxInProgress, inProgress);
        if (limit >= 0 && inProgress > limit) {
          violations.push(`${inProgress} runs in progress, limit ${limit}, at ${e.revision}`);
        }
        break;
      case 'RunFinished': {
        const before = status.get(data.runId as string);
        if (before === 'STARTING' || before === 'STARTED' || before === 'CANCELING') inProgress--;
        else if (before !== 'QUEUED') violations.push(`run ${data.runId} finished while ${before} at ${e.revision}`);
        status.set(data.runId as string, data.status as string);
        break;
      }
    }
  }
  return { events: events.length, admitted, maxInProgress, violations };
}

export async function raceSection(): Promise<void> {
  heading(`6. Two Sluice instances, one SQLite file, racing under maxConcurrentRuns ${LIMIT}`);
  const total = size('BENCH_RACE_COMMANDS', 1_000, 20);
  const path = join(tempDir(), 'events.db');
  const countsA: Counts = { appends: 0, lost: 0 };
  const countsB: Counts = { appends: 0, lost: 0 };
  const storeA = counting(openSqliteStore({ path }), countsA);
  const storeB = counting(openSqliteStore({ path }), countsB);
  const a = await Sluice.open({ store: storeA, warn: () => {} });
  const b = await Sluice.open({ store: storeB, warn: () => {} });
  await a.execute({ type: 'SetMaxConcurrentRuns', limit: LIMIT }, 'a');
  countsA.appends = 0;
  const tallies = { a: emptyTally(), b: emptyTally() };
  const t0 = performance.now();
  await Promise.all([
    worker(a, 'a', Math.ceil(total / 2), tallies.a),
    worker(b, 'b', Math.floor(total / 2), tallies.b),
  ]);
  const wallMs = performance.now() - t0;
  await a.close();
  await b.close();
  await storeA.close();
  await storeB.close();
  const result = await audit(path);

  note(`${total} commands (SQLite synchronous FULL, the default), both instances in one event loop; ${load()}.`);
  note('Each command: enqueue, or (half the time, when it sees runs in progress) finish one of them.');
  console.log();
  const rows = (['a', 'b'] as const).map((name) => {
    const t = tallies[name];
    const c = name === 'a' ? countsA : countsB;
    const w = stats(t.latency.wall);
    return [
      `instance ${name}`,
      String(t.commands),
      String(c.appends),
      String(c.lost),
      fmt(c.lost / t.commands),
      String(t.noOps),
      String(t.refused),
      fmt(w.p50),
      fmt(w.p99),
    ];
  });
  table(['', 'commands', 'appends', 'lost races', 'lost/cmd', 'no-ops', 'refused', 'p50 ms', 'p99 ms'], rows);
  console.log();
  const commands = tallies.a.commands + tallies.b.commands;
  note(`throughput: ${fmt((commands / wallMs) * 1000)} commands/s together (${fmt(wallMs / 1000)} s)`);
  note(
    `lost races: ${countsA.lost + countsB.lost} (each retried after catching up); ` +
      `log: ${result.events} events, ${result.admitted} admissions, at most ${result.maxInProgress} in progress`,
  );
  note(
    result.violations.length === 0
      ? `admission check from the log: OK (never more than ${LIMIT} in progress, no run admitted twice)`
      : `admission check from the log: VIOLATION (${result.violations.length}): ${result.violations.slice(0, 5).join('; ')}`,
  );
  note('no-ops: a finish of a run the other instance had already finished (idempotent, nothing appended).');
}

export function emptyTally(): Tally {
  return { commands: 0, noOps: 0, refused: 0, gaveUp: 0, latency: emptySamples() };
}
