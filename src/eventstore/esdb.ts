/**
 * EventStoreDB / KurrentDB event store, through `@eventstore/db-client` 6.x (gRPC).
 *
 * Written for EventStoreDB 23.10 and 24.x (LTS) and KurrentDB 25.x, which all speak the same
 * gRPC protocol to this client. Caveats:
 * - The 6.x client only parses `esdb://` and `esdb+discover://`; `kurrentdb://` and
 *   `kurrentdb+discover://` are rewritten to those before parsing.
 * - Positions are the server's commit positions. Every event appended through gRPC commits
 *   itself, so its commit position equals its own log position: unique per event and in `$all`
 *   order. Events written by the legacy TCP API inside explicit transactions share one commit
 *   position; Sluice never writes those, and reading them back through `readAll` is unsupported.
 * - Stream reads carry per-event positions from EventStoreDB 22.6 on; older servers are refused
 *   with StoreUnavailableError when a position is needed.
 * - An append costs two round trips: the append itself, then a read of exactly the events it
 *   appended, so that every returned event carries the position the server gave it.
 * - Subscriptions report `caughtUp` from the server's caught-up message (EventStoreDB 23.10 and
 *   later), or, on any server, once the stream's last revision at subscribe time was delivered.
 * - The default server limit on one append is 1 MiB (`EVENTSTORE_MAX_APPEND_SIZE`); larger
 *   appends fail with StoreUsageError. docker-compose.yml raises it to 4 MiB.
 * - Run in insecure mode (`?tls=false`) only on a trusted network.
 */
import {
  BACKWARDS,
  END,
  type AppendResult as EsdbAppendResult,
  EventStoreDBClient,
  FORWARDS,
  type Position,
  type ReadPosition,
  START,
  type StreamingRead,
} from '@eventstore/db-client';
import { checkExpected, checkMaxCount, checkStream } from './checks.js';
import { ConcurrencyError, StoreUnavailableError, StoreUsageError } from './errors.js';
import { EsdbSubscription, type ResubscribeOptions, sleep } from './esdb-subscription.js';
import {
  describeConnectionString,
  type EsdbClient,
  errorType,
  fromResolvedEvent,
  isTransientError,
  isWrongExpectedVersion,
  normalizeConnectionString,
  redactCredentials,
  toConcurrencyError,
  toEsdbExpectedRevision,
  toEventData,
  toStoreError,
} from './esdb-translation.js';
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

export type { ResubscribeOptions } from './esdb-subscription.js';
export type { EsdbClient } from './esdb-translation.js';

export interface EsdbStoreOptions {
  /** `esdb://host:2113?tls=false`, `esdb+discover://...`, or the same with `kurrentdb`. */
  connectionString: string;
  resubscribe?: ResubscribeOptions;
}

/** `readAll` reads `$all` in pages of this many records (system events included). */
const READ_ALL_PAGE = 500;
/** After an append, its events are read back; a follower may lag, so a few tries. */
const READ_BACK_DELAYS_MS = [0, 20, 50, 100, 250, 500];

/**
 * Opens a store on an EventStoreDB / KurrentDB server. Nothing connects yet: the client connects
 * on first use, so an unreachable server shows as StoreUnavailableError from the first call.
 * Throws StoreUsageError when the connection string cannot be parsed.
 */
export function openEsdbStore(options: EsdbStoreOptions): EventStore {
  const description = describeConnectionString(options.connectionString);
  const normalized = normalizeConnectionString(options.connectionString);
  let client: EventStoreDBClient;
  try {
    client = EventStoreDBClient.connectionString(normalized);
  } catch (error) {
    const detail = redactCredentials(error instanceof Error ? error.message : String(error));
    throw new StoreUsageError(`${description} is not a valid EventStoreDB connection string: ${detail}`);
  }
  return new EsdbEventStore(client, description, options.resubscribe ?? {});
}

/**
 * A store over a client built elsewhere (custom channel credentials, or a test double); the
 * store owns it from then on and disposes of it on close().
 */
export function openEsdbStoreWithClient(
  client: EsdbClient,
  description: string,
  resubscribe: ResubscribeOptions = {},
): EventStore {
  return new EsdbEventStore(client, description, resubscribe);
}

class EsdbEventStore implements EventStore {
  private readonly subscriptions = new Set<EsdbSubscription>();
  private closed = false;

  constructor(
    private readonly client: EsdbClient,
    readonly description: string,
    private readonly resubscribe: ResubscribeOptions,
  ) {}

  async append(stream: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    this.assertOpen();
    checkStream(stream);
    const expectedRevision = toEsdbExpectedRevision(expected);
    // Serialise first, so a bad event fails before anything is sent.
    const proposed = events.map((event) => toEventData(stream, event));
    if (proposed.length === 0) {
      // Nothing to append, yet the caller's expectation is still checked, as in SQLite. There is
      // no atomic "check without writing" in EventStoreDB: this is a read, then a comparison.
      const last = await this.lastRevision(stream);
      checkExpected(stream, expected, last);
      return { nextExpectedRevision: last, events: [] };
    }
    let result: EsdbAppendResult;
    try {
      result = await this.client.appendToStream(stream, proposed, { expectedRevision });
    } catch (error) {
      if (isWrongExpectedVersion(error)) throw toConcurrencyError(stream, expected, error);
      throw toStoreError(error, 'the events may not have been appended; read the stream before deciding again');
    }
    if (!result.success) {
      // Only with throwOnAppendFailure=false in the connection string: the same lost race.
      const actual = await this.lastRevision(stream);
      throw new ConcurrencyError(stream, expected, actual < 0n ? 'no_stream' : actual);
    }
    const last = result.nextExpectedRevision;
    const first = last - BigInt(proposed.length) + 1n;
    return { nextExpectedRevision: last, events: await this.readBack(stream, first, proposed.length) };
  }

