/**
 * `sluice run -- COMMAND` and `sluice slot` as real processes against a real `sluice serve`
 *: runs one after the other under a pool limit, exit codes and signals passed
 * through, termination through the API, kill -9 of a wrapper, a server restart while a
 * wrapper waits, --wait-timeout, `sluice slot` inside `sluice run`, and --json events.
 * Leases are short so that expiry is quick; timestamps come from the commands themselves.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Json, tempDir, waitFor } from '../support/e2e-http.js';
import { type ServerProcess, startServerProcess } from '../support/server-process.js';
import { sluiceOnPath, startWrapper, type WrapperProcess } from '../support/wrapper-process.js';

const dir = tempDir('sluice-wrapper-');
let server: ServerProcess;
const wrappers: WrapperProcess[] = [];
/** Commands left behind on purpose (the kill -9 case), killed at the end. */
const orphans: number[] = [];
let runs = 0;

beforeAll(async () => {
  server = await startServerProcess({ name: 'wrapper', dbPath: join(dir.path, 'events.db'), readyTimeoutMs: 60_000 });
  sluiceOnPath(dir.path);
}, 90_000);

afterEach(async () => {
  for (const w of wrappers.splice(0)) if (!w.exitInfo) w.child.kill('SIGKILL');
});

afterAll(async () => {
  for (const pid of orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await server.stop();
  dir.remove();
});

function wrapper(args: string[], env: Record<string, string> = {}): WrapperProcess {
  const w = startWrapper(args, { SLUICE_URL: server.url, PATH: `${dir.path}:${process.env.PATH}`, ...env });
  wrappers.push(w);
  return w;
}

/** A fresh run id and pool name per test, so tests share the server without meeting. */
function fresh(): { run: string; pool: string } {
  runs++;
  return { run: `r${runs}`, pool: `pool${runs}` };
}

async function mutate(query: string): Promise<Json> {
  const data = await server.data(query);
  return Object.values(data)[0];
}

async function runStatus(runId: string): Promise<{ status: string; finishReason: string | null } | null> {
  const data = await server.data(`{ run(id: "${runId}") { status finishReason } }`);
  return data.run;
}

/** A run that holds the pool's only slot until finished through the API. */
async function holdPool(pool: string, runId: string): Promise<void> {
  await mutate(`mutation { setPoolLimit(pool: "${pool}", limit: 1) { __typename } }`);
  await mutate(
    `mutation { enqueueRun(input: {runId: "${runId}", jobName: "holder", steps: [{key: "s", pool: "${pool}"}]}) { __typename } }`,
  );
  await mutate(`mutation { markRunStarted(runId: "${runId}") { __typename } }`);
  const claim = await mutate(
    `mutation { claimStepSlot(runId: "${runId}", stepKey: "s") { ... on StepSlotPayload { claim { granted } } } }`,
  );
  expect(claim.claim.granted).toBe(true);
}

/** Turns the OP-granularity root-step hold on or off (the server is shared: tests that turn it off turn it back on). */
async function rootStepHold(enabled: boolean): Promise<void> {
  const answer = await mutate(
    `mutation { changeConcurrencyConfig(change: {rootStepHold: {enabled: ${enabled}}}) { __typename ... on ConfigPayload { config { rootStepHold { enabled } } } } }`,
  );
  expect(answer).toEqual({ __typename: 'ConfigPayload', config: { rootStepHold: { enabled } } });
}

/** `[start, end]` in ms, as written by a command: `date +%s%N` before and after its work. */
function interval(file: string): [number, number] {
  const [start, end] = readFileSync(join(dir.path, file), 'utf8')
    .trim()
    .split('\n')
    .map((ns) => Number(ns) / 1e6);
  return [start as number, end as number];
}
const timed = (file: string, seconds: number) =>
  `date +%s%N > ${join(dir.path, file)}; sleep ${seconds}; date +%s%N >> ${join(dir.path, file)}`;

describe('sluice run', () => {
  it('given pool limit 1, when two wrapped commands ask for the pool, then they run one after the other and --json tells each step', async () => {
    const { pool } = fresh();
    // About admitted runs sharing a slot: the root-step hold would keep the second run queued.
    await rootStepHold(false);
    await mutate(`mutation { setPoolLimit(pool: "${pool}", limit: 1) { __typename } }`);
    const a = wrapper(['run', '--pool', pool, '--json', '--', 'sh', '-c', timed('a.times', 2)]);
    const b = wrapper(['run', '--pool', pool, '--json', '--', 'sh', '-c', timed('b.times', 2)]);
    expect([await a.code(), await b.code()], a.describe() + b.describe()).toEqual([0, 0]);
    const [first, second] = [interval('a.times'), interval('b.times')].sort((x, y) => x[0] - y[0]) as [
      [number, number],
      [number, number],
    ];
    expect(second[0], 'the second command started after the first ended').toBeGreaterThanOrEqual(first[1]);

    // One of them waited for the other's slot, and said why.
    const events = [a, b].map((w) => w.events());
    const waited = events.find((e) => e.some((x: Json) => x.event === 'waiting')) as Json[];
    expect(waited, `${a.stderr}\n${b.stderr}`).toBeDefined();
    expect(waited.map((e: Json) => e.event)).toEqual([
      'queued',
      'admitted',
      'waiting',
      'slot',
      'started',
      'finished',
      'exit',
    ]);
    const waiting = waited.find((e: Json) => e.event === 'waiting');
    expect(waiting).toMatchObject({ pool, reasons: [`pool ${pool}: 1 of 1 slots in use`] });
    expect(waited.at(-1)).toMatchObject({ event: 'exit', code: 0 });
    expect(waited.find((e: Json) => e.event === 'finished')).toMatchObject({ status: 'SUCCESS' });
    for (const e of events.flat()) expect(typeof e.at).toBe('string');
    await rootStepHold(true);
  }, 120_000);

  it('given a queued run, then it says why it waits, and SIGINT while queued cancels it and exits 130', async () => {
    const { run, pool } = fresh();
    await mutate('mutation { setTagConcurrencyLimits(limits: [{key: "lane", value: "x", limit: 0}]) { __typename } }');
    const w = wrapper(['run', '--run-id', run, '--tag', 'lane=x', '--pool', pool, '--', 'true']);
    await waitFor(() => w.stderr.includes('waiting'), 'the waiting line', 30_000);
    expect(w.stderr).toContain(`sluice: run ${run} queued (job true)`);
    expect(w.stderr).toContain(`sluice: run ${run} waiting: tag lane=x: 0 of 0 runs in progress`);
    w.child.kill('SIGINT');
    expect(await w.code(), w.describe()).toBe(130);
    expect((await runStatus(run))?.status).toBe('CANCELED');
    await mutate('mutation { setTagConcurrencyLimits(limits: []) { __typename } }');
  }, 60_000);

  it("passes COMMAND's exit code through and records FAILURE; a signal that ends COMMAND gives 128+N", async () => {
    const failing = fresh().run;
    const w = wrapper(['run', '--run-id', failing, '--', 'sh', '-c', 'echo "$SLUICE_RUN_ID"; exit 7']);
    const killed = fresh().run;
    const k = wrapper(['run', '--run-id', killed, '--', 'sh', '-c', 'kill -TERM $$']);
    expect(await w.code(), w.describe()).toBe(7);
    expect(w.stdout.trim()).toBe(failing);
    expect((await runStatus(failing))?.status).toBe('FAILURE');
    expect(await k.code(), k.describe()).toBe(143);
    expect((await runStatus(killed))?.status).toBe('FAILURE');
  }, 60_000);

  it('given COMMAND running, when the wrapper gets SIGTERM, then COMMAND gets it, and the run ends CANCELED with its code', async () => {
    const { run } = fresh();
    const ready = join(dir.path, `${run}.ready`);
    const w = wrapper([
      'run',
      '--run-id',
      run,
      '--',
      'sh',
      '-c',
      `trap "exit 5" TERM; touch ${ready}; sleep 30 & wait`,
    ]);
    await waitFor(() => existsSync(ready), 'COMMAND to set its trap', 30_000);
    w.child.kill('SIGTERM');
    expect(await w.code(), w.describe()).toBe(5);
    expect((await runStatus(run))?.status).toBe('CANCELED');
  }, 60_000);

  it('given COMMAND running, when the run is terminated through the API, then COMMAND is stopped and the wrapper exits 143', async () => {
    const { run } = fresh();
    const marker = join(dir.path, `${run}.term`);
    const w = wrapper([
      'run',
      '--run-id',
      run,
      '--grace',
      '5',
      '--',
      'sh',
      '-c',
      `trap "echo TERM > ${marker}; exit 0" TERM; sleep 60 & wait`,
    ]);
    await waitFor(
      async () => (await runStatus(run))?.status === 'STARTED' && w.stderr.includes('started'),
      'COMMAND to start',
      30_000,
    );
    const terminated = await mutate(
      `mutation { terminateRun(runId: "${run}") { ... on RunPayload { run { status } } } }`,
    );
    expect(terminated.run.status).toBe('CANCELING');
    expect(await w.code(30_000), w.describe()).toBe(143);
    expect(readFileSync(marker, 'utf8').trim()).toBe('TERM');
    expect((await runStatus(run))?.status).toBe('CANCELED');
    expect(w.stderr).toContain(`sluice: run ${run} became CANCELING: stopping the command`);
  }, 60_000);

  it('given a command that ignores SIGTERM, when its run is terminated with force, then SIGKILL follows after --grace', async () => {
    const { run } = fresh();
    const w = wrapper([
      'run',
      '--run-id',
      run,
      '--grace',
      '1',
      '--',
      'sh',
      '-c',
      'trap "" TERM; sleep 60 & wait; sleep 60',
    ]);
    await waitFor(() => w.stderr.includes('started'), 'COMMAND to start', 30_000);
    await mutate(`mutation { terminateRun(runId: "${run}", force: true) { __typename } }`);
    expect(await w.code(30_000), w.describe()).toBe(143);
    expect(await runStatus(run)).toEqual({ status: 'CANCELED', finishReason: 'terminated with force' });
  }, 60_000);

  it('given a wrapper killed with -9, then its run expires when the lease runs out and the pool goes to the next run', async () => {
    const { run, pool } = fresh();
    await mutate(`mutation { setPoolLimit(pool: "${pool}", limit: 1) { __typename } }`);
    const a = wrapper(['run', '--run-id', run, '--pool', pool, '--lease', '4', '--json', '--', 'sleep', '60']);
    await waitFor(() => a.events().find((e) => e.event === 'started'), 'the first COMMAND to start', 30_000);
    orphans.push(a.events().find((e) => e.event === 'started').pid);
    const b = wrapper(['run', '--pool', pool, '--lease', '4', '--json', '--', 'true']);
    await waitFor(() => b.events().find((e) => e.event === 'waiting'), 'the second run to wait', 30_000);
    a.child.kill('SIGKILL');
    const killedAt = Date.now();
    expect(await b.code(), b.describe()).toBe(0);
    expect(await runStatus(run)).toEqual({ status: 'FAILURE', finishReason: 'lease expired: no heartbeat for 4 s' });
    // As recorded: the lease was last renewed (admission, or a recorded heartbeat) before the
    // kill, the run expired a whole lease after that and not sooner, and the next run got the
    // pool only then. (When the wrapper's heartbeats came is the machine's load, not asserted.)
    const times = (await server.data(`{ run(id: "${run}") { admittedAt lastHeartbeatAt finishedAt } }`)).run as Record<
      string,
      string | null
    >;
    const renewed = Math.max(...[times.admittedAt, times.lastHeartbeatAt].map((at) => (at ? Date.parse(at) : 0)));
    const expired = Date.parse(times.finishedAt as string);
    expect(renewed).toBeLessThanOrEqual(killedAt);
    expect(expired - renewed).toBeGreaterThanOrEqual(4_000);
    const slot = b.events().find((e) => e.event === 'slot');
    expect(Date.parse(slot.at)).toBeGreaterThanOrEqual(expired);
  }, 90_000);

  it('given a run COMMAND outlives its lease many times over, then the heartbeat keeps it alive', async () => {
    const { run } = fresh();
    const w = wrapper(['run', '--run-id', run, '--lease', '1', '--', 'sleep', '4']);
    expect(await w.code(), w.describe()).toBe(0);
    expect((await runStatus(run))?.status).toBe('SUCCESS');
  }, 60_000);

  it('given --wait-timeout, when the pool stays full, then the run is canceled and the wrapper exits 75', async () => {
    const { run, pool } = fresh();
    await holdPool(pool, `${run}-holder`);
    const w = wrapper(['run', '--run-id', run, '--pool', pool, '--wait-timeout', '2', '--', 'true']);
    expect(await w.code(), w.describe()).toBe(75);
    expect((await runStatus(run))?.status).toBe('CANCELED');
    expect(w.stderr).toContain('exit 75 (waited more than 2 s: run canceled)');
  }, 60_000);

  it('given Sluice unreachable at start, then it exits 69 with one line; a bad option exits 2', async () => {
    const down = wrapper(['run', '--url', 'http://127.0.0.1:9/graphql', '--', 'true']);
    const bad = wrapper(['run', '--lease', 'soon', '--', 'true']);
    const none = wrapper(['run', '--pool', 'p']);
    expect(await down.code(), down.describe()).toBe(69);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toContain('cannot reach Sluice at http://127.0.0.1:9/graphql');
    expect(await bad.code()).toBe(2);
    expect(bad.stderr).toContain('--lease: expected a whole number of seconds above 0, got "soon"');
    expect(await none.code()).toBe(2);
    expect(none.stderr).toContain('no COMMAND: give it after --');
  }, 60_000);

  it('--help lists every exit code', async () => {
    const help = wrapper(['run', '--help']);
    expect(await help.code()).toBe(0);
    for (const code of ['2 ', '69', '75', '126 / 127', '129 / 130 / 143', '143', '128+N']) {
      expect(help.stdout).toContain(code);
    }
  }, 60_000);
});

describe('sluice run while the server restarts', () => {
  it('given a wrapper waiting, when the server restarts, then the wrapper reconnects and is still admitted', async () => {
    const { run, pool } = fresh();
    // About an admitted run waiting for a slot: the root-step hold would keep it queued.
    await rootStepHold(false);
    await holdPool(pool, `${run}-holder`);
    const w = wrapper(['run', '--run-id', run, '--pool', pool, '--json', '--', 'true']);
    await waitFor(() => w.events().some((e) => e.event === 'waiting'), 'the wrapper to wait', 30_000);
    const port = server.port;
    await server.stop();
    server = await startServerProcess({
      name: 'wrapper-restarted',
      dbPath: join(dir.path, 'events.db'),
      readyTimeoutMs: 60_000,
      port,
    });
    await mutate(`mutation { markRunFinished(runId: "${run}-holder", status: SUCCESS) { __typename } }`);
    expect(await w.code(), w.describe()).toBe(0);
    expect(w.events().map((e) => e.event)).toEqual([
      'queued',
      'admitted',
      'waiting',
      'slot',
      'started',
      'finished',
      'exit',
    ]);
    expect((await runStatus(run))?.status).toBe('SUCCESS');
    await rootStepHold(true);
  }, 120_000);
});

describe('sluice run while the server is down', () => {
  it('given COMMAND running, when the server goes away and comes back, then COMMAND keeps running and its end is recorded', async () => {
    const { run } = fresh();
    const ready = join(dir.path, `${run}.ready`);
    const w = wrapper(['run', '--run-id', run, '--lease', '30', '--', 'sh', '-c', `touch ${ready}; sleep 6; exit 3`]);
    await waitFor(() => existsSync(ready), 'COMMAND to start', 30_000);
    const port = server.port;
    await server.stop();
    expect(w.exitInfo, 'the wrapper outlives the server').toBeNull();
    server = await startServerProcess({
      name: 'wrapper-back',
      dbPath: join(dir.path, 'events.db'),
      readyTimeoutMs: 60_000,
      port,
    });
    expect(await w.code(), w.describe()).toBe(3);
    expect((await runStatus(run))?.status).toBe('FAILURE');
  }, 120_000);
});

describe('sluice slot inside sluice run', () => {
  it('given pool limit 1, when two wrapped jobs each hold a slot for a step, then the steps run one after the other', async () => {
    const { pool } = fresh();
    await mutate(`mutation { setPoolLimit(pool: "${pool}", limit: 1) { __typename } }`);
    const step = (file: string) => `sluice slot --pool ${pool} -- sh -c '${timed(file, 2)}' && echo step-done`;
    const a = wrapper(['run', '--run-id', `${pool}-a`, '--', 'sh', '-c', step('sa.times')]);
    const b = wrapper(['run', '--run-id', `${pool}-b`, '--', 'sh', '-c', step('sb.times')]);
    expect([await a.code(90_000), await b.code(90_000)], a.describe() + b.describe()).toEqual([0, 0]);
    expect(a.stdout + b.stdout).toBe('step-done\nstep-done\n');
    const [first, second] = [interval('sa.times'), interval('sb.times')].sort((x, y) => x[0] - y[0]) as [
      [number, number],
      [number, number],
    ];
    expect(second[0]).toBeGreaterThanOrEqual(first[1]);
    expect(a.stderr + b.stderr).toContain(`waiting for a slot of pool ${pool}: pool ${pool}: 1 of 1 slots in use`);
    // Each job's step was added to its run, in the pool; the run has ended, so it holds no claim.
    const claims = await server.data(
      `{ run(id: "${pool}-a") { status pools steps { pool } stepClaims { pool granted released } } }`,
    );
    expect(claims.run.pools).toEqual([pool]);
    expect(claims.run.steps).toEqual([{ pool }]);
    expect(claims.run.stepClaims).toEqual([]);
  }, 150_000);

  it('outside a run, sluice slot is a usage error; for a run that is not admitted, Sluice refuses the claim (exit 1)', async () => {
    const { run } = fresh();
    const outside = wrapper(['slot', '--pool', 'p', '--', 'true']);
    await mutate(`mutation { enqueueRun(input: {runId: "${run}", jobName: "j"}) { __typename } }`);
    await mutate(`mutation { markRunFinished(runId: "${run}", status: SUCCESS) { __typename } }`).catch(() => null);
    await mutate(`mutation { terminateRun(runId: "${run}") { __typename } }`).catch(() => null);
    const refused = wrapper(['slot', '--pool', 'p', '--run-id', run, '--', 'true']);
    expect(await outside.code()).toBe(2);
    expect(outside.stderr).toContain('no run: give --run-id, or run inside `sluice run` (SLUICE_RUN_ID)');
    expect(await refused.code(), refused.describe()).toBe(1);
    expect(refused.stderr).toContain('Sluice refused the claim');
  }, 60_000);
});
