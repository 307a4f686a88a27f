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
  type AllStreamResolvedEvent,
  ANY,
  type AppendExpectedRevision,
  BACKWARDS,
  type CurrentRevision,
  END,
  type AppendResult as EsdbAppendResult,
  EventStoreDBClient,
  FORWARDS,
  type JSONEventType,
  type JSONType,
  jsonEvent,
  NO_STREAM,
  type Position,
  type ReadPosition,
  type ResolvedEvent,
  START,
  STREAM_EXISTS,
  type StreamingRead,
  type StreamSubscription,
} from '@eventstore/db-client';
import { checkExpected, checkMaxCount, checkStream, serializedData } from './checks.js';
import { ConcurrencyError, StoreUnavailableError, StoreUsageError } from './errors.js';
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

/** How a dropped subscription is resumed: exponential backoff, a bounded number of tries. */
export interface ResubscribeOptions {
  /** Consecutive failed attempts before giving up and calling onError; default 8. */
  attempts?: number;
  /** Delay before the first retry, doubled for each further one; default 100 ms. */
  baseDelayMs?: number;
  /** Longest delay between two retries; default 5000 ms. */
  maxDelayMs?: number;
}

export interface EsdbStoreOptions {
  /** `esdb://host:2113?tls=false`, `esdb+discover://...`, or the same with `kurrentdb`. */
  connectionString: string;
  resubscribe?: ResubscribeOptions;
}

/** `readAll` reads `$all` in pages of this many records (system events included). */
const READ_ALL_PAGE = 500;
/** What the server sends as the position of an event it cannot place (`Position.End`). */
const NO_POSITION = 0xffff_ffff_ffff_ffffn;
/** After an append, its events are read back; a follower may lag, so a few tries. */
const READ_BACK_DELAYS_MS = [0, 20, 50, 100, 250, 500];
/** A subscription that stayed up this long counts as healthy again when it drops. */
const STABLE_CONNECTION_MS = 10_000;

const SCHEMES: Record<string, string> = {
  esdb: 'esdb',
  'esdb+discover': 'esdb+discover',
  kurrentdb: 'esdb',
  'kurrentdb+discover': 'esdb+discover',
};

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

/** The part of the client the store uses. */
export type EsdbClient = Pick<
  EventStoreDBClient,
  'appendToStream' | 'readStream' | 'readAll' | 'subscribeToStream' | 'dispose'
>;

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

/**
 * Rewrites a `kurrentdb://` or `kurrentdb+discover://` connection string to the `esdb` scheme the
 * 6.x client parses; `esdb://` and `esdb+discover://` pass unchanged. Anything else is refused.
 */
export function normalizeConnectionString(connectionString: string): string {
  const trimmed = connectionString.trim();
  const match = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed);
  const scheme = SCHEMES[match?.[1]?.toLowerCase() ?? ''];
  if (match === null || scheme === undefined) {
    throw new StoreUsageError(
      `${describeConnectionString(trimmed)} is not an EventStoreDB connection string: use esdb://host:2113?tls=false, esdb+discover://host:2113, or kurrentdb:// in place of esdb://`,
    );
  }
  return `${scheme}://${trimmed.slice(match[0].length)}`;
}

/** The connection string without its credentials, for logs and error messages. */
export function describeConnectionString(connectionString: string): string {
  return redactCredentials(connectionString.trim());
}

function redactCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^@/?\s]*@/gi, '$1***@');
}

/** Our expectation as the client's: -1n means "no events yet", the same as 'no_stream'. */
export function toEsdbExpectedRevision(expected: ExpectedRevision): AppendExpectedRevision {
  switch (expected) {
    case 'any':
      return ANY;
    case 'no_stream':
      return NO_STREAM;
    case 'stream_exists':
      return STREAM_EXISTS;
  }
  if (typeof expected !== 'bigint' || expected < -1n) {
    throw new StoreUsageError(`expected revision ${String(expected)} is not a revision`);
  }
  return expected === -1n ? NO_STREAM : expected;
}

/** The client's expectation as ours. */
export function fromEsdbExpectedRevision(expected: AppendExpectedRevision): ExpectedRevision {
  switch (expected) {
    case ANY:
      return 'any';
    case NO_STREAM:
      return 'no_stream';
    case STREAM_EXISTS:
      return 'stream_exists';
  }
  return expected < 0n ? 'no_stream' : expected;
}

/**
 * A stream's current revision as the client reports it in a WrongExpectedVersionError: the
 * NO_STREAM constant, or -1 from older code paths, both mean the stream has no events.
 */
