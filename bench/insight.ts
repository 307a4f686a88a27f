/**
 * Section 14: waitReport over a week of finished runs (default 1,000,000), p50 for windows of a
 * week, a day and an hour. The wait ledger is written directly (the rows the history read model
 * writes as runs leave the queue), not by replaying a log, so building the week takes seconds.
 *
 * Runs arrive evenly over the week; each waits (exponential, mean 60 s) held by one or two of
 * 16 limits (max concurrent runs, 10 team tags, 5 pools, root steps of a pool), some in two
 * stretches with a different set of limits, so about a hundred runs are queued at any instant.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { WaitInterval } from '../projections/state.js';
import type { Constraint, ConstraintKind } from '../src/domain/constraints.js';
import { waitByJob } from '../src/history/wait-by-job.js';
import { WAIT_LEDGER_SCHEMA, WaitLedger } from '../src/history/wait-ledger.js';
import { waitReport } from '../src/history/wait-report.js';
import { prng } from '../test/support/prng.js';
import {
  bytes,
  collect,
  fileSize,
  fmt,
  fmtInt,
  heading,
  load,
  measure,
  note,
  now,
  retainedBytes,
  size,
  stats,
  table,
  tempDir,
} from './harness.js';

const WEEK_MS = 7 * 24 * 3600 * 1000;
const START = Date.parse('2026-11-02T00:00:00.000Z');

function limit(kind: ConstraintKind, key: string | null, value: string | null, pool: string | null): Constraint {
  return { kind, key, value, pool, perUniqueValue: false, limit: 1, inUse: 1, message: '' };
}

const LIMITS: Constraint[] = [
  limit('MAX_CONCURRENT_RUNS', null, null, null),
  ...Array.from({ length: 10 }, (_, i) => limit('TAG_LIMIT', 'team', `t${i}`, null)),
  ...Array.from({ length: 4 }, (_, i) => limit('POOL_LIMIT', null, null, `pool${i}`)),
  limit('ROOT_STEP_POOLS', null, null, 'pool0'),
];

/** The waits of `runs` runs over a week, in the order they left the queue. */
function* week(runs: number, random: () => number): Generator<{ id: string; waits: WaitInterval[] }> {
  const pending: Array<{ left: number; id: string; waits: WaitInterval[] }> = [];
  const iso = (ms: number) => new Date(ms).toISOString();
  const pick = () => LIMITS[Math.floor(random() * LIMITS.length)] as Constraint;
  let emitted = 0;
  for (let i = 0; i < runs; i++) {
    const arrival = START + Math.floor((i / runs) * WEEK_MS);
    const length = Math.max(1000, Math.round(-Math.log(1 - random()) * 60_000));
    const first = random() < 0.3 ? [pick(), pick()] : [pick()];
    let waits: WaitInterval[];
    if (random() < 0.2) {
      const cut = arrival + Math.round(length * random());
      waits = [
        { from: iso(arrival), to: iso(cut), reasons: first },
        { from: iso(cut), to: iso(arrival + length), reasons: [pick()] },
      ];
    } else {
      waits = [{ from: iso(arrival), to: iso(arrival + length), reasons: first }];
    }
    pending.push({ left: arrival + length, id: `run-${i}`, waits });
    // Runs leave in time order: hand out every run that left before the next arrival could.
    if (pending.length >= 4096 || i === runs - 1) {
      pending.sort((a, b) => a.left - b.left);
      const horizon = i === runs - 1 ? Number.POSITIVE_INFINITY : arrival;
      while (pending.length > 0 && (pending[0] as { left: number }).left <= horizon) {
        const next = pending.shift() as { id: string; waits: WaitInterval[] };
        emitted++;
        yield next;
      }
    }
  }
  if (emitted !== runs) throw new Error(`wrote ${emitted} of ${runs} runs`);
}

export function waitReportSection(): void {
  heading('14. waitReport over a week of finished runs (the wait ledger, SQLite on disk)');
  const runs = size('BENCH_REPORT_RUNS', 1_000_000);
  const dir = tempDir();
  const path = join(dir, 'history.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(WAIT_LEDGER_SCHEMA);
  const ledger = new WaitLedger(db);
  const random = prng(14);
  const t0 = now();
  let batch: Array<{ id: string; waits: WaitInterval[] }> = [];
  const write = db.transaction((items: typeof batch) => {
    for (const item of items) ledger.recordLeft(item.id, `job-${item.id.length % 7}`, item.waits);
  });
  for (const item of week(runs, random)) {
    batch.push(item);
    if (batch.length === 10_000) {
      write(batch);
      batch = [];
    }
  }
  write(batch);
  db.pragma('wal_checkpoint(TRUNCATE)');
  const buildS = (now() - t0) / 1000;
  note(
    `${fmtInt(runs)} runs written in ${fmt(buildS)} s (${fmt((buildS * 1e6) / runs)} µs a run as it leaves the queue); file ${bytes(fileSize(path))}`,
  );

  collect();
  const heapBefore = retainedBytes();
  const rssBefore = process.memoryUsage().rss;
  const windows: Array<[string, number]> = [
    ['the whole week', WEEK_MS],
    ['a day', 24 * 3600 * 1000],
    ['an hour', 3600 * 1000],
  ];
  const rows: Array<Array<string | number>> = [];
  let whole = waitReport(ledger, START, START + WEEK_MS, []);
  for (const [name, span] of windows) {
    let k = 0;
    const samples = measure(
      () => {
        // Windows that start anywhere in the week (the whole week: the same one).
        const from = span === WEEK_MS ? START : START + Math.floor(((k++ * 0.618) % 1) * (WEEK_MS - span));
        const report = waitReport(ledger, from, from + span, []);
        if (span === WEEK_MS) whole = report;
      },
      { warmup: 2, minReps: 20, budgetMs: 2000 },
    );
    const wall = stats(samples.wall);
    rows.push([name, wall.n, wall.p50, wall.p99, stats(samples.cpu).p50]);
  }
  table(['window', 'reports', 'p50 ms', 'p99 ms', 'CPU p50 ms'], rows);
  // Per job (byJob): one ledger row per run that waited in the window, for exact percentiles.
  const jobRows: Array<Array<string | number>> = [];
  for (const [name, span] of windows) {
    let k = 0;
    const samples = measure(
      () => {
        const from = span === WEEK_MS ? START : START + Math.floor(((k++ * 0.618) % 1) * (WEEK_MS - span));
        waitByJob(ledger, from, from + span, []);
      },
      { warmup: 1, minReps: 5, budgetMs: 2000 },
    );
    const wall = stats(samples.wall);
    jobRows.push([name, wall.n, wall.p50, wall.p99, stats(samples.cpu).p50]);
  }
  table(['byJob window', 'reports', 'p50 ms', 'p99 ms', 'CPU p50 ms'], jobRows);
  collect();
  note(
    `week: ${fmtInt(whole.runs)} runs waited ${fmt(whole.waitSeconds / 3600)} run-hours; top limit ${whole.byLimit[0]?.kind} held ${fmt((whole.byLimit[0]?.heldSeconds ?? 0) / 3600)} h`,
  );
  note(
    `memory: heap retained after the reports ${bytes(retainedBytes() - heapBefore)} more than before; RSS ${bytes(process.memoryUsage().rss - rssBefore)} more (SQLite page cache); ${load()}`,
  );
  db.close();
  rmSync(dir, { recursive: true, force: true });
}
