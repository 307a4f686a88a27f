/**
 * libpq's host list (`postgres://h1:p1,h2:p2/db?target_session_attrs=read-write`), which
 * node-postgres does not understand: one connection string per host, and the search for the
 * writable one (the primary), as libpq does with `target_session_attrs=read-write`. A standby
 * is never written to: it is skipped, and a write that reaches one anyway is refused by
 * PostgreSQL (read-only transaction) and reported as the store being unavailable.
 */
import pg from 'pg';
import { StoreUnavailableError, StoreUsageError } from './errors.js';

const URL_PARTS = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/;

/** One URL per host of a host list, in order; null when the URL names one host. */
export function splitHosts(url: string): string[] | null {
  const match = URL_PARTS.exec(url);
  if (!match) return null;
  const [, scheme, auth = '', hosts = '', rest = ''] = match;
  if (!hosts.includes(',')) return null;
  const entries = hosts.split(',');
  if (entries.some((h) => h.trim() === ''))
    throw new StoreUsageError('EVENT_STORE_URL has an empty host in its host list');
  const [path, query = ''] = rest.split('?', 2) as [string, string?];
  const params = new URLSearchParams(query);
  const attrs = params.get('target_session_attrs');
  if (attrs !== null && attrs !== 'read-write' && attrs !== 'primary') {
    throw new StoreUsageError(
      `EVENT_STORE_URL target_session_attrs=${attrs}: Sluice writes, so it needs read-write (or primary)`,
    );
  }
  // Not a node-postgres setting: the search below is what it asks for.
  params.delete('target_session_attrs');
  const tail = params.size > 0 ? `${path}?${params.toString()}` : path;
  return entries.map((host) => `${scheme}${auth}${host}${tail}`);
}

/** `host:port` of a connection string, for messages. */
export function hostOf(connectionString: string): string {
  return URL_PARTS.exec(connectionString)?.[3] ?? '?';
}

/**
 * The first connection string, in order, whose server accepts writes (not in recovery).
 * Throws StoreUnavailableError naming every host and why it was passed over.
 */
export async function findWritable(connectionStrings: readonly string[], timeoutMs: number): Promise<string> {
  const passed: string[] = [];
  for (const connectionString of connectionStrings) {
    const client = new pg.Client({ connectionString, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const { rows } = await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
      if (rows[0]?.standby === false) return connectionString;
      passed.push(`${hostOf(connectionString)} is a standby`);
    } catch (error) {
      passed.push(`${hostOf(connectionString)}: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  throw new StoreUnavailableError(`no writable PostgreSQL (primary) among the hosts: ${passed.join('; ')}`);
}