export function fromEsdbCurrentRevision(
  actual: CurrentRevision | bigint | number | string | undefined,
): bigint | 'no_stream' {
  if (actual === NO_STREAM || actual === undefined) return 'no_stream';
  let revision: bigint;
  try {
    revision = BigInt(actual);
  } catch {
    return 'no_stream';
  }
  return revision < 0n ? 'no_stream' : revision;
}

/** The client's WrongExpectedVersionError as our ConcurrencyError. */
export function toConcurrencyError(
  stream: string,
  expected: ExpectedRevision | undefined,
  error: { expectedVersion?: AppendExpectedRevision; actualVersion?: CurrentRevision },
): ConcurrencyError {
  const theirs = error.expectedVersion === undefined ? 'any' : fromEsdbExpectedRevision(error.expectedVersion);
  return new ConcurrencyError(stream, expected ?? theirs, fromEsdbCurrentRevision(error.actualVersion));
}

export function isWrongExpectedVersion(
  error: unknown,
): error is Error & { expectedVersion?: AppendExpectedRevision; actualVersion?: CurrentRevision } {
  return errorType(error) === 'wrong-expected-version';
}

/** Transport failures: the server could not be reached, did not answer, or cannot serve now. */
const TRANSIENT: Record<string, string> = {
  unavailable: 'EventStoreDB is unavailable (cannot connect, or the connection was lost)',
  'deadline-exceeded': 'EventStoreDB did not answer in time',
  timeout: 'EventStoreDB timed out',
  'not-leader': 'the EventStoreDB node is not the leader (the cluster may be electing one)',
  cancelled: 'the EventStoreDB call was cancelled',
  unknown: 'EventStoreDB failed the request',
};
/** gRPC status codes of the same failures, for errors the client did not convert. */
const TRANSIENT_GRPC_CODES: Record<number, string> = {
  1: 'cancelled',
  2: 'unknown',
  4: 'deadline-exceeded',
  10: 'timeout',
  14: 'unavailable',
};
const NETWORK_CODES = /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH)$/;

/** Whether an error means "try again later" rather than "the request is wrong". */
export function isTransientError(error: unknown): boolean {
  return transientKind(error) !== undefined;
}

function transientKind(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const type = errorType(error);
  if (type !== undefined) return type in TRANSIENT ? type : undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'number') return TRANSIENT_GRPC_CODES[code];
  if (typeof code === 'string' && NETWORK_CODES.test(code)) return 'unavailable';
  if (/^Failed to discover after \d+ attempts/.test(error.message)) return 'discovery';
  return undefined;
}

/**
 * Turns what the client throws into the store's errors: transport failures become
 * StoreUnavailableError saying `consequence`; a request the server cannot take becomes
 * StoreUsageError; anything unexpected is returned as is.
 */
export function toStoreError(error: unknown, consequence: string): unknown {
  if (
    error instanceof StoreUnavailableError ||
    error instanceof StoreUsageError ||
    error instanceof ConcurrencyError ||
    !(error instanceof Error)
  ) {
    return error;
  }
  const detail = error.message ? ` (${error.message})` : '';
  switch (errorType(error)) {
    case 'maximum-append-size-exceeded': {
      const size = (error as { maxAppendSize?: number }).maxAppendSize;
      const limit = size === undefined ? '' : ` of ${size} bytes`;
      return new StoreUsageError(
        `the events exceed the server's maximum append size${limit} (EVENTSTORE_MAX_APPEND_SIZE): ${consequence}`,
      );
    }
    case 'stream-deleted': {
      const stream = (error as { streamName?: string }).streamName ?? '';
      return new StoreUsageError(`stream ${stream} was deleted in EventStoreDB and cannot be used again`);
    }
    case 'access-denied':
      return new StoreUnavailableError(
        `EventStoreDB denied access (check the credentials in EVENT_STORE_URL): ${consequence}${detail}`,
        error,
      );
  }
  const kind = transientKind(error);
  if (kind === undefined) return error;
  const reason = kind === 'discovery' ? 'EventStoreDB cluster discovery failed' : TRANSIENT[kind];
  return new StoreUnavailableError(`${reason}: ${consequence}${detail}`, error);
}

/**
 * A read event as ours. Sluice keeps actor, at and schemaVersion in the event's metadata; an
 * event some other program wrote may lack them, and reads with empty defaults instead.
 * Returns undefined for an unresolved link (no event).
 */
export function fromResolvedEvent(resolved: ResolvedEvent | AllStreamResolvedEvent): RecordedEvent | undefined {
  const event = resolved.event;
  if (event === undefined) return undefined;
  const metadata = isRecord(event.metadata) ? event.metadata : {};
  return {
    stream: event.streamId,
    revision: event.revision,
    position: positionOf(event.position, resolved.commitPosition, event.streamId, event.revision),
    type: event.type,
    schemaVersion: typeof metadata.schemaVersion === 'number' ? metadata.schemaVersion : 0,
    data: event.data,
    actor: typeof metadata.actor === 'string' ? metadata.actor : '',
    at: typeof metadata.at === 'string' ? metadata.at : event.created.toISOString(),
  };
}

