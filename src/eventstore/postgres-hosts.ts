/**
 * libpq's host list (`postgres://h1:p1,h2:p2/db?target_session_attrs=read-write`), which
 * node-postgres does not understand: one connection string per host, and the search for the
 * writable one (the primary), as libpq does with `target_session_attrs=read-write`. A standby
 * is never written to: it is skipped, and a write that reaches one anyway is refused by
 * PostgreSQL (read-only transaction) and reported as the store being unavailable. Unlike libpq,
 * every host is asked, so that an old primary that came back beside a promoted standby is seen.
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

/** What a probe of one host found. */
interface Probe {
  connectionString: string;
  /** null: a standby, or unreachable (then `failure` says why). */
  timeline: number | null;
  failure: string | null;
}

async function probe(connectionString: string, timeoutMs: number): Promise<Probe> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  client.on('error', () => undefined);
  try {
    await client.connect();
    // A primary's current WAL file is named for its timeline: a promotion starts a new, higher one.
    const { rows } = await client.query<{ timeline: string | null }>(
      'SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END AS timeline',
    );
    const timeline = rows[0]?.timeline ?? null;
    return timeline === null
      ? { connectionString, timeline: null, failure: `${hostOf(connectionString)} is a standby` }
      : { connectionString, timeline: Number.parseInt(timeline, 16), failure: null };
  } catch (error) {
    return { connectionString, timeline: null, failure: `${hostOf(connectionString)}: ${(error as Error).message}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The primary found, and what an operator should know about the others. */
export interface WritableHost {
  connectionString: string;
  timeline: number;
  /** Set when another host also accepts writes on an older timeline (an old primary came back). */
  warning: string | null;
}

/**
 * The host that accepts writes (not in recovery), every host asked at once. Two primaries mean
 * a standby was promoted and the old primary came back (split brain): the one on the higher
 * timeline is the promoted one and is chosen, with a warning naming the other; two on the same
 * timeline cannot be told apart and both are refused. `newestSeen` is the highest timeline this
 * process has written on: a primary on an older one is an old primary, whatever else is up, and
 * is refused. Throws StoreUnavailableError naming every host and why it was passed over.
 */
export async function findWritable(
  connectionStrings: readonly string[],
  timeoutMs: number,
  newestSeen = 0,
): Promise<WritableHost> {
  const probes = await Promise.all(connectionStrings.map((c) => probe(c, timeoutMs)));
  const primaries = probes
    .filter((p): p is Probe & { timeline: number } => p.timeline !== null)
    .sort((a, b) => b.timeline - a.timeline);
  const [newest, next] = primaries;
  const describePrimary = (p: Probe & { timeline: number }) => `${hostOf(p.connectionString)} (timeline ${p.timeline})`;
  if (newest && next && newest.timeline === next.timeline) {
    throw new StoreUnavailableError(
      `split brain: ${primaries.map(describePrimary).join(' and ')} both accept writes on the same timeline; Sluice writes to neither until one is stopped or rebuilt as a standby`,
    );
  }
  if (newest && newest.timeline < newestSeen) {
    throw new StoreUnavailableError(
      `split brain: ${describePrimary(newest)} accepts writes, but this server already wrote on timeline ${newestSeen} (a promoted standby): it is an old primary that came back, and Sluice does not write to it; ${probes
        .filter((p) => p.failure !== null)
        .map((p) => p.failure)
        .join('; ')}`,
    );
  }
  if (newest) {
    const older = primaries.slice(1);
    return {
      connectionString: newest.connectionString,
      timeline: newest.timeline,
      warning:
        older.length === 0
          ? null
          : `split brain: ${older.map(describePrimary).join(', ')} also accept${older.length === 1 ? 's' : ''} writes: an old primary that came back after ${describePrimary(newest)} was promoted; Sluice writes to ${hostOf(newest.connectionString)} only. Stop the old primary or rebuild it as a standby of the new one`,
    };
  }
  const passed = probes.map((p) => p.failure ?? `${hostOf(p.connectionString)}: no answer`);
  throw new StoreUnavailableError(`no writable PostgreSQL (primary) among the hosts: ${passed.join('; ')}`);
}
