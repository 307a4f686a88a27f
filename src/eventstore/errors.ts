import type { ExpectedRevision } from './store.js';

/** Another writer appended first: reload and decide again. */
export class ConcurrencyError extends Error {
  override readonly name = 'ConcurrencyError';
  constructor(
    readonly stream: string,
    readonly expected: ExpectedRevision,
    /** The stream's actual last revision, or 'no_stream'. */
    readonly actual: bigint | 'no_stream',
  ) {
    super(`stream ${stream}: expected revision ${String(expected)}, but it is ${String(actual)}`);
  }
}

/** The store could not take or serve the request: connection lost, disk full, busy, closed. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

/** The store was asked something it cannot mean: a bad URL, an empty stream name. */
export class StoreUsageError extends Error {
  override readonly name = 'StoreUsageError';
}

/** The store holds an event it cannot decode: the log needs a person's attention. */
export class CorruptEventError extends Error {
  override readonly name = 'CorruptEventError';
}
