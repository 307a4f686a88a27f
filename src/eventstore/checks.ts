/** Checks every store makes the same way, so every store refuses the same inputs. */
import { ConcurrencyError, StoreUsageError } from './errors.js';
import type { ExpectedRevision, NewEvent } from './store.js';

/** Throws ConcurrencyError unless a stream whose last revision is `last` (-1n: none) meets `expected`. */
export function checkExpected(stream: string, expected: ExpectedRevision, last: bigint): void {
  const matches =
    expected === 'any' ||
    (expected === 'no_stream' && last === -1n) ||
    (expected === 'stream_exists' && last >= 0n) ||
    expected === last;
  if (!matches) throw new ConcurrencyError(stream, expected, last < 0n ? 'no_stream' : last);
}

export function checkStream(stream: string): void {
  if (typeof stream !== 'string' || stream.length === 0) {
    throw new StoreUsageError('a stream name must be a non-empty string');
  }
}

export function checkMaxCount(maxCount: number | undefined): number | undefined {
  if (maxCount === undefined) return undefined;
  if (!Number.isInteger(maxCount) || maxCount < 0) {
    throw new StoreUsageError(`maxCount must be a non-negative integer, not ${maxCount}`);
  }
  return maxCount;
}

/** Checks a new event's envelope and returns its data as JSON text. */
export function serializedData(stream: string, event: NewEvent): string {
  if (typeof event.type !== 'string' || event.type.length === 0) {
    throw new StoreUsageError(`an event of stream ${stream} has no type`);
  }
  if (!Number.isInteger(event.schemaVersion)) {
    throw new StoreUsageError(`event ${event.type} has a schemaVersion that is not an integer`);
  }
  let data: string | undefined;
  try {
    data = JSON.stringify(event.data);
  } catch (error) {
    throw new StoreUsageError(`event ${event.type} has data that is not JSON: ${String(error)}`);
  }
  if (data === undefined) throw new StoreUsageError(`event ${event.type} has no data`);
  if (typeof event.actor !== 'string' || typeof event.at !== 'string') {
    throw new StoreUsageError(`event ${event.type} needs an actor and an at, both strings`);
  }
  return data;
}
