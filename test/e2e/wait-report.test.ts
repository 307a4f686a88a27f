/**
 * `waitReport` over HTTP and `sluice report` against a real server on a real port, with Date
 * faked so each command happens at a known time: the numbers a client reads are the ones the
 * history records, bad windows are refused with the field named, and the cost limit prices it.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CliError } from '../../src/cli/client.js';
import { runCli } from '../../src/cli/run.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql } from '../support/e2e-http.js';

vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const T0 = Date.parse('2026-11-27T14:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

let server: RunningServer;
let gql: Gql;

beforeEach(async () => {
  // performance too: event time runs on by the monotonic clock, which must be the test's as well.
  vi.useFakeTimers({ toFake: ['Date', 'performance'] });
  vi.setSystemTime(T0);
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, host: '127.0.0.1', eventStoreUrl: 'sqlite::memory:' },
    () => {},
  );
  gql = new Gql(server.url);
});

afterEach(async () => {
  await server.close();
  vi.useRealTimers();
});

async function atTime(seconds: number, mutation: string): Promise<void> {
  vi.setSystemTime(T0 + seconds * 1000);
  const data = await gql.data(`mutation { ${mutation} }`);
  for (const value of Object.values(data) as Array<{ __typename?: string; message?: string }>) {
    if (value?.__typename?.endsWith('Error')) throw new Error(`${value.__typename}: ${value.message}`);
  }
}

const enqueue = (id: string, tags = '') =>
  `enqueueRun(input: {runId: "${id}", jobName: "etl", tags: [${tags}]}) { __typename }`;

/** Max runs 1, tag team=a at 1: a runs; b (team a) and c wait; at 10 s max runs 5; at 30 s a finishes. */
async function story(): Promise<void> {
  await atTime(
    0,
    `m: setMaxConcurrentRuns(limit: 1) { __typename }
     t: setTagConcurrencyLimits(limits: [{key: "team", value: "a", limit: 1}]) { __typename }`,
  );
  await atTime(
    0,
    `a: ${enqueue('a', '{key: "team", value: "a"}')} b: ${enqueue('b', '{key: "team", value: "a"}')} c: ${enqueue('c')}`,
  );
  await atTime(10, 'setMaxConcurrentRuns(limit: 5) { __typename }');
  await atTime(30, 'markRunFinished(runId: "a", status: SUCCESS) { __typename }');
}

const REPORT = `query($from: DateTime!, $to: DateTime!) { waitReport(from: $from, to: $to) {
  from to runs waitSeconds byLimit { kind key value pool heldSeconds soleSeconds runs } } }`;

describe('waitReport over HTTP', () => {
  it('answers held and sole seconds per limit, largest first, for a whole window and a cut one', async () => {
    await story();
    const whole = await gql.data(REPORT, { from: at(0), to: at(60) });
    expect(whole.waitReport).toEqual({
      from: at(0),
      to: at(60),
      runs: 2,
      waitSeconds: 40,
      byLimit: [
        { kind: 'TAG_LIMIT', key: 'team', value: 'a', pool: null, heldSeconds: 30, soleSeconds: 20, runs: 1 },
        { kind: 'MAX_CONCURRENT_RUNS', key: null, value: null, pool: null, heldSeconds: 20, soleSeconds: 10, runs: 2 },
      ],
    });
    const cut = await gql.data(REPORT, { from: at(12), to: at(40) });
    expect(cut.waitReport).toMatchObject({
      runs: 1,
      waitSeconds: 18,
      byLimit: [{ kind: 'TAG_LIMIT', soleSeconds: 18 }],
    });
  });

  it('counts a run still queued up to now when the window reaches past it', async () => {
    await atTime(0, `setMaxConcurrentRuns(limit: 0) { __typename }`);
    await atTime(0, enqueue('q'));
    vi.setSystemTime(T0 + 45_000);
    const report = await gql.data(REPORT, { from: at(-3600), to: at(3600) });
    expect(report.waitReport).toMatchObject({ runs: 1, waitSeconds: 45 });
  });

  it('refuses a window that ends before it starts, naming the field', async () => {
    const errors = (await gql.answer(REPORT, { from: at(10), to: at(10) })).body.errors ?? [];
    expect(errors[0]).toMatchObject({
      message: 'to must come after from',
      extensions: { code: 'BAD_USER_INPUT', field: 'to' },
    });
  });

  it('is priced by the field cost limit', async () => {
    // 25 reports at 10 each and 3 simulations at 100: 550, over the default 500 (300 without the reports).
    const reports = Array.from(
      { length: 25 },
      (_, i) => `r${i}: waitReport(from: "${at(0)}", to: "${at(1)}") { runs }`,
    );
    const simulations = Array.from({ length: 3 }, (_, i) => `s${i}: simulate(change: {}) { wouldAdmit { id } }`);
    const errors = (await gql.answer(`{ ${[...reports, ...simulations].join(' ')} }`)).body.errors ?? [];
    expect(errors[0]?.message).toMatch(/Field cost limit of 500 exceeded, found 550/);
  });
});

