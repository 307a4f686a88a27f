/**
 * A consistent copy of a SQLite event store while servers write to it, through SQLite's online
 * backup API. It opens the file read-only on a connection of its own: writers are never
 * blocked (WAL), and each step of the copy reads one snapshot of the log.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { StoreUnavailableError, StoreUsageError } from './errors.js';

export interface BackupResult {
  /** Events in the copy. */
  events: number;
  /** Last revision of each stream in the copy. */
  lastRevisions: Map<string, bigint>;
  /** Time of the copy's last event, or null when it holds none. */
  lastEventAt: string | null;
}

/** Largest page count one backup step may copy: the rest of the file, in one read snapshot. */
const WHOLE_FILE = 0x7fffffff;

/**
 * Copies the store at `source` to `target`, which must not exist yet. The copy is written
 * beside the target under another name, checked, switched to a single file (no WAL), then
 * renamed into place: `target` never holds a partial copy.
 */
export async function backupSqliteStore(source: string, target: string): Promise<BackupResult> {
  if (existsSync(target)) throw new StoreUsageError(`${target} exists already: choose a new path for the backup`);
  let db: Database.Database;
  try {
    db = new Database(source, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new StoreUnavailableError(`cannot open the event store ${source}: ${(error as Error).message}`, error);
  }
  const partial = `${target}.partial-${process.pid}`;
  try {
    db.pragma('busy_timeout = 5000');
    const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").get();
    if (table === undefined)
      throw new StoreUsageError(`${source} is not a Sluice event store (it has no events table)`);
    // The first step only opens the copy; the second copies every page, so a write by a server
    // between the two restarts the copy at most once instead of on every step.
    await db.backup(partial, { progress: () => WHOLE_FILE });
  } catch (error) {
    rmSync(partial, { force: true });
    if (error instanceof StoreUsageError) throw error;
    if ((error as Error).message.includes('directory does not exist')) {
      throw new StoreUsageError(`cannot write ${target}: its directory does not exist`);
    }
    throw new StoreUnavailableError(`backup of ${source} failed: ${(error as Error).message}`, error);
  } finally {
    db.close();
  }
  try {
    const result = checkCopy(partial);
    renameSync(partial, target);
    return result;
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
}

/** Reads the copy back: intact, and what it holds. Leaves it a single file. */
function checkCopy(path: string): BackupResult {
  const copy = new Database(path);
  try {
    copy.defaultSafeIntegers(true);
    const check = copy.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new StoreUnavailableError(`the copy does not read back intact: ${String(check)}`);
    copy.pragma('journal_mode = DELETE');
    const rows = copy
      .prepare('SELECT stream, max(revision) AS last, count(*) AS n FROM events GROUP BY stream')
      .all() as Array<{
      stream: string;
      last: bigint;
      n: bigint;
    }>;
    const lastAt = copy.prepare('SELECT at FROM events ORDER BY position DESC LIMIT 1').get() as
      | { at: string }
      | undefined;
    return {
      events: rows.reduce((sum, row) => sum + Number(row.n), 0),
      lastRevisions: new Map(rows.map((row) => [row.stream, row.last])),
      lastEventAt: lastAt?.at ?? null,
    };
  } finally {
    copy.close();
  }
}
