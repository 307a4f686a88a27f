/**
 * The history read model: every run (finished ones included), every recorded decision and the
 * limit-state records that waits are derived from, in SQLite tables on disk. It follows the log
 * with a position of its own, is rebuilt from the log when missing or behind, and is what reads
 * of the past go to, so memory follows what is live while a year of history costs disk.
 *
 * Applying is idempotent per position (events at or before the stored position are skipped in
 * the same transaction), so several servers on one machine may share one file.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { decisionOf } from '../../projections/decisions.js';
import type { Decision, RunRecord, WaitInterval } from '../../projections/state.js';
import { decisionPools } from '../../projections/state.js';
import { type DerivedWaits, deriveWaits, type HoldRecord } from '../../projections/waits.js';
import { type Constraint, counterKey, heldKeysOf } from '../domain/constraints.js';
import type { EventData, LoggedEvent } from '../domain/events.js';
import { LIMIT_EDIT_TYPES, poolOfEdit } from '../domain/limit-changes.js';
import { poolsOf, type RunStatus } from '../domain/run.js';
import { StoreUnavailableError } from '../eventstore/errors.js';
import { walCheckpoints, warnProcess } from '../eventstore/wal-checkpoints.js';
import { type JobWaitData, LONGEST_RUNS, shareKey, waitByJob } from './wait-by-job.js';
import { type Stretch, WAIT_LEDGER_SCHEMA, WAIT_LEDGER_TABLES, WaitLedger } from './wait-ledger.js';
import { type WaitReportData, waitReport } from './wait-report.js';
import { type WaitingRunsCursor, type WaitingRunsOf, type WaitingRunsPage, waitingRuns } from './waiting-runs.js';

/** Bumped when the tables change; a file of another format is rebuilt from the log. */
const HISTORY_FORMAT = 5;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL,
    enqueued TEXT NOT NULL,
    enqueued_at TEXT NOT NULL,
    enqueued_position INTEGER NOT NULL,
    admitted_at TEXT,
    started_at TEXT,
    cancel_requested_at TEXT,
    finished_at TEXT,
    finish_reason TEXT,
    failure_reason TEXT,
    last_heartbeat_at TEXT,
    left_at TEXT,
    left_position INTEGER
  );
  CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq);
  CREATE TABLE IF NOT EXISTS decisions (
    position INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    decision TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS decisions_by_run ON decisions (run_id, position);
  CREATE TABLE IF NOT EXISTS decision_pools (
    pool TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (pool, position)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS counter_states (
    count_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    at TEXT NOT NULL,
    full TEXT NOT NULL,
    PRIMARY KEY (count_key, position)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
`;

/** Names of the maintained totals (see HistoryStore.total): connections' totalCount reads one row each. */
export const totalName = {
  runs: (status: RunStatus | null) => (status === null ? 'runs' : `runs:${status}`),
  decisions: (pool: string | null) => (pool === null ? 'decisions' : `decisions:pool:${pool}`),
  limitChanges: (pool: string | null) => (pool === null ? 'limitChanges' : `limitChanges:pool:${pool}`),
};

type Enqueued = EventData<'RunEnqueued'>;

interface RunRow {
  id: string;
  seq: bigint;
  status: RunStatus;
  enqueued: string;
  enqueued_at: string;
  enqueued_position: bigint;
  admitted_at: string | null;
  started_at: string | null;
  cancel_requested_at: string | null;
  finished_at: string | null;
  finish_reason: string | null;
  failure_reason: RunRecord['failureReason'];
  last_heartbeat_at: string | null;
  left_at: string | null;
  left_position: bigint | null;
}

export interface DecisionQuery {
  runId?: string | null;
  pool?: string | null;
  /** Only decisions strictly after this position. */
  after?: bigint | null;
  /** Only decisions at or before this position (a run's decisions as they stood then). */
  asOf?: bigint | null;
  limit: number;
}

export interface HistoryStore {
  /** The last log position applied; -1n when empty. */
  position(): bigint;
  /**
   * Ties the file to one log, named by the hash of the log's first event: a file that followed
   * another log (another database, a log recreated) is emptied and rebuilt. Returns whether it was.
   */
  bindTo(logIdentity: string): boolean;
  apply(events: readonly LoggedEvent[]): void;
  run(id: string): RunRecord | null;
  /** How many runs it has taken in (RunEnqueued events written): the next run's enqueue order. */
  runCount(): number;
  /** The log position of a run's RunEnqueued, or null when it holds no such run. */
  enqueuedPosition(id: string): bigint | null;
  /** Runs in enqueue order after a seq, optionally of some statuses; one more than asked tells of a next page. */
  runs(statuses: readonly RunStatus[] | null, afterSeq: number, limit: number): RunRecord[];
  countsByStatus(): Map<RunStatus, number>;
  /**
   * A total kept as events are applied (names from `totalName`): runs (by status), decisions
   * (about a pool), limit changes (of a pool). One row read, whatever the history holds.
   */
  total(name: string): number;
  /** A run's waits; with asOf, as they stood right after that position. */
  waitsOf(runId: string, asOf?: bigint | null): WaitInterval[];
  decisions(query: DecisionQuery): Decision[];
  /**
   * Where the waiting went between two instants (milliseconds since the epoch, from < to); runs
   * still queued count up to `nowMs` when it comes before `to`.
   */
  waitReport(fromMs: number, toMs: number, nowMs?: number): WaitReportData;
  /**
   * Each job's waiting in the window, with the p50 and p95 of its runs' waits there. Reads every
   * run that waited in the window (one index range plus the runs queued at `to`).
   */
  waitByJob(fromMs: number, toMs: number, nowMs?: number): JobWaitData[];
  /** Per limit of the window's report (by shareKey), the runs it held longest there: the first page of waitingRuns. */
  runsHeldLongest(fromMs: number, toMs: number, nowMs?: number): Map<string, string[]>;
  /**
   * A page of the runs behind a figure of the window's report (a limit's holds, or a job's
   * runs), each with its wait inside the window, longest first.
   */
  waitingRuns(
    fromMs: number,
    toMs: number,
    of: WaitingRunsOf,
    page: { first: number; after: WaitingRunsCursor | null },
    nowMs?: number,
  ): WaitingRunsPage;
  close(): void;
}

/** Opens (creating or rebuilding when of another format) the history file; ':memory:' for none on disk. */
export function openHistoryStore(path: string, warn: (message: string) => void = warnProcess): HistoryStore {
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const history = new SqliteHistory(new Database(path), path !== ':memory:');
    if (path !== ':memory:') history.releaseCheckpoints = walCheckpoints.register(history.db, path, warn);
    return history;
  } catch (error) {
    if (error instanceof StoreUnavailableError) throw error;
    throw new StoreUnavailableError(`cannot open history ${path}: ${(error as Error).message}`, error);
  }
}

class SqliteHistory implements HistoryStore {
  private readonly statements: ReturnType<SqliteHistory['prepare']>;
  private readonly applyAll: Database.Transaction<(events: readonly LoggedEvent[]) => void>;
  private readonly waits: WaitLedger;

  constructor(
    readonly db: Database.Database,
    onDisk: boolean,
  ) {
    db.defaultSafeIntegers(true);
    if (onDisk) {
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      // A read model is rebuilt from the log after a crash; it need not survive power loss.
      db.pragma('synchronous = NORMAL');
    }
    const format = Number(db.pragma('user_version', { simple: true }));
    if (format !== HISTORY_FORMAT) {
      db.exec(
        'DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS decisions; DROP TABLE IF EXISTS decision_pools; DROP TABLE IF EXISTS counter_states; DROP TABLE IF EXISTS totals;',
      );
      for (const table of WAIT_LEDGER_TABLES) db.exec(`DROP TABLE IF EXISTS ${table}`);
      db.pragma(`user_version = ${HISTORY_FORMAT}`);
    }
    db.exec(SCHEMA);
    db.exec(WAIT_LEDGER_SCHEMA);
    this.statements = this.prepare();
    this.waits = new WaitLedger(db);
    this.applyAll = db.transaction((events: readonly LoggedEvent[]) => {
      let position = this.position();
      let runCount = Number(this.statements.meta.get('runCount') ?? '0');
      for (const event of events) {
        if (event.revision <= position) continue;
        if (event.type === 'RunEnqueued') this.enqueue(event, runCount++);
        else this.fold(event);
        position = event.revision;
      }
      this.statements.setMeta.run('position', position.toString());
      this.statements.setMeta.run('runCount', String(runCount));
    });
  }

  private prepare() {
    const db = this.db;
    return {
      meta: db.prepare('SELECT value FROM meta WHERE name = ?').pluck().safeIntegers(false),
      setMeta: db.prepare(
        'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
      ),
      insertRun: db.prepare(
        `INSERT OR IGNORE INTO runs (id, seq, status, enqueued, enqueued_at, enqueued_position)
         VALUES (?, ?, 'QUEUED', ?, ?, ?)`,
      ),
      runPools: db.prepare('SELECT enqueued FROM runs WHERE id = ?').pluck(),
      leave: db.prepare('UPDATE runs SET left_at = ?, left_position = ? WHERE id = ? AND left_position IS NULL'),
      admitted: db.prepare("UPDATE runs SET status = 'STARTING', admitted_at = ? WHERE id = ?"),
      started: db.prepare("UPDATE runs SET status = 'STARTED', started_at = ? WHERE id = ?"),
      canceling: db.prepare("UPDATE runs SET status = 'CANCELING', cancel_requested_at = ? WHERE id = ?"),
      finished: db.prepare(
        'UPDATE runs SET status = ?, finished_at = ?, finish_reason = ?, failure_reason = ? WHERE id = ?',
      ),
      heartbeat: db.prepare('UPDATE runs SET last_heartbeat_at = ? WHERE id = ?'),
      addStep: db.prepare("UPDATE runs SET enqueued = json_set(enqueued, '$.steps[#]', json(?)) WHERE id = ?"),
      insertDecision: db.prepare(
        'INSERT OR IGNORE INTO decisions (position, run_id, kind, decision) VALUES (?, ?, ?, ?)',
      ),
      insertDecisionPool: db.prepare('INSERT OR IGNORE INTO decision_pools (pool, position) VALUES (?, ?)'),
      addTotal: db.prepare(
        'INSERT INTO totals (name, n) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET n = n + excluded.n',
      ),
      total: db.prepare('SELECT n FROM totals WHERE name = ?').pluck(),
      statusOf: db.prepare('SELECT status FROM runs WHERE id = ?').pluck(),
      insertCounter: db.prepare(
        'INSERT OR IGNORE INTO counter_states (count_key, position, at, full) VALUES (?, ?, ?, ?)',
      ),
      run: db.prepare('SELECT * FROM runs WHERE id = ?'),
      enqueuedPosition: db.prepare('SELECT enqueued_position FROM runs WHERE id = ?').pluck(),
      hasBlocked: db.prepare("SELECT 1 FROM decisions WHERE run_id = ? AND kind = 'BLOCKED' LIMIT 1").pluck(),
      queuedIds: db.prepare("SELECT id FROM runs WHERE status = 'QUEUED'").pluck(),
      runsAfter: db.prepare('SELECT * FROM runs WHERE seq > ? ORDER BY seq LIMIT ?'),
      runsInStatusAfter: db.prepare('SELECT * FROM runs WHERE status = ? AND seq > ? ORDER BY seq LIMIT ?'),
      countsByStatus: db.prepare('SELECT status, COUNT(*) AS n FROM runs GROUP BY status'),
      blockedOfRun: db.prepare(
        "SELECT position, decision FROM decisions WHERE run_id = ? AND kind = 'BLOCKED' AND position > ? AND position < ? ORDER BY position",
      ),
      countersBetween: db.prepare(
        'SELECT position, at, full FROM counter_states WHERE count_key = ? AND position > ? AND position < ? ORDER BY position',
      ),
      decisionsOfRun: db
        .prepare('SELECT decision FROM decisions WHERE run_id = ? AND position > ? ORDER BY position')
        .pluck(),
      decisionsAfter: db.prepare('SELECT decision FROM decisions WHERE position > ? ORDER BY position LIMIT ?').pluck(),
      decisionsOfPool: db
        .prepare(
          `SELECT d.decision FROM decision_pools p JOIN decisions d ON d.position = p.position
         WHERE p.pool = ? AND p.position > ? ORDER BY p.position LIMIT ?`,
        )
        .pluck(),
    };
  }

  position(): bigint {
    const value = this.statements.meta.get('position') as string | undefined;
    return value === undefined ? -1n : BigInt(value);
  }

  bindTo(logIdentity: string): boolean {
    return this.db
      .transaction(() => {
        const bound = this.statements.meta.get('log') as string | undefined;
        if (bound === logIdentity) return false;
        if (bound !== undefined || this.position() >= 0n) {
          for (const table of [
            'meta',
            'runs',
            'decisions',
            'decision_pools',
            'counter_states',
            'totals',
            ...WAIT_LEDGER_TABLES,
          ]) {
            this.db.exec(`DELETE FROM ${table}`);
          }
        }
        this.statements.setMeta.run('log', logIdentity);
        return bound !== undefined;
      })
      .immediate();
  }

  apply(events: readonly LoggedEvent[]): void {
    if (events.length === 0) return;
    try {
      // IMMEDIATE: servers sharing the file take the write lock before reading the position, so
      // they wait their turn (busy_timeout) instead of failing to upgrade a read lock.
      this.applyAll.immediate(events);
    } catch (error) {
      throw new StoreUnavailableError(`history: cannot record events: ${(error as Error).message}`, error);
    }
  }

  private enqueue(event: Extract<LoggedEvent, { type: 'RunEnqueued' }>, seq: number): void {
    const { runId, ...enqueued } = event.data;
    const inserted = this.statements.insertRun.run(runId, seq, JSON.stringify(enqueued), event.at, event.revision);
    if (inserted.changes > 0) {
      this.addTotal(totalName.runs(null), 1);
      this.addTotal(totalName.runs('QUEUED'), 1);
    }
  }

  private addTotal(name: string, by: number): void {
    this.statements.addTotal.run(name, by);
  }

  /** Moves a run's count from its status as recorded to the one an event gives it. */
  private moveStatus(runId: string, to: RunStatus): void {
    const from = this.statements.statusOf.get(runId) as RunStatus | undefined;
    if (from === undefined || from === to) return;
    this.addTotal(totalName.runs(from), -1);
    this.addTotal(totalName.runs(to), 1);
  }

  private fold(event: LoggedEvent): void {
    const s = this.statements;
    if (LIMIT_EDIT_TYPES.has(event.type)) {
      this.addTotal(totalName.limitChanges(null), 1);
      const pool = poolOfEdit(event);
      if (pool !== null) this.addTotal(totalName.limitChanges(pool), 1);
    }
    const status = statusAfter(event);
    if (status) this.moveStatus(status.runId, status.status);
    switch (event.type) {
      case 'RunAdmitted':
        s.admitted.run(event.at, event.data.runId);
        this.leave(event.at, event.revision, event.data.runId);
        break;
      case 'RunStarted':
        s.started.run(event.at, event.data.runId);
        break;
      case 'RunCancellationRequested':
        s.canceling.run(event.at, event.data.runId);
        break;
      case 'RunFinished':
        s.finished.run(
          event.data.status,
          event.at,
          event.data.reason,
          event.data.failureReason ?? null,
          event.data.runId,
        );
        this.leave(event.at, event.revision, event.data.runId);
        break;
      case 'RunHeartbeatRecorded':
        s.heartbeat.run(event.at, event.data.runId);
        break;
      case 'RunStepAdded':
        s.addStep.run(
          JSON.stringify({ key: event.data.stepKey, pool: event.data.pool, priority: 0, added: true }),
          event.data.runId,
        );
        break;
      case 'LimitStatesChanged':
        for (const counter of event.data.counters) {
          s.insertCounter.run(counterKey(counter), event.revision, event.at, JSON.stringify(counter.full));
        }
        break;
      default:
        break;
    }
    const decision = decisionOf(event);
    if (!decision) return;
    const inserted = s.insertDecision.run(
      decision.position,
      decision.runId,
      decision.kind,
      JSON.stringify({ ...decision, position: decision.position.toString() }),
    );
    if (inserted.changes > 0) this.addTotal(totalName.decisions(null), 1);
    const enqueued = s.runPools.get(decision.runId) as string | undefined;
    const runPools = enqueued ? poolsOf((JSON.parse(enqueued) as Enqueued).steps) : [];
    for (const pool of decisionPools(decision, runPools)) {
      if (s.insertDecisionPool.run(pool, decision.position).changes > 0) this.addTotal(totalName.decisions(pool), 1);
    }
  }

  /** A run leaves the queue once: its waits are then final, and go to the wait ledger. */
  private leave(at: string, position: bigint, runId: string): void {
    if (this.statements.leave.run(at, position, runId).changes === 0) return;
    if (this.statements.hasBlocked.get(runId) === undefined) return;
    // Derived afresh: the cache is keyed by the position before this batch, and may hold the
    // run's waits from a read made while it was still queued (its last stretch still open).
    this.waits.recordLeft(runId, this.jobNameOf(runId), this.deriveNow(runId, null)?.waits ?? []);
  }

  private jobNameOf(runId: string): string {
    const enqueued = this.statements.runPools.get(runId) as string | undefined;
    return enqueued ? (JSON.parse(enqueued) as Enqueued).jobName : '';
  }

  /** The stretches of the runs still queued, their open stretch ending now. */
  private stillQueued(nowMs: number): Array<{ runId: string; jobName: string; stretches: Stretch[] }> {
    return (this.statements.queuedIds.all() as string[]).map((id) => ({
      runId: id,
      jobName: this.jobNameOf(id),
      stretches: this.waits
        .stretchesOfWaits(this.waitsOf(id))
        .map((s) => ({ ...s, toMs: Number.isFinite(s.toMs) ? s.toMs : Math.max(s.fromMs, nowMs) })),
    }));
  }

  waitReport(fromMs: number, toMs: number, nowMs = toMs): WaitReportData {
    return waitReport(
      this.waits,
      fromMs,
      toMs,
      this.stillQueued(nowMs).map((q) => q.stretches),
    );
  }

  waitByJob(fromMs: number, toMs: number, nowMs = toMs): JobWaitData[] {
    return waitByJob(this.waits, fromMs, toMs, this.stillQueued(nowMs));
  }

  runsHeldLongest(fromMs: number, toMs: number, nowMs = toMs): Map<string, string[]> {
    // The first page of each share's list of runs (waitingRuns): numbers from the limit's index
    // range, and ids only for the few shown.
    const queued = this.stillQueued(nowMs);
    const report = waitReport(
      this.waits,
      fromMs,
      toMs,
      queued.map((q) => q.stretches),
    );
    return new Map(
      report.byLimit.map((share) => [
        shareKey(share),
        waitingRuns(
          this.waits,
          fromMs,
          toMs,
          { limit: share, alone: false },
          { first: LONGEST_RUNS, after: null },
          queued,
        ).runs.map((r) => r.runId),
      ]),
    );
  }

  waitingRuns(
    fromMs: number,
    toMs: number,
    of: WaitingRunsOf,
    page: { first: number; after: WaitingRunsCursor | null },
    nowMs = toMs,
  ): WaitingRunsPage {
    return waitingRuns(this.waits, fromMs, toMs, of, page, this.stillQueued(nowMs));
  }

  run(id: string): RunRecord | null {
    const row = this.statements.run.get(id) as RunRow | undefined;
    return row ? toRunRecord(row) : null;
  }

  runCount(): number {
    return Number(this.statements.meta.get('runCount') ?? '0');
  }

  enqueuedPosition(id: string): bigint | null {
    return (this.statements.enqueuedPosition.get(id) as bigint | undefined) ?? null;
  }

  runs(statuses: readonly RunStatus[] | null, afterSeq: number, limit: number): RunRecord[] {
    if (statuses === null) return (this.statements.runsAfter.all(afterSeq, limit) as RunRow[]).map(toRunRecord);
    // The first `limit` of each status by the (status, seq) index, merged in enqueue order: a
    // page costs what it shows, however many runs of other statuses the history holds.
    const rows = [...new Set(statuses)].flatMap(
      (status) => this.statements.runsInStatusAfter.all(status, afterSeq, limit) as RunRow[],
    );
    return rows
      .sort((a, b) => Number(a.seq) - Number(b.seq))
      .slice(0, limit)
      .map(toRunRecord);
  }

  countsByStatus(): Map<RunStatus, number> {
    const rows = this.statements.countsByStatus.all() as Array<{ status: RunStatus; n: bigint }>;
    return new Map(rows.map((row) => [row.status, Number(row.n)]));
  }

  /**
   * A run's derivation as of one history position: waits and decisions of the same run in one
   * request (a page of runs asking for both) derive it once. Emptied when the history moves on.
   */
  private readonly derivedCache = new Map<string, DerivedWaits | null>();
  private derivedCacheAt = -1n;

  total(name: string): number {
    return Number((this.statements.total.get(name) as bigint | undefined) ?? 0n);
  }

  private derived(runId: string, asOf: bigint | null = null): DerivedWaits | null {
    const position = this.position();
    if (position !== this.derivedCacheAt || this.derivedCache.size >= DERIVED_CACHE_SIZE) {
      this.derivedCache.clear();
      this.derivedCacheAt = position;
    }
    const key = `${runId}\u0000${asOf ?? ''}`;
    if (this.derivedCache.has(key)) return this.derivedCache.get(key) ?? null;
    const derived = this.deriveNow(runId, asOf);
    this.derivedCache.set(key, derived);
    return derived;
  }

  private deriveNow(runId: string, asOf: bigint | null): DerivedWaits | null {
    const row = this.statements.run.get(runId) as RunRow | undefined;
    if (!row) return null;
    const run = toRunRecord(row);
    const from = row.enqueued_position;
    const left = row.left_position !== null && (asOf === null || row.left_position <= asOf);
    const to = left ? (row.left_position as bigint) : asOf === null ? 2n ** 62n : asOf + 1n;
    const records: HoldRecord[] = [];
    for (const r of this.statements.blockedOfRun.all(runId, from, to) as Array<{
      position: bigint;
      decision: string;
    }>) {
      const decision = parseDecision(r.decision);
      records.push({ kind: 'blocked', position: r.position, at: decision.at, reasons: decision.reasons, decision });
    }
    const countKeys = heldKeysOf(run);
    for (const countKey of new Set(countKeys)) {
      for (const r of this.statements.countersBetween.all(countKey, from, to) as Array<{
        position: bigint;
        at: string;
        full: string;
      }>) {
        records.push({
          kind: 'counter',
          position: r.position,
          at: r.at,
          countKey,
          full: JSON.parse(r.full) as Constraint[],
        });
      }
    }
    records.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
    return deriveWaits(runId, countKeys, records, left ? { at: row.left_at as string } : null);
  }

  waitsOf(runId: string, asOf: bigint | null = null): WaitInterval[] {
    return this.derived(runId, asOf)?.waits ?? [];
  }

  decisions(query: DecisionQuery): Decision[] {
    const after = query.after ?? -1n;
    const s = this.statements;
    if (query.runId != null) {
      // Recorded decisions and the holds derived from limit states, in log order.
      const asOf = query.asOf ?? null;
      const recorded = (s.decisionsOfRun.all(query.runId, after) as string[])
        .map(parseDecision)
        .filter((d) => asOf === null || d.position <= asOf);
      const positions = new Set(recorded.map((d) => d.position));
      const derived = (this.derived(query.runId, asOf)?.decisions ?? []).filter(
        (d) => d.position > after && !positions.has(d.position),
      );
      let all = [...recorded, ...derived].sort((a, b) => (a.position < b.position ? -1 : 1));
      if (query.pool != null) {
        const run = this.run(query.runId);
        const pool = query.pool;
        all = all.filter((d) => decisionPools(d, run?.pools ?? []).has(pool));
      }
      return all.slice(0, query.limit);
    }
    const rows =
      query.pool != null
        ? (s.decisionsOfPool.all(query.pool, after, query.limit) as string[])
        : (s.decisionsAfter.all(after, query.limit) as string[]);
    return rows.map(parseDecision);
  }

  /** Gives this file's WAL checkpoints back from the worker thread (see wal-checkpoints.ts). */
  releaseCheckpoints: () => void = () => {};

  close(): void {
    this.releaseCheckpoints();
    this.db.close();
  }
}

/** Derivations kept per history position (a page of runs is at most 1,000). */
const DERIVED_CACHE_SIZE = 2_000;

/** The status an event gives a run, for the totals by status. */
function statusAfter(event: LoggedEvent): { runId: string; status: RunStatus } | null {
  switch (event.type) {
    case 'RunAdmitted':
      return { runId: event.data.runId, status: 'STARTING' };
    case 'RunStarted':
      return { runId: event.data.runId, status: 'STARTED' };
    case 'RunCancellationRequested':
      return { runId: event.data.runId, status: 'CANCELING' };
    case 'RunFinished':
      return { runId: event.data.runId, status: event.data.status };
    default:
      return null;
  }
}

function parseDecision(text: string): Decision {
  const json = JSON.parse(text) as Omit<Decision, 'position'> & { position: string };
  return { ...json, position: BigInt(json.position) };
}

function toRunRecord(row: RunRow): RunRecord {
  const enqueued = JSON.parse(row.enqueued) as Omit<Enqueued, 'runId'>;
  return {
    id: row.id,
    jobName: enqueued.jobName,
    status: row.status,
    tags: enqueued.tags,
    steps: enqueued.steps,
    pools: poolsOf(enqueued.steps),
    priority: enqueued.priority,
    seq: Number(row.seq),
    maxConcurrentSteps: enqueued.maxConcurrentSteps,
    leaseSeconds: enqueued.leaseSeconds,
    enqueuedAt: row.enqueued_at,
    admittedAt: row.admitted_at,
    startedAt: row.started_at,
    cancelRequestedAt: row.cancel_requested_at,
    finishedAt: row.finished_at,
    finishReason: row.finish_reason,
    failureReason: row.failure_reason,
    ignoredTags: enqueued.ignoredTags ?? [],
    stepsHolding: 0,
    activeClaims: new Set(),
    promisedSteps: new Set(),
    allotmentEndedAt: null,
    lastHeartbeatAt: row.last_heartbeat_at,
  };
}
