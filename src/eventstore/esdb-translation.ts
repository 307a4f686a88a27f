/**
 * What the EventStoreDB client says, in Sluice's terms: connection strings (with the `kurrentdb`
 * schemes rewritten, and credentials kept out of messages), expected and current revisions, the
 * client's errors as ours (a lost race as ConcurrencyError, an unreachable server as
 * StoreUnavailableError), and events both ways with actor, time and schema version in metadata.
 */
import {
  type AllStreamResolvedEvent,
  ANY,
  type AppendExpectedRevision,
  type CurrentRevision,
  type EventStoreDBClient,
  type JSONEventType,
  type JSONType,
  jsonEvent,
  NO_STREAM,
  type Position,
  type ResolvedEvent,
  STREAM_EXISTS,
} from '@eventstore/db-client';
import { serializedData } from './checks.js';
import { ConcurrencyError, StoreUnavailableError, StoreUsageError } from './errors.js';
import type { ExpectedRevision, NewEvent, RecordedEvent } from './store.js';

/** What the server sends as the position of an event it cannot place (`Position.End`). */
const NO_POSITION = 0xffff_ffff_ffff_ffffn;

const SCHEMES: Record<string, string> = {
  esdb: 'esdb',
  'esdb+discover': 'esdb+discover',
  kurrentdb: 'esdb',
  'kurrentdb+discover': 'esdb+discover',
};

/** The part of the client the store uses. */
export type EsdbClient = Pick<
  EventStoreDBClient,
  'appendToStream' | 'readStream' | 'readAll' | 'subscribeToStream' | 'dispose'
>;

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

export function redactCredentials(text: string): string {
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

export function toEventData(stream: string, event: NewEvent) {
  serializedData(stream, event);
  // The client serialises `data` with JSON.stringify, which takes any JSON value.
  return jsonEvent<JSONEventType>({
    type: event.type,
    data: event.data as JSONType,
    metadata: { actor: event.actor, at: event.at, schemaVersion: event.schemaVersion },
  });
}

/** The `type` field of the client's errors (an ErrorType value), if any. */
export function errorType(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const type = (error as { type?: unknown }).type;
  return typeof type === 'string' ? type : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
