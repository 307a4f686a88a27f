import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { checkExpected, checkMaxCount, checkStream, serializedData } from './checks.js';
import { ConcurrencyError, CorruptEventError, StoreUnavailableError, StoreUsageError } from './errors.js';
import { ReadingSubscription } from './reading-subscription.js';
import type {
  AppendResult,
  EventHandler,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadOptions,
  RecordedEvent,
  SubscribeOptions,
  Subscription,
} from './store.js';
import { walCheckpoints, warnProcess } from './wal-checkpoints.js';

export interface SqliteStoreOptions {
  /** A file path (its directory is created when missing) or ':memory:'. */
  path: string;
  /** FULL (default) survives power loss; NORMAL only survives a process crash. */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long a write waits for another writer's lock before failing; default 5000. */
  busyTimeoutMs?: number;
  /** How often subscriptions look for commits by other connections; default 25. */
  pollIntervalMs?: number;
  /** For failure tests only: caps the database at this many pages to simulate a full disk. */
  maxPageCount?: number;
  /** Opens an existing file for reading only (`sluice verify` on a live deployment); appends fail. */
  readonly?: boolean;
  /** Where a failure that loses nothing is told (a WAL checkpoint that could not run). */
  warn?: (message: string) => void;
}

/** Bumped when the table layout changes; a file from a newer Sluice is refused. */
const SCHEMA_VERSION = 1n;
/** Subscriptions read in pages so a long catch-up never loads the whole stream at once. */
const SUBSCRIPTION_PAGE = 500;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    revision INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    data TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (stream, revision)
  );
