/**
 * The waits of runs that have left the queue, kept in the history file so that a wait report
 * over any window costs a few index seeks rather than a replay of every run:
 *
 * - each run's wait stretches with the limits that held it (written once, when it leaves);
 * - per run and per limit, running totals in the order runs left the queue, so the waiting of
 *   every run that left inside a window is a difference of two prefix sums;
 * - the runs still queued at each bucket boundary, so the few runs a window's edges cut
 *   through are found by one bucket and one short scan, and clipped exactly.
 *
 * Times are integer milliseconds; event times never go backwards, so leave order is time order.
 */
import type Database from 'better-sqlite3';
import type { WaitInterval } from '../../projections/state.js';
import { type Constraint, type ConstraintKind, constraintIdentity } from '../domain/constraints.js';

export const WAIT_LEDGER_TABLES = [
  'wait_limits',
  'wait_runs',
  'wait_holds',
  'wait_stretches',
  'wait_crossings',
  'wait_jobs',
];

/** Runs queued across a bucket boundary are listed at it: a window edge scans at most one bucket of arrivals. */
export const CROSSING_BUCKET_MS = 15 * 60 * 1000;

export const WAIT_LEDGER_SCHEMA = `
  CREATE TABLE IF NOT EXISTS wait_limits (
    id INTEGER PRIMARY KEY,
    identity TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    key TEXT,
    value TEXT,
    pool TEXT,
    per_unique INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS wait_runs (
    ord INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    job_name TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    left_ms INTEGER NOT NULL,
    waited_ms INTEGER NOT NULL,
    cum_ms INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS wait_runs_by_left ON wait_runs (left_ms, ord);
  CREATE INDEX IF NOT EXISTS wait_runs_by_first ON wait_runs (first_ms, left_ms);
  -- A job's runs in leave order with their waits: its runs in a window are one range of this
  -- index alone (no table row read), however many other jobs' runs left in the window.
  CREATE INDEX IF NOT EXISTS wait_runs_by_job ON wait_runs (job_name, left_ms, first_ms, waited_ms);
  -- Every job with a run in the ledger, so a report asks each one for its range.
  CREATE TABLE IF NOT EXISTS wait_jobs (job_name TEXT PRIMARY KEY) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS wait_holds (
    limit_id INTEGER NOT NULL,
    left_ms INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    cum_runs INTEGER NOT NULL,
    cum_held INTEGER NOT NULL,
    cum_sole INTEGER NOT NULL,
    PRIMARY KEY (limit_id, left_ms, ord)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS wait_stretches (
    ord INTEGER NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    limits TEXT NOT NULL,
    PRIMARY KEY (ord, from_ms)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS wait_crossings (
    bucket_ms INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    PRIMARY KEY (bucket_ms, ord)
  ) WITHOUT ROWID;
`;

/** A limit as a wait report names it: which limit, not its value or count at any one moment. */
export interface WaitLimit {
  kind: ConstraintKind;
  key: string | null;
  value: string | null;
  pool: string | null;
  /** For TAG_LIMIT: a limit on each value of the key (told apart from a limit on that value alone). */
  perUniqueValue: boolean;
}

/** One stretch of a run's waiting, in milliseconds, with the ids of the limits that held it. */
export interface Stretch {
  fromMs: number;
  /** Infinity while the run still waits. */
  toMs: number;
  limits: number[];
}

/** Prefix sums over the runs that left the queue at or before an instant. */
export interface LeftBy {
  runs: number;
  waitedMs: number;
}

export interface LimitLeftBy {
  runs: number;
  heldMs: number;
  soleMs: number;
}

export class WaitLedger {
  private readonly s: ReturnType<WaitLedger['prepare']>;
  private readonly limitIds = new Map<string, number>();

  constructor(private readonly db: Database.Database) {
    this.s = this.prepare();
  }

