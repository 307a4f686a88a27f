/**
 * Every run Dagster accepts is accepted: runs with tags Sluice cannot act on are enqueued, the
 * tags recorded as ignored with the reason, visible on Run.ignoredTags and in `sluice why`,
 * against a real server on a real port.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql, type Json } from '../support/e2e-http.js';

// vitest resolves `graphql` to its ESM build for src/ while Pothos and Yoga load the CJS one;
// two realms break the schema. Give src/ the CJS build too (as the other e2e tests do).
vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

let server: RunningServer;
let gql: Gql;

beforeEach(async () => {
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, host: '127.0.0.1', eventStoreUrl: 'sqlite::memory:' },
    () => {},
  );
  gql = new Gql(server.url);
});

afterEach(async () => {
  await server.close();
});

async function enqueue(runId: string, tags: Array<{ key: string; value: string }>): Promise<Json> {
  const data = await gql.data(
    `mutation($i: EnqueueRunInput!) { enqueueRun(input: $i) {
      __typename ... on RunPayload { run { id priority tags { key value } ignoredTags { key reason } deadline { reason } } }
      ... on Error { message } } }`,
    { i: { runId, jobName: 'etl', tags } },
  );
  return data.enqueueRun;
}

describe('tags Dagster accepts and Sluice cannot act on', () => {
  it('given both max runtime tags with different values, then the run is enqueued, dagster/max_runtime applies and the other is ignored', async () => {
    const answer = await enqueue('both', [
      { key: 'dagster/max_runtime', value: '60' },
      { key: 'dagster/max_runtime_seconds', value: '3600' },
    ]);
    expect(answer.__typename).toBe('RunPayload');
    expect(answer.run.ignoredTags).toEqual([
      {
        key: 'dagster/max_runtime_seconds',
        reason: 'dagster/max_runtime is also set ("60"); Dagster reads that one, and so does Sluice',
      },
    ]);
    await gql.data('mutation { markRunStarted(runId: "both") { __typename } }');
    const run = (await gql.data('{ run(id: "both") { deadline { reason } } }')).run;
    expect(run.deadline.reason).toBe('max runtime: running for more than 60 s (dagster/max_runtime)');
  });

  it('given a priority tag beyond the range, an empty tag value and a max runtime that is not a number, then the run is enqueued and each is recorded with its reason', async () => {
    const answer = await enqueue('odd', [
      { key: 'dagster/priority', value: '5000000' },
      { key: 'owner', value: '' },
      { key: 'dagster/max_runtime', value: 'an hour' },
    ]);
    expect(answer).toMatchObject({
      __typename: 'RunPayload',
      run: {
        priority: 1_000_000,
        tags: [
          { key: 'dagster/priority', value: '5000000' },
          { key: 'dagster/max_runtime', value: 'an hour' },
        ],
        ignoredTags: [
          { key: 'owner', reason: 'its value is empty: Sluice keeps no empty tag values, no tag limit counts it' },
          { key: 'dagster/priority', reason: '"5000000" is beyond -1000000..1000000: it counts as 1000000' },
          {
            key: 'dagster/max_runtime',
            reason: `"an hour" is not a number of seconds: the run has no max runtime (Dagster's run monitoring skips it too)`,
          },
        ],
      },
    });
    const why = (await runCli(['why', 'odd', '--url', server.url], {})) as string;
    expect(why).toContain('tag owner ignored: its value is empty');
    expect(why).toContain('tag dagster/priority ignored: "5000000" is beyond -1000000..1000000');
    expect(why).toContain('tag dagster/max_runtime ignored: "an hour" is not a number of seconds');
  });
});
