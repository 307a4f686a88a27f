/** An EventStore that reports how long each append took, whatever store it wraps. */
import type { AppendResult, EventStore, ExpectedRevision, NewEvent } from './store.js';

/**
 * Wraps a store so every append, successful or not, reports its duration in seconds.
 * Everything else passes straight through.
 */
export function timeAppends(store: EventStore, observe: (seconds: number) => void): EventStore {
  return {
    get description() {
      return store.description;
    },
    async append(stream: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
      const started = performance.now();
      try {
        return await store.append(stream, events, expected);
      } finally {
        observe((performance.now() - started) / 1000);
      }
    },
    readStream: (stream, options) => store.readStream(stream, options),
    readAll: (options) => store.readAll(options),
    streamRevision: (stream) => store.streamRevision(stream),
    subscribe: (stream, options, onEvent, onError) => store.subscribe(stream, options, onEvent, onError),
    close: () => store.close(),
  };
}
