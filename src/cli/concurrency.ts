/** `sluice concurrency get|set|delete`, in the spirit of `dagster instance concurrency`. */
import { CliError, graphql, unwrap } from './client.js';

interface PoolLine {
  name: string;
  limit: number | null;
  explicitLimit: number | null;
  inUse: number;
  pending: number;
}

const POOL_FIELDS = 'name limit explicitLimit inUse pending';

export function formatPool(pool: PoolLine): string {
  const limit = pool.limit === null ? 'unlimited' : String(pool.limit);
  const source = pool.limit !== null && pool.explicitLimit === null ? ' (default limit)' : '';
  const pending = pool.pending > 0 ? `, ${pool.pending} pending` : '';
  return `${pool.name}: ${pool.inUse} / ${limit} in use${source}${pending}`;
}

export async function concurrencyGet(url: string, pool: string | undefined): Promise<string> {
  if (pool !== undefined) {
    const data = await graphql<{ pool: PoolLine | null }>(
      url,
      `query($name: String!) { pool(name: $name) { ${POOL_FIELDS} } }`,
      { name: pool },
    );
    if (!data.pool) throw new CliError(`pool ${pool} is unknown: no limit is set for it and no run uses it`);
    return formatPool(data.pool);
  }
  const data = await graphql<{
    pools: PoolLine[];
    concurrencyConfig: { poolGranularity: string; defaultPoolLimit: number | null };
  }>(url, `{ pools { ${POOL_FIELDS} } concurrencyConfig { poolGranularity defaultPoolLimit } }`);
  const config = data.concurrencyConfig;
  const header = `pools (granularity ${config.poolGranularity}, default limit ${config.defaultPoolLimit ?? 'none'}):`;
  if (data.pools.length === 0) return `${header}\n  (no pools yet)`;
  return [header, ...data.pools.map((p) => `  ${formatPool(p)}`)].join('\n');
}

const POOL_RESULT = `__typename ... on PoolPayload { pool { ${POOL_FIELDS} } } ... on Error { message }`;

export async function concurrencySet(url: string, pool: string, limitText: string): Promise<string> {
  if (!/^-?\d+$/.test(limitText)) throw new CliError(`LIMIT must be an integer, got ${JSON.stringify(limitText)}`, 2);
  const limit = Number(limitText);
  if (!Number.isSafeInteger(limit) || Math.abs(limit) > 2 ** 31 - 1) {
    throw new CliError(`LIMIT must be an integer from 0 to 1000000, got ${limitText}`, 2);
  }
  const data = await graphql<{ setPoolLimit: { __typename: string } }>(
    url,
    `mutation($pool: String!, $limit: Int!) { setPoolLimit(pool: $pool, limit: $limit) { ${POOL_RESULT} } }`,
    { pool, limit },
  );
  const { pool: view } = unwrap<{ pool: PoolLine }>(data.setPoolLimit, 'pool');
  return `set ${formatPool(view)}`;
}

export async function concurrencyDelete(url: string, pool: string): Promise<string> {
  const data = await graphql<{ deletePoolLimit: { __typename: string } }>(
    url,
    `mutation($pool: String!) { deletePoolLimit(pool: $pool) { ${POOL_RESULT} } }`,
    { pool },
  );
  const { pool: view } = unwrap<{ pool: PoolLine }>(data.deletePoolLimit, 'pool');
  return `deleted the limit of pool ${pool}; now ${formatPool(view)}`;
}
