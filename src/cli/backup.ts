/** `sluice backup PATH`: a consistent copy of the SQLite log, taken while servers serve it. */
import { DEPLOYMENT_STREAM } from '../app/recorded-events.js';
import { StoreUnavailableError, StoreUsageError } from '../eventstore/errors.js';
import { backupSqliteStore } from '../eventstore/sqlite-backup.js';
import { CliError } from './client.js';

/** Backs up the store EVENT_STORE_URL names (default sqlite:data/events.db) to `target`. */
export async function backup(storeUrl: string, target: string): Promise<string> {
  if (!storeUrl.startsWith('sqlite:')) {
    throw new CliError(
      `sluice backup copies a SQLite log; EVENT_STORE_URL ${JSON.stringify(storeUrl)} is not one (back up EventStoreDB with its own tools)`,
      2,
    );
  }
  const source = storeUrl.slice('sqlite:'.length);
  if (source === '' || source === ':memory:') {
    throw new CliError(`EVENT_STORE_URL ${storeUrl} has no file to back up`, 2);
  }
  try {
    const result = await backupSqliteStore(source, target);
    const position = result.lastRevisions.get(DEPLOYMENT_STREAM) ?? -1n;
    const last = result.lastEventAt === null ? '' : ` (${result.lastEventAt})`;
    return `backed up ${storeUrl} to ${target}: ${result.events} events, up to position ${position}${last}\nrestore: EVENT_STORE_URL=sqlite:${target} sluice serve`;
  } catch (error) {
    if (error instanceof StoreUsageError || error instanceof StoreUnavailableError)
      throw new CliError(error.message, 1);
    throw error;
  }
}
