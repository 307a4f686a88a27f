/**
 * A log written by a newer Sluice, met by an older one. The newer server here is a real
 * `sluice serve` posing as the next format (SLUICE_TEST_LOG_FORMAT, test-only); the older one
 * is this Sluice. A rolling upgrade on one store refuses clearly: once a newer server has
 * written to the log, older servers refuse every command (STORE_UNAVAILABLE, naming both
 * formats), stop being ready, write nothing more, and refuse to start on that log.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { LOG_FORMAT } from '../../src/domain/events.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { verifyLog } from '../../src/verify/verify.js';
import { tempDir, waitFor } from '../support/e2e-http.js';
import { type ServerProcess, startServerProcess, stopAll } from '../support/server-process.js';
import { NOT_VERIFIED } from '../support/verify-logs.js';

const NEWER = LOG_FORMAT + 1;
let dir: ReturnType<typeof tempDir>;
let dbPath: string;
let servers: ServerProcess[];

beforeEach(() => {
  dir = tempDir('sluice-newer-log-');
  dbPath = join(dir.path, 'events.db');
  servers = [];
});

afterEach(async () => {
  await stopAll(servers);
  // This log is newer than this Sluice on purpose: `sluice verify` refuses it, as the test shows.
  writeFileSync(join(dir.path, NOT_VERIFIED), 'a log of a newer format');
  dir.remove();
});

async function serve(name: string, format: 'older' | 'newer'): Promise<ServerProcess> {
  const env: Record<string, string> = { NODE_ENV: 'test' };
  if (format === 'newer') env.SLUICE_TEST_LOG_FORMAT = String(NEWER);
  const server = await startServerProcess({ name, dbPath, env, checkpointPath: join(dir.path, `${name}.ckpt.db`) });
  servers.push(server);
  return server;
}

const enqueue = (runId: string) =>
  `mutation { enqueueRun(input: {runId: "${runId}", jobName: "j"}) { __typename ... on Error { message } } }`;

async function logTypes(): Promise<string[]> {
  const store = openSqliteStore({ path: dbPath, readonly: true });
  try {
    return (await store.readStream(DEPLOYMENT_STREAM)).map((e) => e.type);
  } finally {
    await store.close();
  }
}

describe('a newer log and an older server', () => {
  it('given an older and a newer server on one store, when the newer one writes, then the older refuses commands naming both formats, writes nothing, and refuses to start again', async () => {
    const older = await serve('older', 'older');
    expect((await older.field(enqueue('from-older'))).__typename).toBe('RunPayload');
    const newer = await serve('newer', 'newer');
    expect((await newer.field(enqueue('from-newer'))).__typename).toBe('RunPayload');
    const before = await logTypes();
    expect(before).toContain('LogFormatRaised');
    expect(before.indexOf('LogFormatRaised')).toBeLessThan(before.lastIndexOf('RunEnqueued'));

    // The older server meets the marker while following the log, or at its next command.
    const refused = await waitFor(
      async () => {
        const answer = await older.answer(enqueue('older-again'));
        return answer.body.errors?.length ? answer.body.errors : null;
      },
      'the older server to refuse a command',
      10_000,
    );
    expect(refused[0]?.extensions?.code).toBe('STORE_UNAVAILABLE');
    expect(refused[0]?.message).toMatch(new RegExp(`format ${NEWER} by a newer Sluice.*up to ${LOG_FORMAT}`));
    const ready = await older.gql.get('/ready');
    expect(ready.status).not.toBe(200);
    expect(ready.text).toMatch(new RegExp(`format ${NEWER}`));
    expect(await logTypes()).toEqual(before);

    // The newer server goes on.
    expect((await newer.field(enqueue('newer-again'))).__typename).toBe('RunPayload');

    // An older server does not start on the log.
    await expect(serve('older-restarted', 'older')).rejects.toThrow(
      new RegExp(`raised to format ${NEWER} by a newer Sluice; this Sluice reads log formats up to ${LOG_FORMAT}`),
    );

    // Nor does this Sluice's verify read it as if it understood it.
    const store = openSqliteStore({ path: dbPath, readonly: true });
    try {
      const report = await verifyLog(store, { gaplessPositions: true });
      expect(report.breach?.rule).toBe('schema');
      expect(report.breach?.message).toMatch(new RegExp(`format ${NEWER}`));
    } finally {
      await store.close();
    }
  }, 60_000);
});
