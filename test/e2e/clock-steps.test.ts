/**
 * The clock of a real server process stepped back an hour while it serves (libfaketime:
 * LD_PRELOAD, a timestamp file rewritten by the test, FAKETIME_NO_CACHE so each read sees it,
 * DONT_FAKE_MONOTONIC so the monotonic clock stays real). Event times in the log never go
 * backwards, the step is recorded, `snapshot(at:)` of an instant before the step does not
 * show runs enqueued after it, and a run in progress times out when it should, whichever way the
 * clock stepped.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { verifyLog } from '../../src/verify/verify.js';
import { tempDir } from '../support/e2e-http.js';
import { type ServerProcess, startServerProcess, stopAll } from '../support/server-process.js';

const LIBFAKETIME = ['x86_64', 'aarch64']
  .map((arch) => `/usr/lib/${arch}-linux-gnu/faketime/libfaketimeMT.so.1`)
  .find((path) => existsSync(path));
if (!LIBFAKETIME && process.env.CI === 'true') {
  throw new Error('libfaketime is missing (apt-get install faketime; scripts/test-deps.mjs does it as root)');
}
if (!LIBFAKETIME) console.warn('clock-step tests skipped: libfaketime is missing (apt-get install faketime)');

let dir: ReturnType<typeof tempDir>;
let servers: ServerProcess[];

beforeEach(() => {
  dir = tempDir('sluice-clock-');
  servers = [];
});

afterEach(async () => {
  await stopAll(servers);
  dir.remove();
});

const enqueue = (runId: string) =>
  `mutation { enqueueRun(input: {runId: "${runId}", jobName: "j"}) { __typename ... on Error { message } } }`;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * A server process whose wall clock reads the offset in `faketime` (rewritten by the test to step
 * it; "+0" at start), the monotonic clock left alone, as NTP leaves it.
 */
async function startSteppedServer(
  name: string,
  env: Record<string, string> = {},
): Promise<{ server: ServerProcess; clockFile: string; dbPath: string }> {
  const clockFile = join(dir.path, 'faketime');
  writeFileSync(clockFile, '+0\n');
  const dbPath = join(dir.path, 'events.db');
  const server = await startServerProcess({
    name,
    dbPath,
    env: {
      LD_PRELOAD: LIBFAKETIME as string,
      FAKETIME_TIMESTAMP_FILE: clockFile,
      FAKETIME_NO_CACHE: '1',
      DONT_FAKE_MONOTONIC: '1',
      ...env,
    },
  });
  servers.push(server);
  return { server, clockFile, dbPath };
}

describe.skipIf(!LIBFAKETIME)("a server process's clock stepped", () => {
  it('given runs enqueued, when the clock steps back an hour, then later events keep the log time, the step is recorded, and the past is answered without later runs', async () => {
    const { server, clockFile, dbPath } = await startSteppedServer('stepped');
    expect((await server.field(enqueue('a'))).__typename).toBe('RunPayload');
    await sleep(50);
    expect((await server.field(enqueue('b'))).__typename).toBe('RunPayload');
    writeFileSync(clockFile, '-1h\n');
    await sleep(50);
    expect((await server.field(enqueue('c'))).__typename).toBe('RunPayload');
    await sleep(50);
    expect((await server.field(enqueue('d'))).__typename).toBe('RunPayload');

    const store = openSqliteStore({ path: dbPath, readonly: true });
    try {
      const events = await store.readStream(DEPLOYMENT_STREAM);
      const times = events.map((e) => Date.parse(e.at));
      for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1] as number);
      const step = events.find((e) => e.type === 'ClockSteppedBack');
      expect((step?.data as { byMs: number } | undefined)?.byMs).toBeGreaterThan(3_500_000);
      const enqueuedA = events.find((e) => e.type === 'RunEnqueued' && (e.data as { runId: string }).runId === 'a');
      const snapshot = await server.data(
        `{ snapshot(at: "${enqueuedA?.at}") { position queue { id } inProgress { id } } }`,
      );
      const seen = [...snapshot.snapshot.queue, ...snapshot.snapshot.inProgress].map((r: { id: string }) => r.id);
      expect(seen).toEqual(['a']);
      expect((await verifyLog(store, { gaplessPositions: true })).breach).toBeNull();
    } finally {
      await store.close();
    }
  }, 60_000);

  it('given a STARTING run with a 2 s start timeout, when the clock steps back an hour, then the run fails about 2 s after admission, not an hour later', async () => {
    const config = join(dir.path, 'dagster.yaml');
    writeFileSync(config, 'run_monitoring:\n  enabled: true\n  start_timeout_seconds: 2\n');
    const { server, clockFile, dbPath } = await startSteppedServer('stepped-back-starting', {
      CONCURRENCY_CONFIG: config,
    });
    const admitted = performance.now();
    expect((await server.field(enqueue('a'))).__typename).toBe('RunPayload');
    writeFileSync(clockFile, '-1h\n');
    await sleep(50);
    // A command after the step, so that the step is seen and recorded.
    expect((await server.field(enqueue('b'))).__typename).toBe('RunPayload');
    let status = 'STARTING';
    while (status === 'STARTING' && performance.now() - admitted < 10_000) {
      await sleep(100);
      status = (await server.data('{ run(id: "a") { status } }')).run.status;
    }
    const tookMs = performance.now() - admitted;
    expect(status).toBe('FAILURE');
    // 2 s at 99% (the event clock slews after a step back), the monitor's own margin, a loaded machine.
    expect(tookMs).toBeGreaterThan(1_900);
    expect(tookMs).toBeLessThan(6_000);
    const store = openSqliteStore({ path: dbPath, readonly: true });
    try {
      const events = await store.readStream(DEPLOYMENT_STREAM);
      const times = events.map((e) => Date.parse(e.at));
      for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1] as number);
      expect(events.filter((e) => e.type === 'ClockSteppedBack')).toHaveLength(1);
      const finished = events.find((e) => e.type === 'RunFinished');
      expect(finished?.data).toMatchObject({ runId: 'a', status: 'FAILURE', failureReason: 'START_TIMEOUT' });
      expect((await verifyLog(store, { gaplessPositions: true })).breach).toBeNull();
    } finally {
      await store.close();
    }
  }, 60_000);

  it('given a STARTING run, when the clock steps forward an hour, then the step is recorded and the run is not failed for its start timeout', async () => {
    const { server, clockFile, dbPath } = await startSteppedServer('stepped-forward');
    expect((await server.field(enqueue('a'))).__typename).toBe('RunPayload');
    writeFileSync(clockFile, '+1h\n');
    await sleep(50);
    // A command after the step: the run monitor looks at every deadline again.
    expect((await server.field(enqueue('b'))).__typename).toBe('RunPayload');
    await sleep(2_000);
    const runs = await server.data('{ a: run(id: "a") { status } b: run(id: "b") { status } }');
    expect(runs.a.status).toBe('STARTING');
    const store = openSqliteStore({ path: dbPath, readonly: true });
    try {
      const events = await store.readStream(DEPLOYMENT_STREAM);
      const step = events.find((e) => e.type === 'ClockSteppedForward');
      expect((step?.data as { byMs: number } | undefined)?.byMs).toBeGreaterThan(3_500_000);
      expect(events.some((e) => e.type === 'RunFinished')).toBe(false);
      expect((await verifyLog(store, { gaplessPositions: true })).breach).toBeNull();
    } finally {
      await store.close();
    }
  }, 60_000);
});
