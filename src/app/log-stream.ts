/**
 * Every event of the log, streamed: first the backlog after a position, read from the store a
 * page at a time, then each event as it is folded in. A dashboard needs this because decisions
 * alone do not keep it true (a limit edit, a finish or a cancel records no decision).
 */
import type { LoggedEvent } from '../domain/events.js';
import { AsyncQueue } from './async-queue.js';
import { toLoggedEvent } from './recorded-events.js';
import type { Sluice } from './sluice.js';

export interface LogStreamOptions {
  /** Only events strictly after this position; -1n: the whole log; null: from now on. */
  after: bigint | null;
  /** Events read from the store per page of the backlog. */
  pageSize?: number;
  /** Live events buffered while the subscriber is still reading the backlog or is slow. */
  capacity?: number;
}

/**
 * The live listener is registered before the backlog is read, so an event folded in while a
 * page is being read is buffered, not lost; positions already sent are skipped, so the seam
 * repeats nothing. Closing the stream unblocks it at once, even while it waits for an event.
 */
export function logStream(sluice: Sluice, options: LogStreamOptions): AsyncIterableIterator<LoggedEvent> {
  const pageSize = options.pageSize ?? 500;
  let unsubscribe = () => {};
  const live = new AsyncQueue<LoggedEvent>(options.capacity ?? 100_000, () => unsubscribe());
  unsubscribe = sluice.onEvent((event) => live.push(event));
  const folded = sluice.state.revision;

  async function* events(): AsyncGenerator<LoggedEvent> {
    let last = options.after ?? folded;
    try {
      while (last < folded) {
        const page = await sluice.store.readStream(sluice.stream, { fromRevision: last + 1n, maxCount: pageSize });
        if (page.length === 0) break;
        for (const recorded of page) {
          if (recorded.revision <= last) continue;
          last = recorded.revision;
          yield toLoggedEvent(recorded);
        }
      }
      for await (const event of live) {
        if (event.revision <= last) continue;
        last = event.revision;
        yield event;
      }
    } finally {
      await live.return();
    }
  }

  const iterator = events();
  return {
    next: () => iterator.next(),
    return: async () => {
      // Ends a pending wait for the next live event, so the generator can run its finally.
      await live.return();
      return iterator.return(undefined);
    },
    throw: (error: unknown) => iterator.throw(error),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
