/** `sluice concurrency get|set|delete|free|history`, in the spirit of `dagster instance concurrency`. */
import { CliError, graphql, unwrap } from './client.js';
import { type CommandOutput, output } from './command.js';

interface PoolLine {
  name: string;
  limit: number | null;
  explicitLimit: number | null;
  inUse: number;
  pending: number;
  promised: number;
}

const POOL_FIELDS = 'name limit explicitLimit inUse pending promised';

export function formatPool(pool: PoolLine): string {
  const limit = pool.limit === null ? 'unlimited' : String(pool.limit);
  const source = pool.limit !== null && pool.explicitLimit === null ? ' (default limit)' : '';
  const pending = pool.pending > 0 ? `, ${pool.pending} pending` : '';
  // Root steps of admitted runs not yet claiming: the root-step hold counts them as taken.
  const promised = pool.promised > 0 ? `, ${pool.promised} promised` : '';
  return `${pool.name}: ${pool.inUse} / ${limit} in use${source}${pending}${promised}`;
}

export async function concurrencyGet(url: string, pool: string | undefined): Promise<CommandOutput> {
  if (pool !== undefined) {
    const data = await graphql<{ pool: PoolLine | null }>(
      url,
      `query($name: String!) { pool(name: $name) { ${POOL_FIELDS} } }`,
      { name: pool },
    );
    if (!data.pool) throw new CliError(`pool ${pool} is unknown: no limit is set for it and no run uses it`);
    return output(formatPool(data.pool), data.pool);
  }
  const data = await graphql<{
    pools: PoolLine[];
    concurrencyConfig: {
      poolGranularity: string;
      defaultPoolLimit: number | null;
      rootStepHold: { enabled: boolean; runBuffer: number; startedRunAllotmentSeconds: number };
    };
  }>(
    url,
    `{ pools { ${POOL_FIELDS} } concurrencyConfig { poolGranularity defaultPoolLimit rootStepHold { enabled runBuffer startedRunAllotmentSeconds } } }`,
  );
  const config = data.concurrencyConfig;
  const hold = config.rootStepHold;
  const holdText =
    config.poolGranularity !== 'OP'
      ? ''
      : hold.enabled
        ? `, root-step hold on (run buffer ${hold.runBuffer})`
        : ', root-step hold off';
  const header = `pools (granularity ${config.poolGranularity}, default limit ${config.defaultPoolLimit ?? 'none'}${holdText}):`;
  const json = { ...config, pools: data.pools };
  if (data.pools.length === 0) return output(`${header}\n  (no pools yet)`, json);
  return output([header, ...data.pools.map((p) => `  ${formatPool(p)}`)].join('\n'), json);
}

const POOL_RESULT = `__typename ... on PoolPayload { pool { ${POOL_FIELDS} } } ... on Error { message }`;

export async function concurrencySet(url: string, pool: string, limitText: string): Promise<CommandOutput> {
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
  return output(`set ${formatPool(view)}`, view);
}

export async function concurrencyDelete(url: string, pool: string): Promise<CommandOutput> {
  // Deleting a limit that is not there appends nothing; say so rather than seem to have done it.
  const before = await graphql<{ pool: PoolLine | null }>(
    url,
    `query($name: String!) { pool(name: $name) { ${POOL_FIELDS} } }`,
    { name: pool },
  );
  if (before.pool?.explicitLimit == null) {
    const now = before.pool ? `; now ${formatPool(before.pool)}` : '';
    return output(`pool ${pool} has no limit of its own: nothing to delete${now}`, {
      deleted: false,
      pool: before.pool,
    });
  }
  const data = await graphql<{ deletePoolLimit: { __typename: string } }>(
    url,
    `mutation($pool: String!) { deletePoolLimit(pool: $pool) { ${POOL_RESULT} } }`,
    { pool },
  );
  const { pool: view } = unwrap<{ pool: PoolLine }>(data.deletePoolLimit, 'pool');
  return output(`deleted the limit of pool ${pool}; now ${formatPool(view)}`, { deleted: true, pool: view });
}

interface ClaimLine {
  stepKey: string;
  pool: string | null;
  granted: boolean;
  released: boolean;
}

const claimState = (c: ClaimLine) => (c.granted ? 'holds a slot' : c.released ? 'free' : 'waiting');

/** `sluice concurrency free RUN_ID [STEP]`: Dagster's "free concurrency slots" for a run or one step. */
export async function concurrencyFree(url: string, runId: string, stepKey: string | undefined): Promise<CommandOutput> {
  const data = await graphql<{ freeStepSlots: { __typename: string } }>(
    url,
    `mutation($runId: ID!, $stepKey: String) { freeStepSlots(runId: $runId, stepKey: $stepKey) {
      __typename ... on RunPayload { run { id status stepClaims { stepKey pool granted released } } }
      ... on Error { message } } }`,
    { runId, stepKey: stepKey ?? null },
  );
  const { run } = unwrap<{ run: { id: string; status: string; stepClaims: ClaimLine[] } }>(data.freeStepSlots, 'run');
  const what = stepKey === undefined ? `the slots of run ${run.id}` : `the slot of step ${stepKey} of run ${run.id}`;
  const lines = [
    `freed ${what} (${run.status})`,
    ...run.stepClaims.map((c) => `  ${c.stepKey}${c.pool ? ` (pool ${c.pool})` : ''}: ${claimState(c)}`),
  ];
  return output(lines.join('\n'), run);
}

interface LimitChangeLine {
  position: string;
  at: string;
  actor: string;
  description: string;
}

/** `sluice concurrency history [POOL]`: every limit edit, who made it and when. */
export async function concurrencyHistory(url: string, pool: string | undefined): Promise<CommandOutput> {
  const changes: LimitChangeLine[] = [];
  let after: string | null = null;
  for (;;) {
    const data: {
      limitChanges: {
        edges: Array<{ node: LimitChangeLine }>;
        pageInfo: { hasNextPage: boolean; endCursor: string | null };
      };
    } = await graphql(
      url,
      `query($after: String, $pool: String) { limitChanges(first: 1000, after: $after, pool: $pool) {
        edges { node { position at actor description } } pageInfo { hasNextPage endCursor } } }`,
      { after, pool: pool ?? null },
    );
    changes.push(...data.limitChanges.edges.map((e) => e.node));
    if (!data.limitChanges.pageInfo.hasNextPage) break;
    after = data.limitChanges.pageInfo.endCursor;
  }
  const title = pool === undefined ? 'limit changes' : `limit changes of pool ${pool}`;
  if (changes.length === 0) return output(`${title}: none recorded`, changes);
  const lines = changes.map((c) => `${c.at}  ${c.actor}  ${c.description}`);
  return output([`${title} (${changes.length}), oldest first:`, ...lines].join('\n'), changes);
}