  private prepare() {
    const db = this.db;
    const plain = (sql: string) => db.prepare(sql).safeIntegers(false);
    return {
      limitId: plain('SELECT id FROM wait_limits WHERE identity = ?').pluck(),
      insertLimit: plain(
        'INSERT INTO wait_limits (identity, kind, key, value, pool, per_unique) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      allLimits: plain('SELECT id, kind, key, value, pool, per_unique FROM wait_limits'),
      lastRun: plain('SELECT ord, cum_ms FROM wait_runs ORDER BY ord DESC LIMIT 1'),
      insertRun: plain(
        'INSERT INTO wait_runs (ord, run_id, job_name, first_ms, left_ms, waited_ms, cum_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      lastHold: plain(
        'SELECT cum_runs, cum_held, cum_sole FROM wait_holds WHERE limit_id = ? ORDER BY left_ms DESC, ord DESC LIMIT 1',
      ),
      insertHold: plain(
        'INSERT INTO wait_holds (limit_id, left_ms, ord, cum_runs, cum_held, cum_sole) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      insertStretch: plain('INSERT OR REPLACE INTO wait_stretches (ord, from_ms, to_ms, limits) VALUES (?, ?, ?, ?)'),
      insertCrossing: plain('INSERT OR IGNORE INTO wait_crossings (bucket_ms, ord) VALUES (?, ?)'),
      runsLeftBy: plain('SELECT ord, cum_ms FROM wait_runs WHERE left_ms <= ? ORDER BY left_ms DESC, ord DESC LIMIT 1'),
      holdsLeftBy: plain(
        'SELECT cum_runs, cum_held, cum_sole FROM wait_holds WHERE limit_id = ? AND left_ms <= ? ORDER BY left_ms DESC, ord DESC LIMIT 1',
      ),
      crossingsAt: plain(
        `SELECT r.ord, r.left_ms FROM wait_crossings c JOIN wait_runs r ON r.ord = c.ord
         WHERE c.bucket_ms = ? AND r.left_ms > ?`,
      ),
      arrivedBetween: plain('SELECT ord, left_ms FROM wait_runs WHERE first_ms >= ? AND first_ms < ? AND left_ms > ?'),
      leftBetween: plain(
        'SELECT ord, run_id, job_name, first_ms, waited_ms FROM wait_runs WHERE left_ms > ? AND left_ms <= ? ORDER BY left_ms, ord',
      ),
      runOf: plain('SELECT run_id, job_name FROM wait_runs WHERE ord = ?'),
      stretchesOf: plain('SELECT from_ms, to_ms, limits FROM wait_stretches WHERE ord = ? ORDER BY from_ms'),
      holdsBetween: plain(
        'SELECT ord, cum_held, cum_sole FROM wait_holds WHERE limit_id = ? AND left_ms > ? AND left_ms <= ? ORDER BY left_ms, ord',
      ).raw(),
      wholeRunsOfJob: plain(
        `SELECT ord, waited_ms FROM wait_runs INDEXED BY wait_runs_by_job
         WHERE job_name = ? AND left_ms > ? AND left_ms <= ? AND first_ms >= ?`,
      ),
      holdLimitIds: plain('SELECT DISTINCT limit_id FROM wait_holds').pluck(),
      insertJob: plain('INSERT OR IGNORE INTO wait_jobs (job_name) VALUES (?)'),
      jobNames: plain('SELECT job_name FROM wait_jobs').pluck(),
      wholeWaitsOfJob: plain(
        `SELECT waited_ms FROM wait_runs INDEXED BY wait_runs_by_job
         WHERE job_name = ? AND left_ms > ? AND left_ms <= ? AND first_ms >= ?`,
      ).pluck(),
      longestWholeOfJob: plain(
        `SELECT run_id, waited_ms FROM wait_runs INDEXED BY wait_runs_by_job
         WHERE job_name = ? AND left_ms > ? AND left_ms <= ? AND first_ms >= ? AND waited_ms >= ?`,
      ),
    };
  }

  /** The id of a limit, creating it the first time it holds a run. */
  limitId(c: Omit<Constraint, 'inUse' | 'message' | 'limit'>): number {
    const identity = constraintIdentity(c);
    const known = this.limitIds.get(identity);
    if (known !== undefined) return known;
    let id = this.s.limitId.get(identity) as number | undefined;
    if (id === undefined) {
      id = Number(
        this.s.insertLimit.run(identity, c.kind, c.key, c.value, c.pool, c.perUniqueValue ? 1 : 0).lastInsertRowid,
      );
    }
    this.limitIds.set(identity, id);
    return id;
  }

  limits(): Map<number, WaitLimit> {
    const rows = this.s.allLimits.all() as Array<
      Omit<WaitLimit, 'perUniqueValue'> & { id: number; per_unique: number }
    >;
    return new Map(rows.map(({ id, per_unique, ...limit }) => [id, { ...limit, perUniqueValue: per_unique === 1 }]));
  }

  /** A run's waits as stretches of limit ids: zero-length ones dropped, open ones to Infinity. */
  stretchesOfWaits(waits: readonly WaitInterval[]): Stretch[] {
    const stretches: Stretch[] = [];
    for (const wait of waits) {
      const fromMs = Date.parse(wait.from);
      const toMs = wait.to === null ? Number.POSITIVE_INFINITY : Date.parse(wait.to);
      if (!(toMs > fromMs)) continue;
      const limits = [...new Set(wait.reasons.map((reason) => this.limitId(reason)))].sort((a, b) => a - b);
      stretches.push({ fromMs, toMs, limits });
    }
    return stretches;
  }

  /** Records the waits of a run that has just left the queue (admitted, or canceled while queued). */
  recordLeft(runId: string, jobName: string, waits: readonly WaitInterval[]): void {
    const stretches = this.stretchesOfWaits(waits).filter((s) => Number.isFinite(s.toMs));
    if (stretches.length === 0) return;
    const last = this.s.lastRun.get() as { ord: number; cum_ms: number } | undefined;
    const ord = (last?.ord ?? 0) + 1;
    const firstMs = (stretches[0] as Stretch).fromMs;
    const leftMs = (stretches.at(-1) as Stretch).toMs;
    let waitedMs = 0;
    const byLimit = new Map<number, { held: number; sole: number }>();
    for (const stretch of stretches) {
      const length = stretch.toMs - stretch.fromMs;
      waitedMs += length;
      for (const id of stretch.limits) {
        const totals = byLimit.get(id) ?? { held: 0, sole: 0 };
        totals.held += length;
        if (stretch.limits.length === 1) totals.sole += length;
        byLimit.set(id, totals);
      }
      this.s.insertStretch.run(ord, stretch.fromMs, stretch.toMs, stretch.limits.join(','));
    }
    this.s.insertRun.run(ord, runId, jobName, firstMs, leftMs, waitedMs, (last?.cum_ms ?? 0) + waitedMs);
    this.s.insertJob.run(jobName);
    for (const [id, totals] of byLimit) {
      const prev = this.s.lastHold.get(id) as { cum_runs: number; cum_held: number; cum_sole: number } | undefined;
      this.s.insertHold.run(
        id,
        leftMs,
        ord,
        (prev?.cum_runs ?? 0) + 1,
        (prev?.cum_held ?? 0) + totals.held,
        (prev?.cum_sole ?? 0) + totals.sole,
      );
    }
    // Every bucket boundary strictly inside (first, left): the run was queued there.
    for (
      let bucket = Math.floor(firstMs / CROSSING_BUCKET_MS) * CROSSING_BUCKET_MS + CROSSING_BUCKET_MS;
      bucket < leftMs;
      bucket += CROSSING_BUCKET_MS
    ) {
      if (bucket > firstMs) this.s.insertCrossing.run(bucket, ord);
    }
  }

  /** Totals of the runs whose waiting ended at or before an instant. */
  leftBy(ms: number): LeftBy {
    const row = this.s.runsLeftBy.get(ms) as { ord: number; cum_ms: number } | undefined;
    return { runs: row?.ord ?? 0, waitedMs: row?.cum_ms ?? 0 };
  }

  limitLeftBy(limitId: number, ms: number): LimitLeftBy {
    const row = this.s.holdsLeftBy.get(limitId, ms) as
      | { cum_runs: number; cum_held: number; cum_sole: number }
      | undefined;
    return { runs: row?.cum_runs ?? 0, heldMs: row?.cum_held ?? 0, soleMs: row?.cum_sole ?? 0 };
  }

  /** The id of a limit that has held some run, or null: never creates one. */
  knownLimitId(c: Omit<Constraint, 'inUse' | 'message' | 'limit'>): number | null {
    const identity = constraintIdentity(c);
    const id = this.limitIds.get(identity) ?? (this.s.limitId.get(identity) as number | undefined);
    return id ?? null;
  }

  /**
   * Each run a limit held that left the queue inside (fromMs, toMs], in leave order, with what
   * the limit held of its whole wait (and alone): consecutive differences of the limit's running
   * totals, one range of its index and no other row read.
   */
  heldBetween(limitId: number, fromMs: number, toMs: number): Array<{ ord: number; heldMs: number; soleMs: number }> {
    const before = this.limitLeftBy(limitId, fromMs);
    let held = before.heldMs;
    let sole = before.soleMs;
    // Rows as arrays: a long window reads many, and objects per row cost more than the read.
    const rows = this.s.holdsBetween.all(limitId, fromMs, toMs) as Array<[number, number, number]>;
    return rows.map(([ord, cumHeld, cumSole]) => {
      const run = { ord, heldMs: cumHeld - held, soleMs: cumSole - sole };
      held = cumHeld;
      sole = cumSole;
      return run;
    });
  }

  /** Like wholeWaitsOfJob, with each run's ledger order (to name it later): still no row read. */
  wholeRunsOfJob(jobName: string, fromMs: number, toMs: number): Array<{ ord: number; ms: number }> {
    const rows = this.s.wholeRunsOfJob.all(jobName, fromMs, toMs, fromMs) as Array<{ ord: number; waited_ms: number }>;
    return rows.map((r) => ({ ord: r.ord, ms: r.waited_ms }));
  }

  /** Limits that held some run that has left the queue. */
  heldLimitIds(): number[] {
    return this.s.holdLimitIds.all() as number[];
  }

  /**
   * Recorded runs queued at an instant (first stretch before it, waiting ended after it), with
   * when their waiting ended: those listed at the bucket boundary at or before it, and those
   * that began to wait since that boundary.
   */
  queuedAt(ms: number): Array<{ ord: number; leftMs: number }> {
    const bucket = Math.floor(ms / CROSSING_BUCKET_MS) * CROSSING_BUCKET_MS;
    const rows = [
      ...(this.s.crossingsAt.all(bucket, ms) as Array<{ ord: number; left_ms: number }>),
      ...(this.s.arrivedBetween.all(bucket, ms, ms) as Array<{ ord: number; left_ms: number }>),
    ];
    return rows.map((r) => ({ ord: r.ord, leftMs: r.left_ms }));
  }

  /** Runs whose waiting ended inside (fromMs, toMs], in the order they left: one index range. */
  leftBetween(
    fromMs: number,
    toMs: number,
  ): Array<{ ord: number; runId: string; jobName: string; firstMs: number; waitedMs: number }> {
    const rows = this.s.leftBetween.all(fromMs, toMs) as Array<{
      ord: number;
      run_id: string;
      job_name: string;
      first_ms: number;
      waited_ms: number;
    }>;
    return rows.map((r) => ({
      ord: r.ord,
      runId: r.run_id,
      jobName: r.job_name,
      firstMs: r.first_ms,
      waitedMs: r.waited_ms,
    }));
  }

  /** Every job with a run in the ledger. */
  jobNames(): string[] {
    return this.s.jobNames.all() as string[];
  }

  /**
   * The waits of a job's runs that waited wholly inside (fromMs, toMs] (began at or after
   * fromMs, left by toMs), in no particular order: one range of the job's index, no row read.
   */
  wholeWaitsOfJob(jobName: string, fromMs: number, toMs: number): number[] {
    return this.s.wholeWaitsOfJob.all(jobName, fromMs, toMs, fromMs) as number[];
  }

  /** Those of wholeWaitsOfJob's runs that waited at least `atLeastMs`, with their ids. */
  longestWholeOfJob(
    jobName: string,
    fromMs: number,
    toMs: number,
    atLeastMs: number,
  ): Array<{ runId: string; ms: number }> {
    const rows = this.s.longestWholeOfJob.all(jobName, fromMs, toMs, fromMs, atLeastMs) as Array<{
      run_id: string;
      waited_ms: number;
    }>;
    return rows.map((r) => ({ runId: r.run_id, ms: r.waited_ms }));
  }

  runOf(ord: number): { runId: string; jobName: string } {
    const row = this.s.runOf.get(ord) as { run_id: string; job_name: string };
    return { runId: row.run_id, jobName: row.job_name };
  }

  stretchesOf(ord: number): Stretch[] {
    const rows = this.s.stretchesOf.all(ord) as Array<{ from_ms: number; to_ms: number; limits: string }>;
    return rows.map((r) => ({
      fromMs: r.from_ms,
      toMs: r.to_ms,
      limits: r.limits === '' ? [] : r.limits.split(',').map(Number),
    }));
  }
}