const WAITING = `query($from: DateTime!, $to: DateTime!, $limit: WaitLimitInput, $alone: Boolean, $jobName: String, $first: Int, $after: String) {
  waitingRuns(from: $from, to: $to, limit: $limit, alone: $alone, jobName: $jobName, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { runId jobName waitSeconds } } } }`;

describe('waitingRuns over HTTP', () => {
  it("pages through a limit's runs and a job's runs, longest wait inside the window first", async () => {
    await story();
    const shares = (
      await gql.data(
        `{ waitReport(from: "${at(0)}", to: "${at(60)}") { byLimit { kind key value pool perUniqueValue } } }`,
      )
    ).waitReport.byLimit as Array<Record<string, unknown>>;
    const runsLimit = shares.find((s) => s.kind === 'MAX_CONCURRENT_RUNS');
    const first = (await gql.data(WAITING, { from: at(0), to: at(60), limit: runsLimit, first: 1 })).waitingRuns;
    // b and c were each held 10 s by max concurrent runs: by id.
    expect(first).toMatchObject({
      totalCount: 2,
      pageInfo: { hasNextPage: true },
      edges: [{ node: { runId: 'b', jobName: 'etl', waitSeconds: 10 } }],
    });
    const second = (
      await gql.data(WAITING, { from: at(0), to: at(60), limit: runsLimit, first: 1, after: first.pageInfo.endCursor })
    ).waitingRuns;
    expect(second).toMatchObject({
      totalCount: 2,
      pageInfo: { hasNextPage: false },
      edges: [{ node: { runId: 'c', waitSeconds: 10 } }],
    });
    const tag = shares.find((s) => s.kind === 'TAG_LIMIT');
    const alone = (await gql.data(WAITING, { from: at(0), to: at(60), limit: tag, alone: true })).waitingRuns;
    expect(alone.edges.map((e: { node: unknown }) => e.node)).toEqual([
      { runId: 'b', jobName: 'etl', waitSeconds: 20 },
    ]);
    // A window cut through the waits: b 10 s (0 to 10) of which c too; the job lists both.
    const job = (await gql.data(WAITING, { from: at(5), to: at(15), jobName: 'etl' })).waitingRuns;
    expect(
      job.edges.map((e: { node: { runId: string; waitSeconds: number } }) => [e.node.runId, e.node.waitSeconds]),
    ).toEqual([
      ['b', 10],
      ['c', 5],
    ]);
  });

  it('counts a run still queued up to now', async () => {
    await atTime(0, `setMaxConcurrentRuns(limit: 0) { __typename }`);
    await atTime(0, enqueue('q'));
    vi.setSystemTime(T0 + 45_000);
    const list = (await gql.data(WAITING, { from: at(-3600), to: at(3600), jobName: 'etl' })).waitingRuns;
    expect(list).toMatchObject({ totalCount: 1, edges: [{ node: { runId: 'q', waitSeconds: 45 } }] });
  });

  it('refuses neither or both of limit and jobName, and a cursor it never gave, naming the field', async () => {
    const errors = async (variables: Record<string, unknown>) =>
      (await gql.answer(WAITING, { from: at(0), to: at(60), ...variables })).body.errors ?? [];
    expect((await errors({}))[0]).toMatchObject({
      message: 'give either limit or jobName',
      extensions: { code: 'BAD_USER_INPUT', field: 'limit' },
    });
    expect((await errors({ jobName: 'etl', limit: { kind: 'MAX_CONCURRENT_RUNS' } }))[0]?.message).toBe(
      'give either limit or jobName',
    );
    expect((await errors({ jobName: 'etl', alone: true }))[0]).toMatchObject({ extensions: { field: 'alone' } });
    expect((await errors({ jobName: 'etl', after: 'nonsense' }))[0]?.message).toMatch(
      /must be a cursor returned by this API/,
    );
  });

  it('is priced by the field cost limit: 10 plus 1 per 10 runs asked for', async () => {
    // 20 lists of 1,000: 20 x (10 + 100) = 2,200, over the default 500.
    const lists = Array.from(
      { length: 20 },
      (_, i) => `w${i}: waitingRuns(from: "${at(0)}", to: "${at(1)}", jobName: "etl", first: 1000) { totalCount }`,
    );
    const errors = (await gql.answer(`{ ${lists.join(' ')} }`)).body.errors ?? [];
    expect(errors[0]?.message).toMatch(/Field cost limit of 500 exceeded, found 2200/);
  });
});