`;

interface EventRow {
  position: bigint;
  stream: string;
  revision: bigint;
  type: string;
  schema_version: bigint;
  data: string;
  actor: string;
  at: string;
}

/**
 * Opens (creating when missing) an SQLite event store. Throws StoreUnavailableError when the
 * file cannot be opened or is not a Sluice event store.
 */
export function openSqliteStore(options: SqliteStoreOptions): EventStore {
  return new SqliteEventStore(options);
}

class SqliteEventStore implements EventStore {
  readonly description: string;
  private readonly db: Database.Database;
  private readonly statements: ReturnType<typeof prepare>;
  private readonly subscriptions = new Set<ReadingSubscription>();
  private readonly pollIntervalMs: number;
  private readonly inMemory: boolean;
  private pollTimer: NodeJS.Timeout | undefined;
  private lastDataVersion = 0n;
  /**
   * For each stream, a revision its last event is known not to be past, as of `headsVersion`
   * (PRAGMA data_version, which changes only when another connection commits): a read after it
   * while no other connection has committed is answered without a query. Every command reads
   * the log to its end before it decides, and that read, empty nearly always, was a few percent
   * of a command's time.
   */
  private readonly heads = new Map<string, bigint>();
  private headsVersion = -1n;
  private closed = false;
  /** Gives this file's WAL checkpoints back from the worker thread (see wal-checkpoints.ts). */
  private releaseCheckpoints: () => void = () => {};

  constructor(options: SqliteStoreOptions) {
    this.description = `sqlite:${options.path}`;
    this.pollIntervalMs = options.pollIntervalMs ?? 25;
    const inMemory = options.path === ':memory:' || options.path === '';
    this.inMemory = inMemory;
    try {
      if (options.readonly) this.db = new Database(options.path, { readonly: true, fileMustExist: true });
      else {
        if (!inMemory) mkdirSync(dirname(options.path), { recursive: true });
        this.db = new Database(options.path);
      }
    } catch (error) {
      throw unavailable(`cannot open event store ${this.description}`, error);
    }
    try {
      this.db.defaultSafeIntegers(true);
      // Set first: switching to WAL needs a lock another process may briefly hold.
      this.db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
      if (!inMemory && !options.readonly) this.db.pragma('journal_mode = WAL');
      if (!options.readonly) this.db.pragma(`synchronous = ${options.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`);
      const version = this.db.pragma('user_version', { simple: true }) as bigint;
      if (version > SCHEMA_VERSION) {
        throw new StoreUnavailableError(
          `event store ${this.description} has schema version ${version}, newer than this Sluice understands (${SCHEMA_VERSION})`,
        );
      }
      if (!options.readonly) this.db.exec(SCHEMA);
      if (version < SCHEMA_VERSION && !options.readonly) this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
      if (options.maxPageCount !== undefined) {
        this.db.pragma(`max_page_count = ${Math.trunc(options.maxPageCount)}`);
      }
      this.statements = prepare(this.db);
      if (!inMemory && !options.readonly) {
        this.releaseCheckpoints = walCheckpoints.register(this.db, options.path, options.warn ?? warnProcess);
      }
    } catch (error) {
      this.db.close();
      if (error instanceof StoreUnavailableError) throw error;
      throw unavailable(`cannot open event store ${this.description}`, error);
    }
  }

  async append(stream: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    this.assertOpen();
    checkStream(stream);
    if (typeof expected === 'bigint' && expected < -1n) {
      throw new StoreUsageError(`expected revision ${expected} is not a revision`);
    }
    // Serialise before the transaction, so a bad event fails without taking the write lock.
    const rows = events.map((event) => toRow(stream, event));
    let result: AppendResult;
    let version = -1n;
    try {
      result = this.db
        .transaction((): AppendResult => {
          const last = this.lastRevision(stream);
          checkExpected(stream, expected, last);
          // Read under the write lock: no other connection can commit before this one does.
          version = this.dataVersion();
          const recorded = rows.map((row, index) => {
            const revision = last + 1n + BigInt(index);
            const position = this.statements.insert.get({ ...row, revision }) as bigint;
            // Built from the stored row, so the result equals what a later read returns.
            return fromRow({ ...row, revision, position, schema_version: BigInt(row.schema_version) });
          });
          return { nextExpectedRevision: last + BigInt(rows.length), events: recorded };
        })
        .immediate();
    } catch (error) {
      if (error instanceof ConcurrencyError) throw error;
      if (errorCode(error) === 'SQLITE_CONSTRAINT_UNIQUE') {
        // Only a writer bypassing this store can get here, yet it is still a lost race.
        const actual = this.lastRevision(stream);
        throw new ConcurrencyError(stream, expected, actual < 0n ? 'no_stream' : actual);
      }
      throw toStoreError(error, 'nothing was appended');
    }
    this.knownHead(stream, result.nextExpectedRevision, version);
    // After the commit: handed over as a read would return them, so the server's own
    // follower does not read back what it has just written.
    if (result.events.length > 0) {
      for (const subscription of this.subscriptions) {
        if (subscription.stream === stream) subscription.handOver(result.events);
      }
    }
    return result;
  }

  async readStream(stream: string, options: ReadOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    checkStream(stream);
    const fromRevision = options.fromRevision ?? 0n;
    const maxCount = limit(options.maxCount);
    const version = this.dataVersion();
    const known = this.heads.get(stream);
    if (known !== undefined && fromRevision > known && maxCount !== 0 && version === this.headsVersion) return [];
    const events = this.readStreamNow(stream, fromRevision, maxCount);
    // A read that came back short reached the end (as of `version` at least).
    if (maxCount < 0 || events.length < maxCount) {
      this.knownHead(
        stream,
        events.length > 0 ? (events.at(-1) as RecordedEvent).revision : fromRevision - 1n,
        version,
      );
    }
    return events;
  }

  /** Notes how far a stream goes as of a data_version; an older note of another version is forgotten. */
  private knownHead(stream: string, revision: bigint, version: bigint): void {
    if (version !== this.headsVersion) {
      this.heads.clear();
      this.headsVersion = version;
    }
    this.heads.set(stream, revision);
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const limitRows = limit(options.maxCount);
    return this.query(() => this.statements.readAll.all(options.afterPosition ?? -1n, limitRows));
  }

  async streamRevision(stream: string): Promise<bigint> {
    this.assertOpen();
    checkStream(stream);
    try {
      return this.lastRevision(stream);
    } catch (error) {
      throw toStoreError(error, 'cannot read');
    }
  }

  subscribe(
    stream: string,
    options: SubscribeOptions,
    onEvent: EventHandler,
    onError?: (error: Error) => void,
  ): Subscription {
    this.assertOpen();
    checkStream(stream);
    let head: bigint;
    try {
      head = this.lastRevision(stream);
    } catch (error) {
      throw toStoreError(error, 'cannot subscribe');
    }
    const subscription = new ReadingSubscription(
      stream,
      options.afterRevision ?? -1n,
      head,
      (from) => this.readStreamNow(stream, from, SUBSCRIPTION_PAGE),
      SUBSCRIPTION_PAGE,
      onEvent,
      onError,
      () => this.forget(subscription),
    );
    this.subscriptions.add(subscription);
    this.startPolling();
    subscription.wake();
    return subscription;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of [...this.subscriptions]) await subscription.close();
    this.stopPolling();
    this.releaseCheckpoints();
    this.db.close();
  }

  private readStreamNow(stream: string, fromRevision: bigint, maxCount: number): RecordedEvent[] {
    if (this.closed) throw new StoreUnavailableError('event store is closed');
    return this.query(() => this.statements.readStream.all(stream, fromRevision, maxCount), stream);
  }

  /** Rows read as EventColumns; `stream`: the one stream they are all of (not read per row). */
  private query(run: () => unknown[], stream: string | null = null): RecordedEvent[] {
    try {
      return (run() as EventColumns[]).map((columns) => fromColumns(columns, stream));
    } catch (error) {
      throw toStoreError(error, 'cannot read');
    }
  }

  private lastRevision(stream: string): bigint {
    return (this.statements.lastRevision.get(stream) as bigint | null) ?? -1n;
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('event store is closed');
  }

  /**
   * Other connections' commits are invisible to this process except through the database, so
   * poll `data_version`, which changes only when another connection committed: a cheap check
   * that queries events only when something did change.
   */
  private startPolling(): void {
    // Nothing but this connection can ever reach an in-memory database.
    if (this.inMemory || this.pollTimer !== undefined) return;
    this.lastDataVersion = this.dataVersion();
    this.pollTimer = setInterval(() => {
      const version = this.dataVersion();
      if (version === this.lastDataVersion) return;
      this.lastDataVersion = version;
      for (const subscription of this.subscriptions) subscription.wake();
    }, this.pollIntervalMs);
    this.pollTimer.unref();
  }

  private dataVersion(): bigint {
    try {
      return this.statements.dataVersion.get() as bigint;
    } catch {
      // Report "changed": the woken subscriptions' reads then either succeed or fail loudly.
      return this.lastDataVersion - 1n;
    }
  }

  private stopPolling(): void {
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  private forget(subscription: ReadingSubscription): void {
    this.subscriptions.delete(subscription);
    if (this.subscriptions.size === 0) this.stopPolling();
  }
}

function prepare(db: Database.Database) {
  return {
    lastRevision: db.prepare('SELECT MAX(revision) FROM events WHERE stream = ?').pluck(),
    insert: db
      .prepare(
        `INSERT INTO events (stream, revision, type, schema_version, data, actor, at)
         VALUES (@stream, @revision, @type, @schema_version, @data, @actor, @at)
         RETURNING position`,
      )
      .pluck(),
    // Rows as arrays (raw): for a long read, better-sqlite3 builds an array per row far faster
    // than an object with named fields (half the time of a replay from scratch went there).
    readStream: db
      .prepare(`SELECT ${STREAM_COLUMNS} FROM events WHERE stream = ? AND revision >= ? ORDER BY revision LIMIT ?`)
      .raw(true),
    readAll: db.prepare(`SELECT ${COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?`).raw(true),
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
  };
}

function toRow(stream: string, event: NewEvent) {
  const data = serializedData(stream, event);
  return {
    stream,
    type: event.type,
    schema_version: event.schemaVersion,
    data,
    actor: event.actor,
    at: event.at,
  };
}

/** The columns the reads select, in the order of EventColumns. */
const COLUMNS = 'position, stream, revision, type, schema_version, data, actor, at';
/** The same for a read of one stream, whose name is known: NULL in its place, one string less per row. */
const STREAM_COLUMNS = 'position, NULL, revision, type, schema_version, data, actor, at';
type EventColumns = [
  position: bigint,
  stream: string | null,
  revision: bigint,
  type: string,
  schema_version: bigint,
  data: string,
  actor: string,
  at: string,
];

function fromColumns(c: EventColumns, stream: string | null): RecordedEvent {
  return fromRow({
    position: c[0],
    stream: stream ?? (c[1] as string),
    revision: c[2],
    type: c[3],
    schema_version: c[4],
    data: c[5],
    actor: c[6],
    at: c[7],
  });
}

function fromRow(row: EventRow): RecordedEvent {
  let data: unknown;
  try {
    data = JSON.parse(row.data);
  } catch (error) {
    throw new CorruptEventError(
      `event at position ${row.revision} of stream ${row.stream} (global position ${row.position}) is unreadable: its data is not JSON (${(error as Error).message})`,
    );
  }
  return {
    stream: row.stream,
    revision: row.revision,
    position: row.position,
    type: row.type,
    schemaVersion: Number(row.schema_version),
    data,
    actor: row.actor,
    at: row.at,
  };
}

/** SQLite's LIMIT: a negative one means no limit. */
function limit(maxCount: number | undefined): number {
  return checkMaxCount(maxCount) ?? -1;
}

function errorCode(error: unknown): string | undefined {
  return error instanceof Database.SqliteError ? error.code : undefined;
}

/** SQLite failures that mean "cannot serve now", not "the request is wrong". */
const UNAVAILABLE: [RegExp, string][] = [
  [/^SQLITE_(BUSY|LOCKED)/, 'event store is busy (locked by another writer past the busy timeout)'],
  [/^SQLITE_FULL$/, 'event store is full (disk full)'],
  [/^SQLITE_IOERR/, 'event store had an I/O error'],
  [/^SQLITE_READONLY/, 'event store is read-only'],
  [/^SQLITE_CANTOPEN/, 'event store file cannot be opened'],
  [/^SQLITE_(CORRUPT|NOTADB)/, 'event store file is corrupt or not a database'],
];

/** Turns what SQLite reports into the store's errors; anything unexpected is rethrown as is. */
function toStoreError(error: unknown, consequence: string): unknown {
  if (error instanceof StoreUnavailableError || error instanceof StoreUsageError) return error;
  if (error instanceof TypeError && /connection is not open/.test(error.message)) {
    return new StoreUnavailableError('event store is closed', error);
  }
  const code = errorCode(error) ?? '';
  const reason = UNAVAILABLE.find(([pattern]) => pattern.test(code))?.[1];
  return reason === undefined ? error : new StoreUnavailableError(`${reason}: ${consequence}`, error);
}

function unavailable(message: string, error: unknown): StoreUnavailableError {
  const detail = error instanceof Error ? `: ${error.message}` : '';
  return new StoreUnavailableError(`${message}${detail}`, error);
}
