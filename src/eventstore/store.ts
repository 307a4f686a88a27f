/**
 * The one small interface every event store implements. Revisions count events within a
 * stream from 0; positions order every event of the store and are opaque to callers except
 * for comparison through the store that produced them. Both are bigint so that no store has
 * to squeeze its numbering into 53 bits.
 */

/** What the caller expects of the stream before its append. */
export type ExpectedRevision =
  /** No check at all. */
  | 'any'
  /** The stream has no events yet. */
  | 'no_stream'
  /** The stream has at least one event. */
  | 'stream_exists'
  /** The stream's last event has exactly this revision. */
  | bigint;

/** An event as a writer hands it to the store. */
export interface NewEvent {
  type: string;
  /** Version of the event's schema, so readers can upcast old shapes. */
  schemaVersion: number;
  data: unknown;
  /** Who caused it: an API client, the config file, the run monitor. */
  actor: string;
  /** ISO-8601 UTC time the command was decided at. */
  at: string;
}

/** An event as the store hands it back. */
export interface RecordedEvent extends NewEvent {
  stream: string;
  revision: bigint;
  position: bigint;
}

export interface AppendResult {
  /** Revision of the last event appended. */
  nextExpectedRevision: bigint;
  /** The appended events, with their revisions and positions. */
  events: RecordedEvent[];
}

export interface ReadOptions {
  /** First revision to return (inclusive); default 0. */
  fromRevision?: bigint;
  /** Most events to return; default all. */
  maxCount?: number;
}

export interface ReadAllOptions {
  /** Return events with a position strictly greater than this; default from the start. */
  afterPosition?: bigint;
  maxCount?: number;
}

export interface SubscribeOptions {
  /** Deliver events with a revision strictly greater than this; omit for the whole stream. */
  afterRevision?: bigint;
}

export interface Subscription {
  /** Resolves once every event that existed when subscribing has been delivered. */
  readonly caughtUp: Promise<void>;
  close(): Promise<void>;
}

/**
 * Handler for subscribed events. It is awaited: the next event is delivered only after the
 * previous handler call settled, so a subscriber sees the stream in order, once.
 */
export type EventHandler = (event: RecordedEvent) => void | Promise<void>;

export interface EventStore {
  /** Human-readable, secret-free description for logs, e.g. `sqlite:data/events.db`. */
  readonly description: string;
  /**
   * Appends all events atomically, or none. Throws ConcurrencyError when the stream does not
   * match `expected`, and StoreUnavailableError when the store cannot take the write (lost
   * connection, disk full, locked past the busy timeout).
   */
  append(stream: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult>;
  /** Events of one stream, oldest first. An unknown stream reads as empty. */
  readStream(stream: string, options?: ReadOptions): Promise<RecordedEvent[]>;
  /** Events of every stream, in position order. */
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>;
  /** Last revision of a stream, or -1n when it has no events. */
  streamRevision(stream: string): Promise<bigint>;
  /**
   * Delivers the stream's events after `afterRevision` (catch-up), then every new one as it
   * is appended, by this process or another one, with no gap and no duplicate at the seam.
   * `onError` receives a failure that ended the subscription.
   */
  subscribe(
    stream: string,
    options: SubscribeOptions,
    onEvent: EventHandler,
    onError?: (error: Error) => void,
  ): Subscription;
  close(): Promise<void>;
}
