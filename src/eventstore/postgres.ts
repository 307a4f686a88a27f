/**
 * PostgreSQL event store, through `pg` with a connection pool: the shared store for several
 * Sluice servers on one database.
 *
 * - Tables live in one schema (`?schema=NAME`, default `public`), created and migrated on open
 *   (see postgres-migrations.ts).
 * - An append is one transaction that first takes a transaction-level advisory lock, then checks
 *   the expected revision and inserts. The lock serialises appends, so positions are handed out
 *   in commit order: a reader of `position > p` never misses an event that commits later with a
 *   lower position. The unique (stream, revision) constraint stays as the last word on races.
 * - Subscriptions read. A LISTEN connection wakes them on every commit, a slow poll wakes them
 *   anyway, and a reconnect of the LISTEN connection wakes them once more, so a lost
 *   notification or a dropped connection delays delivery but never loses an event.
 * - Anything that means "the database cannot serve now" (refused or dropped connection,
 *   shutdown, timeouts, missing privileges) becomes StoreUnavailableError.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { checkExpected, checkMaxCount, checkStream, serializedData } from './checks.js';
import { ConcurrencyError, CorruptEventError, StoreUnavailableError, StoreUsageError } from './errors.js';
import { describe, isConnectionFailure, pgCode, toStoreError } from './postgres-errors.js';
import { findWritable, hostOf, splitHosts } from './postgres-hosts.js';
import { migrate, NewerSchemaError, NOTIFY_CHANNEL, quoteIdent } from './postgres-migrations.js';
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

export interface PostgresStoreOptions {
  /** `postgres://USER:PASSWORD@HOST:PORT/DATABASE` or `postgresql://...`, optionally `?schema=NAME`. */
  url: string;
  /** Most connections the pool opens; default 10. */
  poolSize?: number;
  /** Where to tell an operator of trouble that does not stop writes (an old primary back beside the new one). */
  warn?: (message: string) => void;
  /** How long to wait for a connection before the call fails as unavailable; default 5000. */
  connectTimeoutMs?: number;
  /**
   * How long any statement or lock wait may take, and how long a transaction may sit idle (a
   * writer cut off mid-append then releases the append lock); default 10000.
   */
  statementTimeoutMs?: number;
  /** How often subscriptions read even without a notification; default 1000. */
  pollIntervalMs?: number;
  /** Delay before reconnecting the LISTEN connection, doubled up to 5 s; default 100. */
  reconnectDelayMs?: number;
}

const SUBSCRIPTION_PAGE = 500;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

interface EventRow {
  position: string;
  stream: string;
  revision: string;
  type: string;
  schema_version: number;
  data: string;
  actor: string;
  at: string;
}

export interface PostgresUrl {
  /** What `pg` is given: the URL without `schema`. */
  connectionString: string;
  schema: string;
  /** The URL without its password, for logs. */
  description: string;
}

/** Splits `?schema=` off a postgres URL; throws StoreUsageError for anything malformed. */
export function parsePostgresUrl(url: string): PostgresUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreUsageError('EVENT_STORE_URL is not a valid postgres:// URL');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new StoreUsageError(`EVENT_STORE_URL must start with postgres:// or postgresql://, not ${parsed.protocol}//`);
  }
  const schemas = parsed.searchParams.getAll('schema');
  if (schemas.length > 1) throw new StoreUsageError('EVENT_STORE_URL names ?schema= more than once');
  const schema = schemas[0] ?? 'public';
  if (!SCHEMA_NAME.test(schema)) {
    throw new StoreUsageError(
      `EVENT_STORE_URL ?schema=${JSON.stringify(schema)} is not a schema name Sluice accepts: letters, digits and _, not starting with a digit, at most 63`,
    );
  }
  parsed.searchParams.delete('schema');
  const connectionString = parsed.toString();
  if (parsed.password !== '') parsed.password = '***';
  if (schema !== 'public') parsed.searchParams.set('schema', schema);
  return { connectionString, schema, description: parsed.toString() };
}

