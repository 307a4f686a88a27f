/** Picks the store an EVENT_STORE_URL names. */
import { StoreUsageError } from './errors.js';
import { openSqliteStore } from './sqlite.js';
import type { EventStore } from './store.js';

/**
 * `sqlite:PATH` (relative to the working directory), `sqlite::memory:`, or
 * `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]` (or `postgresql://`),
 * `esdb://host:2113?tls=false` / `esdb+discover://...` for EventStoreDB / KurrentDB.
 */
export async function openEventStore(
  url: string,
  options: { readonly?: boolean; warn?: (message: string) => void } = {},
): Promise<EventStore> {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path === '') throw new StoreUsageError('EVENT_STORE_URL sqlite: needs a path, e.g. sqlite:data/events.db');
    return openSqliteStore({ path, readonly: options.readonly, warn: options.warn });
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { openPostgresStore } = await import('./postgres.js');
    return openPostgresStore({ url, warn: options.warn });
  }
  if (url.startsWith('esdb://') || url.startsWith('esdb+discover://') || url.startsWith('kurrentdb://')) {
    const { openEsdbStore } = await import('./esdb.js');
    return openEsdbStore({ connectionString: url });
  }
  throw new StoreUsageError(
    `EVENT_STORE_URL ${JSON.stringify(url)} is not understood: use sqlite:PATH, sqlite::memory:, postgres://USER:PASSWORD@HOST:PORT/DATABASE or esdb://host:2113?tls=false`,
  );
}
