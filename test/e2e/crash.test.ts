/**
 * `kill -9` at any moment loses no acknowledged command: a server process is killed while
 * clients are sending commands, and a server started again on the same file must show every
 * command that was answered, with the admissions the log recorded.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql, tempDir, waitFor } from '../support/e2e-http.js';
import { type ServerProcess, startServerProcess } from '../support/server-process.js';

let dir: ReturnType<typeof tempDir> | null = null;
let served: ServerProcess | null = null;
let restarted: RunningServer | null = null;

afterEach(async () => {
  served?.child.kill('SIGKILL');
  served = null;
  await restarted?.close();
  restarted = null;
  dir?.remove();
  dir = null;
});

describe('a server killed with SIGKILL', () => {
  // With many clients, commands arrive together and are appended in groups: a group in flight
  // when the process dies was answered to nobody; every answered one is durable.
  it.each([4, 32])(
    'given %i clients sending commands, when the process is killed mid-stream, then a restarted server has every acknowledged command',
    async (clientCount) => {
      dir = tempDir('sluice-crash-');
      const dbPath = join(dir.path, 'events.db');
      served = await startServerProcess({ name: 'crash', dbPath, readyTimeoutMs: 30_000 });
      const { gql } = served;
      await gql.data('mutation { setMaxConcurrentRuns(limit: 3) { __typename } }');

      // Four clients enqueue and finish runs as fast as they can; every answered command is noted.
      const acknowledged = new Map<string, string>();
      let stop = false;
      const client = async (name: string) => {
        for (let i = 0; !stop; i++) {
          const runId = `${name}-${i}`;
          try {
            const enqueued = await gql.data(
              `mutation($id: ID!) { enqueueRun(input: {runId: $id, jobName: "j"}) { ... on RunPayload { run { status } } } }`,
              { id: runId },
            );
            acknowledged.set(runId, 'enqueued');
            if (enqueued.enqueueRun.run.status === 'STARTING') {
              await gql.data(
                `mutation($id: ID!) { markRunFinished(runId: $id, status: SUCCESS) { ... on RunPayload { run { status } } } }`,
                { id: runId },
              );
              acknowledged.set(runId, 'SUCCESS');
            }
          } catch {
            return; // the server is gone
          }
        }
      };
      const clients = Array.from({ length: clientCount }, (_, i) => client(`c${i}`));
      await waitFor(() => acknowledged.size >= 10 * clientCount, 'acknowledged commands', 30_000, { intervalMs: 5 });
      served.child.kill('SIGKILL');
      stop = true;
      await Promise.all(clients);
      served = null;

      restarted = await startServer(
        { ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: `sqlite:${dbPath}`, concurrencyConfigPath: null },
        () => {},
      );
      const after = new Gql(restarted.url);
      for (const [runId, what] of acknowledged) {
        const { run } = await after.data('query($id: ID!) { run(id: $id) { status } }', { id: runId });
        expect(run, `run ${runId} was acknowledged (${what}) but is gone`).not.toBeNull();
        if (what === 'SUCCESS') expect(run.status).toBe('SUCCESS');
      }
      // The restarted server goes on deciding from the recovered state: the limit still holds.
      const { runs } = await after.data(
        '{ runs(statuses: [STARTING, STARTED, CANCELING], first: 1000) { edges { cursor } } }',
      );
      expect(runs.edges.length).toBeLessThanOrEqual(3);
    },
    90_000,
  );
});