/**
 * Connects, migrates the schema, and returns the store. Throws StoreUnavailableError when the
 * database cannot be reached or refuses the migration, StoreUsageError for a malformed URL.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<EventStore> {
  const store = new PostgresEventStore(options);
  await store.migrate();
  return store;
}

class PostgresEventStore implements EventStore {
  readonly description: string;
  private readonly schema: string;
  private readonly table: string;
  private readonly appendLock: string;
  private clientConfig: pg.ClientConfig;
  private pool: pg.Pool;
  /** With a host list: every host's connection string, in order (see postgres-hosts.ts). */
  private readonly candidates: string[] | null;
  /** With a host list: look for the writable host before the next statement. */
  private needsProbe = false;
  private probing: Promise<void> | null = null;
  /** With a host list: the highest timeline written on; a primary on an older one is an old primary. */
  private newestTimeline = 0;
  private lastWarning: string | null = null;
  private readonly warn: (message: string) => void;
  private readonly poolSize: number;
  private readonly pollIntervalMs: number;
  private readonly reconnectDelayMs: number;
  private readonly subscriptions = new Set<ReadingSubscription>();
  private listener: pg.Client | null = null;
  private listening = false;
  private reconnectDelay: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: PostgresStoreOptions) {
    const hosts = splitHosts(options.url);
    const url = parsePostgresUrl(hosts?.[0] ?? options.url);
    this.candidates = hosts?.map((u) => parsePostgresUrl(u).connectionString) ?? null;
    this.needsProbe = this.candidates !== null;
    this.description = hosts ? `${url.description} (host list: ${hosts.map(hostOf).join(', ')})` : url.description;
    this.schema = url.schema;
    this.table = `${quoteIdent(url.schema)}.events`;
    this.appendLock = advisoryKey(`sluice-append:${url.schema}`);
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 100;
    this.reconnectDelay = this.reconnectDelayMs;
    const timeout = options.statementTimeoutMs ?? 10_000;
    this.clientConfig = {
      connectionString: url.connectionString,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      keepAlive: true,
      statement_timeout: timeout,
      lock_timeout: timeout,
      idle_in_transaction_session_timeout: timeout,
      // The client side gives up a little after the server would, on a connection gone silent.
      query_timeout: timeout + 2000,
      fallback_application_name: 'sluice',
    };
    this.poolSize = options.poolSize ?? 10;
    this.warn = options.warn ?? ((message) => console.warn(message));
    this.pool = this.newPool();
  }

  private newPool(): pg.Pool {
    const pool = new pg.Pool({ ...this.clientConfig, max: this.poolSize });
    // An idle connection dropped by the server reports here; the next checkout connects anew.
    pool.on('error', () => undefined);
    return pool;
  }

  /**
   * With a host list, after a failure (or at start): finds the writable host and moves the pool
   * and the listener to it. While there is none, every statement is refused as unavailable.
   */
  private async writable(): Promise<void> {
    if (this.candidates === null || !this.needsProbe) return;
    this.probing ??= (async () => {
      const {
        connectionString: found,
        timeline,
        warning,
      } = await findWritable(
        this.candidates as string[],
        Number(this.clientConfig.connectionTimeoutMillis),
        this.newestTimeline,
      );
      this.newestTimeline = Math.max(this.newestTimeline, timeline);
      if (warning !== null && warning !== this.lastWarning) this.warn(warning);
      this.lastWarning = warning;
      if (found !== this.clientConfig.connectionString) {
        const old = this.pool;
        this.clientConfig = { ...this.clientConfig, connectionString: found };
        this.pool = this.newPool();
        old.end().catch(() => undefined);
        // The listener reconnects on its own, to the new host.
        this.listener?.end().catch(() => undefined);
      }
      this.needsProbe = false;
    })().finally(() => {
      this.probing = null;
    });
    await this.probing;
  }

  /** toStoreError, and with a host list a failure makes the next statement look for the primary again. */
  private failed(error: unknown, consequence: string): unknown {
    const mapped = toStoreError(error, consequence);
    if (mapped instanceof StoreUnavailableError && this.candidates !== null) this.needsProbe = true;
    return mapped;
  }

  async migrate(): Promise<void> {
    let client: pg.PoolClient | undefined;
    try {
      await this.writable();
      client = await this.pool.connect();
      await migrate(client, this.schema, `sluice-migrate:${this.schema}`);
      client.release();
    } catch (error) {
      client?.release(true);
      await this.pool.end().catch(() => undefined);
      if (error instanceof NewerSchemaError) {
        throw new StoreUnavailableError(`event store ${this.description}: ${error.message}`);
      }
      const mapped = this.failed(error, `cannot open event store ${this.description}`);
      throw mapped instanceof Error && !(mapped instanceof StoreUnavailableError)
        ? new StoreUnavailableError(`cannot open event store ${this.description}: ${mapped.message}`, error)
        : mapped;
    }
  }

  async append(stream: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    this.assertOpen();
    checkStream(stream);
    if (typeof expected === 'bigint' && expected < -1n) {
      throw new StoreUsageError(`expected revision ${expected} is not a revision`);
    }
    // Serialise before the transaction, so a bad event fails without taking the append lock.
    const rows = events.map((event) => ({ event, data: serializedData(stream, event) }));
    const client = await this.connect('nothing was appended');
    let broken: unknown;
    try {
      // One round trip: the lock is taken before the revision is read, in a later statement,
      // so that read sees every append committed before ours.
      await client.query(`BEGIN; SELECT pg_advisory_xact_lock(${this.appendLock})`);
      // The check and the insert in one statement (one round trip under the lock): the insert
      // happens only when the stream's last revision meets the expectation, and the last
      // revision comes back either way for the shared check to judge.
      const { rows: result } = await client.query<{ last: string; position: string | null; revision: string | null }>(
        `WITH last AS (
           SELECT coalesce(max(revision), -1) AS revision FROM ${this.table} WHERE stream = $1
         ), inserted AS (
           INSERT INTO ${this.table} (stream, revision, type, schema_version, data, actor, at)
           SELECT $1, last.revision + e.ord, e.type, e.schema_version, e.data, e.actor, e.at
           FROM last, unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[])
             WITH ORDINALITY AS e(type, schema_version, data, actor, at, ord)
           WHERE $7 = 'any'
             OR ($7 = 'no_stream' AND last.revision = -1)
             OR ($7 = 'stream_exists' AND last.revision >= 0)
             OR ($7 = 'exact' AND last.revision = $8::bigint)
           ORDER BY e.ord
           RETURNING position, revision
         )
         SELECT last.revision AS last, inserted.position, inserted.revision
         FROM last LEFT JOIN inserted ON true
         ORDER BY inserted.revision`,
        [
          stream,
          rows.map((r) => r.event.type),
          rows.map((r) => r.event.schemaVersion),
          rows.map((r) => r.data),
          rows.map((r) => r.event.actor),
          rows.map((r) => r.event.at),
          typeof expected === 'bigint' ? 'exact' : expected,
          typeof expected === 'bigint' ? String(expected) : null,
        ],
      );
      const last = BigInt(result[0]?.last ?? '-1');
      checkExpected(stream, expected, last);
      const positions = new Map(
        result.flatMap((r) => (r.revision === null ? [] : [[BigInt(r.revision), BigInt(r.position as string)]])),
      );
      if (positions.size !== rows.length) {
        throw new Error(`append to ${stream}: ${positions.size} of ${rows.length} events inserted; rolled back`);
      }
      const recorded: RecordedEvent[] = rows.map(({ event }, index) => {
        const revision = last + 1n + BigInt(index);
        return {
          stream,
          revision,
          position: positions.get(revision) as bigint,
          type: event.type,
          schemaVersion: event.schemaVersion,
          // What a later read returns: the stored JSON text, parsed.
          data: JSON.parse(rows[index]?.data as string),
          actor: event.actor,
          at: event.at,
        };
      });
      await this.commit(client);
      // Handed to this process's subscriptions as a read would return them: no read back.
      for (const subscription of this.subscriptions) {
        if (subscription.stream === stream) subscription.handOver(recorded);
      }
      return { nextExpectedRevision: last + BigInt(rows.length), events: recorded };
    } catch (error) {
      broken = isConnectionFailure(error) ? error : undefined;
      if (broken === undefined) await client.query('ROLLBACK').catch(() => undefined);
      if (error instanceof ConcurrencyError || error instanceof StoreUnavailableError) throw error;
      if (pgCode(error) === '23505' || pgCode(error) === '40001' || pgCode(error) === '40P01') {
        // Only a writer bypassing the lock can get here, yet it is still a lost race.
        const actual = await this.streamRevision(stream).catch(() => -1n);
        throw new ConcurrencyError(stream, expected, actual < 0n ? 'no_stream' : actual);
      }
      throw this.failed(error, 'nothing was appended');
    } finally {
      client.release(broken === undefined ? undefined : true);
    }
  }

  async readStream(stream: string, options: ReadOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    checkStream(stream);
    return this.readStreamNow(stream, options.fromRevision ?? 0n, checkMaxCount(options.maxCount));
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const maxCount = checkMaxCount(options.maxCount);
    return this.select(`SELECT * FROM ${this.table} WHERE position > $1 ORDER BY position LIMIT $2`, [
      String(options.afterPosition ?? -1n),
      maxCount ?? null,
    ]);
  }

  async streamRevision(stream: string): Promise<bigint> {
    this.assertOpen();
    checkStream(stream);
    try {
      await this.writable();
      return await this.lastRevision(this.pool, stream);
    } catch (error) {
      throw this.failed(error, 'cannot read');
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
    const subscription = new ReadingSubscription(
      stream,
      options.afterRevision ?? -1n,
      null,
      (from) => this.readStreamNow(stream, from, SUBSCRIPTION_PAGE),
      SUBSCRIPTION_PAGE,
      onEvent,
      onError,
      () => this.forget(subscription),
    );
    this.subscriptions.add(subscription);
    this.startFollowing();
    subscription.wake();
    return subscription;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of [...this.subscriptions]) await subscription.close();
    this.stopFollowing();
    await this.pool.end().catch(() => undefined);
  }

  private async readStreamNow(stream: string, fromRevision: bigint, maxCount: number | undefined) {
    this.assertOpen();
    return this.select(`SELECT * FROM ${this.table} WHERE stream = $1 AND revision >= $2 ORDER BY revision LIMIT $3`, [
      stream,
      String(fromRevision),
      maxCount ?? null,
    ]);
  }

  private async select(sql: string, values: unknown[]): Promise<RecordedEvent[]> {
    let rows: EventRow[];
    try {
      await this.writable();
      rows = (await this.pool.query<EventRow>(sql, values)).rows;
    } catch (error) {
      throw this.failed(error, 'cannot read');
    }
    return rows.map(fromRow);
  }

  private async lastRevision(client: pg.Pool | pg.PoolClient, stream: string): Promise<bigint> {
    const { rows } = await client.query<{ last: string | null }>(
      `SELECT max(revision) AS last FROM ${this.table} WHERE stream = $1`,
      [stream],
    );
    const last = rows[0]?.last;
    return last == null ? -1n : BigInt(last);
  }

  private async connect(consequence: string): Promise<pg.PoolClient> {
    try {
      await this.writable();
      const client = await this.pool.connect();
      // A connection lost between two statements of a checked-out client is reported as an
      // 'error' event, which would end the process unheard; the next statement fails anyway.
      if (client.listenerCount('error') === 0) client.on('error', () => undefined);
      return client;
    } catch (error) {
      if (this.closed) throw new StoreUnavailableError('event store is closed');
      throw this.failed(error, consequence);
    }
  }

  /** A COMMIT whose answer never came may or may not have been applied: say so. */
  private async commit(client: pg.PoolClient): Promise<void> {
    try {
      await client.query('COMMIT');
    } catch (error) {
      if (!isConnectionFailure(error)) throw error;
      throw new StoreUnavailableError(
        `lost the connection to PostgreSQL while committing (${describe(error)}): the append may or may not be recorded; read the stream before retrying`,
        error,
      );
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('event store is closed');
  }

  private wakeAll(): void {
    for (const subscription of this.subscriptions) subscription.wake();
  }

  /** Starts the LISTEN connection and the poll, once, while anyone subscribes. */
  private startFollowing(): void {
    if (this.pollTimer === undefined) {
      this.pollTimer = setInterval(() => this.wakeAll(), this.pollIntervalMs);
      this.pollTimer.unref();
    }
    if (!this.listening) {
      this.listening = true;
      void this.listen();
    }
  }

  private stopFollowing(): void {
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.listening = false;
    const listener = this.listener;
    this.listener = null;
    listener?.end().catch(() => undefined);
  }

  private async listen(): Promise<void> {
    const client = new pg.Client(this.clientConfig);
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = null;
      client.end().catch(() => undefined);
      this.scheduleListen();
    };
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', (message) => {
      if (message.payload === this.schema) this.wakeAll();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch {
      onLost();
      return;
    }
    if (!this.listening || lost) {
      client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.reconnectDelay = this.reconnectDelayMs;
    // Whatever was appended while no one listened is found by reading.
    this.wakeAll();
  }

  private scheduleListen(): void {
    if (!this.listening || this.closed) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.listening && this.listener === null) void this.listen();
    }, this.reconnectDelay);
    this.reconnectTimer.unref();
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, 5000);
  }

  private forget(subscription: ReadingSubscription): void {
    this.subscriptions.delete(subscription);
    if (this.subscriptions.size === 0) this.stopFollowing();
  }
}

/** A stable 64-bit advisory lock key for a name, as an SQL literal. */
function advisoryKey(name: string): string {
  return createHash('sha256').update(name).digest().readBigInt64BE(0).toString();
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
    revision: BigInt(row.revision),
    position: BigInt(row.position),
    type: row.type,
    schemaVersion: row.schema_version,
    data,
    actor: row.actor,
    at: row.at,
  };
}