  async readStream(stream: string, options: ReadOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    checkStream(stream);
    const maxCount = checkMaxCount(options.maxCount);
    if (maxCount === 0) return [];
    const from = options.fromRevision ?? 0n;
    return this.readStreamNow(stream, from < 0n ? 0n : from, maxCount);
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const wanted = checkMaxCount(options.maxCount) ?? Number.POSITIVE_INFINITY;
    if (wanted === 0) return [];
    const after = options.afterPosition ?? -1n;
    // `fromPosition` is inclusive: start at the event at `after`, then skip it.
    let from: ReadPosition = after < 0n ? START : { commit: after, prepare: after };
    let last: Position | undefined;
    const found: RecordedEvent[] = [];
    for (;;) {
      const page = await this.read(() =>
        this.client.readAll({ fromPosition: from, maxCount: READ_ALL_PAGE, direction: FORWARDS }),
      );
      let fresh = 0;
      for (const resolved of page) {
        const event = resolved.event;
        if (event === undefined) continue;
        if (last !== undefined && comparePositions(event.position, last) <= 0) continue;
        if (event.position.commit <= after) continue;
        last = event.position;
        fresh += 1;
        // System streams ($stats-..., $$metadata, ...) and system events ($>, $metadata, ...).
        if (event.type.startsWith('$') || event.streamId.startsWith('$')) continue;
        found.push(fromResolvedEvent(resolved) as RecordedEvent);
        if (found.length >= wanted) return found;
      }
      if (page.length < READ_ALL_PAGE || fresh === 0 || last === undefined) return found;
      from = last;
    }
  }

  async streamRevision(stream: string): Promise<bigint> {
    this.assertOpen();
    checkStream(stream);
    return this.lastRevision(stream);
  }

  subscribe(
    stream: string,
    options: SubscribeOptions,
    onEvent: EventHandler,
    onError?: (error: Error) => void,
  ): Subscription {
    this.assertOpen();
    checkStream(stream);
    const after = options.afterRevision ?? -1n;
    const subscription = new EsdbSubscription({
      client: this.client,
      stream,
      after: after < -1n ? -1n : after,
      onEvent,
      onError,
      retry: this.resubscribe,
      lastRevision: () => this.lastRevision(stream),
      forget: () => this.subscriptions.delete(subscription),
    });
    this.subscriptions.add(subscription);
    return subscription;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of [...this.subscriptions]) await subscription.close();
    try {
      await this.client.dispose();
    } catch {
      // Closing: a channel that fails to shut down cleanly has nothing left to lose.
    }
  }

  private async lastRevision(stream: string): Promise<bigint> {
    const [last] = await this.read(() =>
      this.client.readStream(stream, { direction: BACKWARDS, fromRevision: END, maxCount: 1 }),
    );
    return last?.event?.revision ?? -1n;
  }

  private async readStreamNow(
    stream: string,
    fromRevision: bigint,
    maxCount: number | undefined,
  ): Promise<RecordedEvent[]> {
    const read = await this.read(() =>
      this.client.readStream(stream, {
        fromRevision,
        direction: FORWARDS,
        ...(maxCount === undefined ? {} : { maxCount }),
      }),
    );
    return read.map((resolved) => fromResolvedEvent(resolved)).filter((event) => event !== undefined);
  }

  /**
   * Reads back exactly the events just appended (revisions first..first+count-1), so that the
   * result carries the positions the server gave them: an append reports one position for the
   * whole append, while every event has its own. The revisions are the append's own, so events
   * appended later by others cannot mix in. A follower may not have them yet: a few retries.
   */
  private async readBack(stream: string, first: bigint, count: number): Promise<RecordedEvent[]> {
    let failure: unknown;
    for (const delay of READ_BACK_DELAYS_MS) {
      if (delay > 0) await sleep(delay);
      try {
        const events = await this.readStreamNow(stream, first, count);
        if (events.length === count && events.every((event, i) => event.revision === first + BigInt(i))) {
          return events;
        }
      } catch (error) {
        failure = error;
        // Retry transport failures only: a server that cannot place events will not learn to.
        if (!(error instanceof StoreUnavailableError && isTransientError(error.cause))) break;
      }
    }
    const detail = failure instanceof Error ? `: ${failure.message}` : '';
    throw new StoreUnavailableError(
      `appended ${count} event(s) to stream ${stream} at revisions ${first}..${first + BigInt(count) - 1n}, but could not read them back for their positions${detail}`,
      failure,
    );
  }

  /** Runs one read to its end; an unknown stream reads as empty. */
  private async read<T>(start: () => StreamingRead<T>): Promise<T[]> {
    if (this.closed) throw new StoreUnavailableError('event store is closed');
    try {
      return await collect(start());
    } catch (error) {
      if (errorType(error) === 'stream-not-found') return [];
      throw toStoreError(error, 'cannot read');
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('event store is closed');
  }
}

/** Drains a client read; errors reach `for await` even when they come before it starts. */
async function collect<T>(read: StreamingRead<T>): Promise<T[]> {
  read.on('error', (error: Error) => {
    if (!read.destroyed) read.destroy(error);
  });
  const items: T[] = [];
  for await (const item of read) items.push(item);
  return items;
}

/** $all order: by commit position, then by prepare position within one commit. */
function comparePositions(a: Position, b: Position): number {
  if (a.commit !== b.commit) return a.commit < b.commit ? -1 : 1;
  if (a.prepare !== b.prepare) return a.prepare < b.prepare ? -1 : 1;
  return 0;
}
