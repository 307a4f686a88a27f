/**
 * Checkpoints of the projections, kept beside the log to make start-up and time travel fast
 * on long logs. They are never the source of truth: each one carries the hash of the event at
 * its position, and a checkpoint whose event no longer matches the log is ignored.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { StoreUnavailableError } from './errors.js';
import { walCheckpoints, warnProcess } from './wal-checkpoints.js';

export interface CheckpointInfo {
  /** Revision of the last event folded into the state. */
  revision: bigint;
  /** Hash of that event (see eventHash), to tell whether the log still holds it. */
  eventHash: string;
  /** Format of the serialized state. */
  format: number;
}

export interface Checkpoint extends CheckpointInfo {
  state: string;
}

export interface CheckpointStore {
  /** The file, which another thread may open too; null: in memory. */
  readonly path: string | null;
  save(checkpoint: Checkpoint): void;
  /** The checkpoints at or before a revision, latest first, without their (large) states. */
  atOrBefore(revision: bigint, limit?: number): CheckpointInfo[];
  /** The serialized state of one checkpoint, or null when it is gone. */
  load(revision: bigint): string | null;
  delete(revision: bigint): void;
  /** Deletes all but the newest `count` checkpoints, so the file stays a small multiple of one state. */
  keepLatest(count: number): void;
  close(): void;
}

/** A SQLite file of checkpoints; ':memory:' keeps them for the life of the process. */
export function openCheckpointStore(path: string, warn: (message: string) => void = warnProcess): CheckpointStore {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.defaultSafeIntegers(true);
  let releaseCheckpoints = () => {};
  if (path !== ':memory:') {
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    // A checkpoint lost to a power cut is only a slower start: each is checked against the log.
    db.pragma('synchronous = NORMAL');
    releaseCheckpoints = walCheckpoints.register(db, path, warn);
  }
  db.exec(`CREATE TABLE IF NOT EXISTS checkpoints (
    revision INTEGER PRIMARY KEY,
    event_hash TEXT NOT NULL,
    format INTEGER NOT NULL,
    state TEXT NOT NULL
  )`);
  const insert = db.prepare(
    'INSERT OR REPLACE INTO checkpoints (revision, event_hash, format, state) VALUES (?, ?, ?, ?)',
  );
  const select = db.prepare(
    'SELECT revision, event_hash, format FROM checkpoints WHERE revision <= ? ORDER BY revision DESC LIMIT ?',
  );
  const selectState = db.prepare('SELECT state FROM checkpoints WHERE revision = ?');
  const remove = db.prepare('DELETE FROM checkpoints WHERE revision = ?');
  const prune = db.prepare(
    'DELETE FROM checkpoints WHERE revision < (SELECT MIN(revision) FROM (SELECT revision FROM checkpoints ORDER BY revision DESC LIMIT ?))',
  );
  const guard = <T>(what: string, work: () => T): T => {
    try {
      return work();
    } catch (error) {
      throw new StoreUnavailableError(`checkpoint store: ${what} failed: ${(error as Error).message}`, error);
    }
  };
  return {
    path: path === ':memory:' ? null : path,
    save: (c) => guard('save', () => void insert.run(c.revision, c.eventHash, c.format, c.state)),
    atOrBefore: (revision, limit = 3) =>
      guard('read', () =>
        (select.all(revision, limit) as Array<{ revision: bigint; event_hash: string; format: bigint }>).map((row) => ({
          revision: row.revision,
          eventHash: row.event_hash,
          format: Number(row.format),
        })),
      ),
    load: (revision) =>
      guard('read', () => (selectState.get(revision) as { state: string } | undefined)?.state ?? null),
    delete: (revision) => guard('delete', () => void remove.run(revision)),
    keepLatest: (count) => guard('prune', () => void prune.run(count)),
    close: () => {
      releaseCheckpoints();
      db.close();
    },
  };
}