const WHAT_IF = `query($from: DateTime!, $to: DateTime!, $change: ConfigChangeInput!) {
  replayWhatIf(from: $from, to: $to, change: $change) {
    actualWaitSeconds replayedWaitSeconds runs actualRuns assumptions
    byLimit { kind heldSeconds soleSeconds runs } actualByLimit { kind heldSeconds soleSeconds runs } } }`;

describe('replayWhatIf over HTTP', () => {
  it('replays the record exactly with no change, less waiting with more room, and appends nothing', async () => {
    await story();
    vi.setSystemTime(T0 + 100_000);
    const revision = server.sluice.state.revision;
    const same = (await gql.data(WHAT_IF, { from: at(0), to: at(60), change: {} })).replayWhatIf;
    expect(same).toMatchObject({ actualWaitSeconds: 40, replayedWaitSeconds: 40, runs: 2, actualRuns: 2 });
    expect(same.byLimit).toEqual(same.actualByLimit);
    const raised = (await gql.data(WHAT_IF, { from: at(0), to: at(60), change: { maxConcurrentRuns: 5 } }))
      .replayWhatIf;
    // Max runs 5 from the start: c is admitted at once; b waits for a (tag team=a) alone, 30 s.
    expect(raised).toMatchObject({
      actualWaitSeconds: 40,
      replayedWaitSeconds: 30,
      runs: 1,
      byLimit: [{ kind: 'TAG_LIMIT', heldSeconds: 30, soleSeconds: 30, runs: 1 }],
    });
    expect(raised.assumptions.join(' ')).toMatch(/canceled while queued are replayed as canceled at the same instant/);
    expect(server.sluice.state.revision).toBe(revision);
  });

  it('refuses a bad change, naming the field, and a window backwards', async () => {
    const bad = (await gql.answer(WHAT_IF, { from: at(0), to: at(60), change: { maxConcurrentRuns: -2 } })).body.errors;
    expect(bad?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'change.maxConcurrentRuns' } });
    const backwards = (await gql.answer(WHAT_IF, { from: at(60), to: at(0), change: {} })).body.errors;
    expect(backwards?.[0]).toMatchObject({ message: 'to must come after from', extensions: { field: 'to' } });
  });
});

describe('sluice report', () => {
  it('prints the same report for a person, and as JSON', async () => {
    await story();
    const url = server.url;
    const text = await runCli(['report', '--from', at(0), '--to', at(60), '--url', url], {});
    expect(text).toBe(
      [
        `waiting from ${at(0)} to ${at(60)}: 40s of run time, 2 runs waited`,
        'limits, largest share first (held: the limit was among those holding a run; alone: it was the only one):',
        '  tag team=a: held 30s (75%), alone 20s, 1 run',
        '  max concurrent runs: held 20s (50%), alone 10s, 2 runs',
      ].join('\n'),
    );
    const json = JSON.parse(
      (await runCli(['report', '--from', at(0), '--to', at(60), '--json', '--url', url], {})) as string,
    );
    expect(json).toMatchObject({
      runs: 2,
      waitSeconds: 40,
      byLimit: [{ kind: 'TAG_LIMIT' }, { kind: 'MAX_CONCURRENT_RUNS' }],
    });
  });

  it('refuses a bad instant or a window backwards with a usage error', async () => {
    const failure = await runCli(['report', '--from', 'yesterday', '--url', server.url], {}).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CliError);
    expect(failure).toMatchObject({ exitCode: 2, message: expect.stringMatching(/--from must be an instant/) });
    const backwards = await runCli(['report', '--from', at(10), '--to', at(0), '--url', server.url], {}).catch(
      (e: unknown) => e,
    );
    expect(backwards).toMatchObject({ exitCode: 2, message: '--to must come after --from' });
  });
});
