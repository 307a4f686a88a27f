/**
 * Section 13: what the root-step hold (Dagster's OP-granularity run blocking) costs as the
 * queue grows. Every run has one root step in pool `db` (limit 10) and nothing else limits runs,
 * so the hold alone keeps the queue waiting: 10 runs are admitted, started, and hold db's slots.
 * Each round releases the oldest holder's slot (which admits the next queued run in the same
 * append), finishes that run, starts the admitted one and has it claim its slot. Timed: the
 * release, the command that makes room. Through the Sluice class on an SQLite file, as section 8.
 *
 * The queue is written straight into the log while maxConcurrentRuns is 0; one
 * ChangeConcurrencyConfig then sets db's limit and lifts the run limit, and the hold admits 10.
 */
import { join } from 'node:path';
import { Sluice } from '../src/app/sluice.js';
import type { DomainEvent } from '../src/domain/events.js';
import { openCheckpointStore } from '../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import { fmt, heading, load, note, now, size, sizes, stats, table, tempDir } from './harness.js';
import { appendAll } from './logs.js';

const quiet = () => {};
const LIMIT = 10;

function* queuedWithRootStep(runs: number): Generator<DomainEvent> {
  for (let i = 0; i < runs; i++) {
    yield {
      type: 'RunEnqueued',
      data: {
        runId: `queued-${i}`,
        jobName: 'job',
        tags: [],
        steps: [
          { key: 'load', pool: 'db', priority: 0 },
          { key: 'report', pool: null, priority: 0, dependsOn: ['load'] },
        ],
        priority: 0,
        maxConcurrentSteps: null,
        leaseSeconds: null,
      },
    };
  }
}

const admittedIn = (events: ReadonlyArray<{ type: string; data: unknown }>) =>
  events.filter((e) => e.type === 'RunAdmitted').map((e) => (e.data as { runId: string }).runId);

async function startAndClaim(sluice: Sluice, runId: string): Promise<void> {
  await sluice.execute({ type: 'MarkRunStarted', runId }, 'bench');
  await sluice.execute({ type: 'ClaimStepSlot', runId, stepKey: 'load' }, 'bench');
}

async function measure(dir: string, queued: number, rounds: number) {
  const path = join(dir, `hold-${queued}.db`);
  const store = openSqliteStore({ path });
  const checkpoints = openCheckpointStore(join(dir, `hold-${queued}.checkpoints.db`));
  const sluice = await Sluice.open({ store, checkpoints, warn: quiet });
  await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 0 }, 'bench');
  await appendAll(store, queuedWithRootStep(queued + LIMIT));
  const outcome = await sluice.execute(
    { type: 'ChangeConcurrencyConfig', change: { maxConcurrentRuns: -1, poolLimits: [{ pool: 'db', limit: LIMIT }] } },
    'bench',
  );
  const holders = admittedIn(outcome.events);
  if (holders.length !== LIMIT) throw new Error(`expected ${LIMIT} runs admitted, got ${holders.length}`);
  for (const runId of holders) await startAndClaim(sluice, runId);
  const ms: number[] = [];
  const events: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const runId = holders.shift() as string;
    const t0 = now();
    const released = await sluice.execute({ type: 'ReleaseStepSlot', runId, stepKey: 'load' }, 'bench');
    ms.push(now() - t0);
    events.push(released.events.length);
    const admitted = admittedIn(released.events);
    if (admitted.length !== 1) throw new Error(`a release admitted ${admitted.length} runs, expected 1`);
    await sluice.execute({ type: 'MarkRunFinished', runId, status: 'SUCCESS' }, 'bench');
    for (const next of admitted) {
      await startAndClaim(sluice, next);
      holders.push(next);
    }
    await new Promise((done) => setImmediate(done));
  }
  await sluice.close();
  await store.close();
  checkpoints.close();
  return { ms, events };
}

export async function rootStepHoldSection(): Promise<void> {
  const queueSizes = sizes('BENCH_HOLD_QUEUES', [100, 10_000, 100_000], 10);
  const rounds = size('BENCH_HOLD_ROUNDS', 20, 3);
  heading('13. The root-step hold: a slot released admits the next held run, as the queue grows');
  note(`pool db limit ${LIMIT}, every run's root step in db, no run limit: the hold alone keeps the queue.`);
  note(
    `${rounds} rounds per size: release the oldest holder's slot (timed), finish it, start and claim the admitted run.`,
  );
  note(`${load()} at start.`);
  console.log();
  const dir = tempDir();
  const rows: Array<Array<string | number>> = [];
  const p50s: number[] = [];
  for (const queued of queueSizes) {
    const r = await measure(dir, queued, rounds);
    const e = stats(r.events);
    const t = stats(r.ms);
    p50s.push(t.p50);
    rows.push([queued.toLocaleString('en-US'), e.p50, e.max, t.p50, t.p99]);
  }
  table(['queued', 'events p50', 'events max', 'ms p50', 'ms max'], rows);
  if (p50s.length > 1) {
    note(
      `ratio ms p50 at ${queueSizes.at(-1)?.toLocaleString('en-US')} vs ${queueSizes[0]?.toLocaleString('en-US')} queued: ` +
        `${fmt((p50s.at(-1) as number) / (p50s[0] as number))}× (goal: cost follows what changes, at most 1.5×)`,
    );
  }
  note("events: StepSlotReleased and RunAdmitted; the pool's root-step counter is full before and after, at the");
  note('same count, so no limit-state record is needed.');
}