/**
 * An event's position: its commit position. The event's own position comes first; the commit
 * position of the read response is the fallback. `Position.End` (all ones) and 0/0 (the
 * protobuf default older servers leave in stream reads) mean the server did not say.
 */
function positionOf(
  position: Position | undefined,
  commitPosition: bigint | undefined,
  stream: string,
  revision: bigint,
): bigint {
  if (position !== undefined && position.commit !== NO_POSITION && (position.commit > 0n || position.prepare > 0n)) {
    return position.commit;
  }
  if (commitPosition !== undefined && commitPosition !== NO_POSITION && commitPosition > 0n) return commitPosition;
  throw new StoreUnavailableError(
    `EventStoreDB did not report the position of event ${revision} of stream ${stream}: Sluice needs EventStoreDB 22.6 or later (written for 23.10, 24.x and KurrentDB 25.x)`,
  );
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

interface EsdbSubscriptionSetup {
  client: EsdbClient;
  stream: string;
  /** Deliver events after this revision; -1n for the whole stream. */
  after: bigint;
  onEvent: EventHandler;
  onError: ((error: Error) => void) | undefined;
  retry: ResubscribeOptions;
  lastRevision: () => Promise<bigint>;
  forget: () => void;
}

type Outcome = 'stopped' | 'dropped';

/**
 * One catch-up subscription, kept alive across dropped connections.
 *
 * Delivery: `for await` over the client's subscription, awaiting the handler for each event, so
 * handler calls never overlap and come in revision order. The last delivered revision is the
 * resume point: after a drop, it resubscribes from there. A subscription's `fromRevision` is
 * exclusive (the server sends the events after it; START sends from revision 0), so resuming
 * from the last delivered revision leaves no gap and repeats nothing; events of the old
 * connection that were buffered but not delivered are dropped with it and come again.
 *
 * caughtUp: the server's caught-up message (23.10 and later) marks the point in the stream of
 * responses where catch-up ended; every event received before it is then delivered first. The
 * fallback for older servers: the stream's last revision, read when subscribing; caught up once
 * that revision was delivered (at once for an empty stream). Whichever comes first.
 */
class EsdbSubscription implements Subscription {
  readonly caughtUp: Promise<void>;
  private resolveCaughtUp!: () => void;
  private rejectCaughtUp!: (error: Error) => void;
  private isCaughtUp = false;
  private closed = false;
  private lastDelivered: bigint;
  /** The stream's last revision when subscribing, once read (fallback for caughtUp). */
  private head: bigint | undefined;
  private readingHead = false;
  private failures = 0;
  private lastFailure: unknown;
  private current: StreamSubscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly setup: EsdbSubscriptionSetup) {
    this.lastDelivered = setup.after;
    this.caughtUp = new Promise<void>((resolve, reject) => {
      this.resolveCaughtUp = resolve;
      this.rejectCaughtUp = reject;
    });
    // Nobody has to await caughtUp; an unobserved rejection must not crash the process.
    this.caughtUp.catch(() => undefined);
    void this.run();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.stop(new StoreUnavailableError('subscription closed before catching up'));
    const current = this.current;
    if (current !== undefined) {
      await current.unsubscribe().catch(() => undefined);
      current.destroy();
    }
  }

  private async run(): Promise<void> {
    // Start on a later tick: never call the handler from inside subscribe().
    await Promise.resolve();
    const attempts = this.setup.retry.attempts ?? 8;
    while (!this.closed) {
      if (this.head === undefined) void this.readHead();
      const connectedAt = Date.now();
      const outcome = await this.follow();
      if (outcome === 'stopped' || this.closed) return;
      if (Date.now() - connectedAt >= STABLE_CONNECTION_MS) this.failures = 0;
      this.failures += 1;
      if (this.failures > attempts) {
        const detail = this.lastFailure instanceof Error ? `: ${this.lastFailure.message}` : '';
        this.fail(
          new StoreUnavailableError(
            `subscription to stream ${this.setup.stream} was dropped and could not be resumed after ${attempts} attempt(s)${detail}`,
            this.lastFailure,
          ),
        );
        return;
      }
      await this.pause(this.retryDelay());
    }
  }

  /** One connection: delivers until it drops ('dropped') or the subscription ends ('stopped'). */
  private async follow(): Promise<Outcome> {
    const { client, stream } = this.setup;
    let subscription: StreamSubscription;
    try {
      subscription = client.subscribeToStream(stream, {
        fromRevision: this.lastDelivered < 0n ? START : this.lastDelivered,
      });
    } catch (error) {
      return this.dropped(error);
    }
    this.current = subscription;
    /** Responses taken from this connection's buffer, and whether the handler is running. */
    let taken = 0;
    let handling = false;
    /** How many taken responses mean "caught up", once the server said so. */
    let caughtUpAt: number | undefined;
    const serverCaughtUp = () => {
      if (caughtUpAt !== undefined && !handling && taken >= caughtUpAt) this.markCaughtUp();
    };
    subscription.on('caughtUp', () => {
      // Everything received before this message is either taken or still buffered.
      caughtUpAt = taken + subscription.readableLength;
      serverCaughtUp();
    });
    // The client emits errors without destroying the stream; destroying makes `for await` throw
    // even when the error comes before iteration starts, and an error listener is always there.
    subscription.on('error', (error: Error) => {
      if (!subscription.destroyed) subscription.destroy(error);
    });
    try {
      for await (const resolved of subscription as AsyncIterable<ResolvedEvent>) {
        taken += 1;
        if (this.closed) return 'stopped';
        const event = fromResolvedEvent(resolved);
        if (event !== undefined && event.revision > this.lastDelivered) {
          handling = true;
          try {
            await this.setup.onEvent(event);
          } catch (error) {
            this.fail(error instanceof Error ? error : new Error(String(error)));
            return 'stopped';
          } finally {
            handling = false;
          }
          this.lastDelivered = event.revision;
          this.failures = 0;
          this.checkHead();
          if (this.closed) return 'stopped';
        }
        serverCaughtUp();
      }
      if (this.closed) return 'stopped';
      // The server ended the subscription without an error: resume it.
      this.lastFailure = new Error('the server ended the subscription');
      return 'dropped';
    } catch (error) {
      if (this.closed) return 'stopped';
      return this.dropped(error);
    } finally {
      if (this.current === subscription) this.current = undefined;
      // Cancels the gRPC call: leaving the loop alone only stops reading from it.
      subscription.unsubscribe().catch(() => undefined);
    }
  }

  /** A transport failure is retried; anything else ends the subscription through onError. */
  private dropped(error: unknown): Outcome {
    if (isTransientError(error)) {
      this.lastFailure = error;
      return 'dropped';
    }
    const failure = toStoreError(error, `subscription to stream ${this.setup.stream} ended`);
    this.fail(failure instanceof Error ? failure : new Error(String(failure)));
    return 'stopped';
  }

  private async readHead(): Promise<void> {
    if (this.readingHead || this.head !== undefined || this.closed) return;
    this.readingHead = true;
    try {
      this.head = await this.setup.lastRevision();
      this.checkHead();
    } catch {
      // The server's caught-up message may still come; the next connection reads again.
    } finally {
      this.readingHead = false;
    }
  }

  private checkHead(): void {
    if (this.head !== undefined && this.lastDelivered >= this.head) this.markCaughtUp();
  }

  private markCaughtUp(): void {
    if (this.isCaughtUp || this.closed) return;
    this.isCaughtUp = true;
    this.resolveCaughtUp();
  }

  private retryDelay(): number {
    const base = this.setup.retry.baseDelayMs ?? 100;
    const max = this.setup.retry.maxDelayMs ?? 5000;
    return Math.min(max, base * 2 ** Math.max(0, this.failures - 1));
  }

  /** Waits before the next attempt; unref'd, and cut short by close(). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
      this.timer.unref();
    });
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.stop(error);
    this.setup.onError?.(error);
  }

  /** Ends delivery; a handler call in flight finishes, but no other one starts. */
  private stop(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.isCaughtUp) this.rejectCaughtUp(reason);
    clearTimeout(this.timer);
    this.wake?.();
    this.setup.forget();
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

function toEventData(stream: string, event: NewEvent) {
  serializedData(stream, event);
  // The client serialises `data` with JSON.stringify, which takes any JSON value.
  return jsonEvent<JSONEventType>({
    type: event.type,
    data: event.data as JSONType,
    metadata: { actor: event.actor, at: event.at, schemaVersion: event.schemaVersion },
  });
}

/** $all order: by commit position, then by prepare position within one commit. */
function comparePositions(a: Position, b: Position): number {
  if (a.commit !== b.commit) return a.commit < b.commit ? -1 : 1;
  if (a.prepare !== b.prepare) return a.prepare < b.prepare ? -1 : 1;
  return 0;
}

/** The `type` field of the client's errors (an ErrorType value), if any. */
function errorType(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const type = (error as { type?: unknown }).type;
  return typeof type === 'string' ? type : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
