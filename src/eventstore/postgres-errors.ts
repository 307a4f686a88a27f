/** What `pg` reports, turned into the store's errors at the PostgreSQL adapter's boundary. */
import pg from 'pg';
import { ConcurrencyError, CorruptEventError, StoreUnavailableError, StoreUsageError } from './errors.js';

export function pgCode(error: unknown): string | undefined {
  return error instanceof pg.DatabaseError ? error.code : undefined;
}

/** The connection itself failed (not the statement): the client must not be reused. */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof ConcurrencyError || error instanceof StoreUsageError || error instanceof CorruptEventError) {
    return false;
  }
  const code = pgCode(error);
  if (code !== undefined) return /^(08|57P)/.test(code);
  return error instanceof Error;
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** SQLSTATE classes that mean "the database cannot serve now", with what to tell an operator. */
const UNAVAILABLE: [RegExp, string][] = [
  [/^08/, 'lost or could not open the connection to PostgreSQL'],
  [/^57P0[1-3]$/, 'PostgreSQL is shutting down or starting up'],
  [/^57014$/, 'PostgreSQL cancelled the statement (statement timeout)'],
  [/^55P03$/, 'event store is busy (lock wait timed out)'],
  [/^25P03$/, 'PostgreSQL ended an idle transaction'],
  [/^25006$/, 'PostgreSQL is read-only here (a standby?)'],
  [/^53/, 'PostgreSQL is out of resources (disk, memory or connections)'],
  [/^58/, 'PostgreSQL had an I/O error'],
  [/^28/, 'PostgreSQL refused the credentials'],
  [/^3D000$/, 'the PostgreSQL database does not exist'],
  [/^42501$/, 'the PostgreSQL user lacks a privilege Sluice needs'],
  [/^XX/, 'PostgreSQL reported an internal error'],
];

/** Turns what `pg` reports into the store's errors; a statement the store got wrong is rethrown. */
export function toStoreError(error: unknown, consequence: string): unknown {
  if (
    error instanceof StoreUnavailableError ||
    error instanceof StoreUsageError ||
    error instanceof ConcurrencyError ||
    error instanceof CorruptEventError
  ) {
    return error;
  }
  const code = pgCode(error);
  if (code === undefined) {
    // No SQLSTATE: the network or the driver (refused, reset, timed out, pool shut down).
    return new StoreUnavailableError(`cannot reach PostgreSQL (${describe(error)}): ${consequence}`, error);
  }
  if (code.startsWith('22')) return new StoreUsageError(`PostgreSQL refused a value: ${describe(error)}`);
  const reason = UNAVAILABLE.find(([pattern]) => pattern.test(code))?.[1];
  return reason === undefined
    ? error
    : new StoreUnavailableError(`${reason} (${describe(error)}): ${consequence}`, error);
}
