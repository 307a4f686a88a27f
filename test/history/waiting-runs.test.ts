/**
 * The runs behind a wait report's figures, page by page: a hand-built history with known answers,
 * and random histories where every page, followed to the end, lists exactly the runs a reference
 * finds from each run's own waits (`Run.waits`) clipped to the window, in the same order, with
 * the same totals the report gives.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WaitInterval } from '../../projections/state.js';
import type { Constraint } from '../../src/domain/constraints.js';
import type { HistoryStore } from '../../src/history/history-store.js';
import { CROSSING_BUCKET_MS, WAIT_LEDGER_SCHEMA, WaitLedger, type WaitLimit } from '../../src/history/wait-ledger.js';
import {
  byWaitThenId,
  cursorOf,
  parseCursor,
  type WaitingRunData,
  type WaitingRunsOf,
  waitingRuns,
} from '../../src/history/waiting-runs.js';
import { historyOps, randomHistory } from '../support/random-history.js';
import { cmd, Scenario } from '../support/scenario.js';

const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const at = (seconds: number) => T0 + seconds * 1000;
const RUNS: WaitLimit = { kind: 'MAX_CONCURRENT_RUNS', key: null, value: null, pool: null, perUniqueValue: false };
const TEAM_A: WaitLimit = { kind: 'TAG_LIMIT', key: 'team', value: 'a', pool: null, perUniqueValue: false };

/** Every page of a list, followed by its cursors, `first` at a time. */
function allPages(
  history: HistoryStore,
  fromMs: number,
  toMs: number,
  of: WaitingRunsOf,
  first: number,
  nowMs?: number,
): { runs: WaitingRunData[]; totals: number[]; pages: number } {
  const runs: WaitingRunData[] = [];
  const totals: number[] = [];
  let after: string | null = null;
  for (let pages = 1; ; pages++) {
    const page = history.waitingRuns(fromMs, toMs, of, { first, after: after ? parseCursor(after) : null }, nowMs);
    expect(page.runs.length).toBeLessThanOrEqual(first);
    runs.push(...page.runs);
    totals.push(page.totalCount);
    if (!page.hasNextPage) return { runs, totals, pages };
    expect(page.runs.length).toBe(first);
    after = cursorOf(page.runs.at(-1) as WaitingRunData);
    if (pages > 1_000) throw new Error('paging does not end');
  }
}

/** `id:seconds` of each run listed. */
const listed = (runs: readonly WaitingRunData[]) => runs.map((r) => `${r.runId}:${r.waitMs / 1000}`);

/**
 * Given max runs 1 and tag team=a at 1, run a (team a) in progress; at 0 s run b (team a, job
 * x) and run c (no tag, job y) queue; at 10 s max runs goes to 5 (c is admitted, b stays held
 * by the tag alone); at 30 s a finishes and b is admitted.
 */
function overlapping(): Scenario {
  const s = new Scenario().given(
    cmd.maxRuns(1),
    cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }),
    cmd.enqueue('a', { tags: { team: 'a' } }),
    cmd.enqueue('b', { tags: { team: 'a' }, jobName: 'x' }),
    cmd.enqueue('c', { jobName: 'y' }),
  );
  s.advance(10).given(cmd.maxRuns(5));
  s.advance(20).given(cmd.finish('a'));
  expect(s.statuses('b', 'c')).toEqual({ b: 'STARTING', c: 'STARTING' });
  return s;
}

describe('the runs behind a figure, over a hand-built history', () => {
  it("lists a limit's runs by what it held of each inside the window, longest first", () => {
    const h = overlapping().history;
    const list = (fromMs: number, toMs: number, of: WaitingRunsOf) => listed(allPages(h, fromMs, toMs, of, 10).runs);
    expect(list(at(0), at(60), { limit: TEAM_A, alone: false })).toEqual(['b:30']);
    expect(list(at(0), at(60), { limit: TEAM_A, alone: true })).toEqual(['b:20']);
    // b and c each 10 s: by id.
    expect(list(at(0), at(60), { limit: RUNS, alone: false })).toEqual(['b:10', 'c:10']);
    // Alone: c (b was held by the tag as well).
    expect(list(at(0), at(60), { limit: RUNS, alone: true })).toEqual(['c:10']);
    // Cut by the window's start and by its end.
    expect(list(at(5), at(15), { limit: RUNS, alone: false })).toEqual(['b:5', 'c:5']);
    expect(list(at(5), at(15), { limit: TEAM_A, alone: false })).toEqual(['b:10']);
    expect(list(at(30), at(60), { limit: RUNS, alone: false })).toEqual([]);
    expect(list(at(0), at(60), { jobName: 'x' })).toEqual(['b:30']);
    expect(list(at(0), at(60), { jobName: 'y' })).toEqual(['c:10']);
    expect(list(at(0), at(60), { jobName: 'nothing' })).toEqual([]);
    const pool = { ...RUNS, kind: 'POOL_LIMIT' as const, pool: 'never' };
    expect(list(at(0), at(60), { limit: pool, alone: false })).toEqual([]);
  });

  it('counts a run still queued up to now, and pages one run at a time with the total on each page', () => {
    const s = new Scenario().given(cmd.maxRuns(0), cmd.enqueue('q1', { jobName: 'j' }));
    s.advance(10).given(cmd.enqueue('q2', { jobName: 'j' }), cmd.enqueue('q3', { jobName: 'j' }));
    s.advance(20);
    // Still queued: 30 s, 20 s and 20 s up to now.
    const pages = allPages(s.history, at(0), at(100), { jobName: 'j' }, 1, at(30));
    expect(listed(pages.runs)).toEqual(['q1:30', 'q2:20', 'q3:20']);
    expect(pages).toMatchObject({ totals: [3, 3, 3], pages: 3 });
    s.given(cmd.maxRuns(5));
    // Left the queue: the same list from the ledger.
    expect(listed(allPages(s.history, at(0), at(100), { limit: RUNS, alone: true }, 2).runs)).toEqual([
      'q1:30',
      'q2:20',
      'q3:20',
    ]);
  });
});

/** Each run's part of a figure from its own waits, clipped to the window: the reference. */
function referenceList(
  runs: ReadonlyArray<{ runId: string; jobName: string; waits: readonly WaitInterval[] }>,
  fromMs: number,
  toMs: number,
  nowMs: number,
  of: { limitKey: string; alone: boolean } | { jobName: string },
): Array<{ runId: string; ms: number }> {
  const list: Array<{ runId: string; ms: number }> = [];
  for (const run of runs) {
    if ('jobName' in of && run.jobName !== of.jobName) continue;
    let ms = 0;
    for (const w of run.waits) {
      const start = Date.parse(w.from);
      const end = w.to === null ? Math.max(start, nowMs) : Date.parse(w.to);
      const length = Math.max(0, Math.min(end, toMs) - Math.max(start, fromMs));
      const keys = new Set(w.reasons.map(keyOf));
      if ('jobName' in of) ms += length;
      else if (keys.has(of.limitKey) && (!of.alone || keys.size === 1)) ms += length;
    }
    if (ms > 0) list.push({ runId: run.runId, ms });
  }
  return list.sort(byWaitThenId);
}

const keyOf = (l: WaitLimit) => [l.kind, l.key, l.value, l.pool, l.perUniqueValue].join('|');

describe('the runs behind a figure, over random histories', () => {
  it('lists, page after page, the runs a reference finds from each run’s waits, with the report’s totals', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`waiting runs property seed ${seed} (SEED=${seed} reproduces it)`);
    let lists = 0;
    let paged = 0;
    fc.assert(
      fc.property(
        historyOps(80),
        fc.array(
          fc.tuple(fc.double({ min: -0.1, max: 1.1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        fc.boolean(),
        fc.constantFrom(1, 1, 2, 3),
        (ops, windows, granularityRun, first) => {
          const s = randomHistory(ops, granularityRun);
          const nowMs = Date.parse(s.now);
          const span = Math.max(1000, nowMs - T0);
          const runs = s.runIds.map((runId) => ({
            runId,
            jobName: s.history.run(runId)?.jobName ?? '',
            waits: s.waits(runId),
          }));
          const limits = new Map<string, WaitLimit>();
          for (const run of runs) {
            for (const w of run.waits) {
              for (const c of w.reasons) {
                const { kind, key, value, pool, perUniqueValue } = c;
                limits.set(keyOf(c), { kind, key, value, pool, perUniqueValue });
              }
            }
          }
          const jobs = new Set(runs.map((r) => r.jobName));
          for (const [start, length] of windows) {
            const fromMs = Math.round(T0 + start * span);
            const toMs = Math.max(fromMs + 1, Math.round(fromMs + length * span));
            const report = s.history.waitReport(fromMs, toMs, nowMs);
            const byJob = s.history.waitByJob(fromMs, toMs, nowMs);
            const longest = s.history.runsHeldLongest(fromMs, toMs, nowMs);
            const check = (of: WaitingRunsOf, reference: Array<{ runId: string; ms: number }>) => {
              const pages = allPages(s.history, fromMs, toMs, of, first, nowMs);
              expect(pages.runs.map((r) => ({ runId: r.runId, ms: r.waitMs }))).toEqual(reference);
              expect(new Set(pages.totals)).toEqual(new Set([reference.length]));
              for (const r of pages.runs) expect(r.jobName).toBe(s.history.run(r.runId)?.jobName);
              lists++;
              if (pages.pages > 1) paged++;
              return pages.runs;
            };
            for (const [key, limit] of limits) {
              const held = check(
                { limit, alone: false },
                referenceList(runs, fromMs, toMs, nowMs, { limitKey: key, alone: false }),
              );
              check({ limit, alone: true }, referenceList(runs, fromMs, toMs, nowMs, { limitKey: key, alone: true }));
              const share = report.byLimit.find((l) => keyOf(l) === key);
              // A share's longestRunIds: the first five of the same list.
              expect(longest.get(key) ?? []).toEqual(held.slice(0, 5).map((r) => r.runId));
              expect(held.length).toBe(share?.runs ?? 0);
              expect(held.reduce((sum, r) => sum + r.waitMs, 0) / 1000).toBeCloseTo(share?.heldSeconds ?? 0, 6);
            }
            for (const jobName of jobs) {
              const list = check({ jobName }, referenceList(runs, fromMs, toMs, nowMs, { jobName }));
              const row = byJob.find((j) => j.jobName === jobName);
              expect(list.length).toBe(row?.runs ?? 0);
              expect(row?.longestRunIds ?? []).toEqual(list.slice(0, 5).map((r) => r.runId));
            }
          }
        },
      ),
      { seed, numRuns: 100 },
    );
    console.log(`lists compared: ${lists}, of several pages: ${paged}`);
    expect(paged).toBeGreaterThan(3);
  });
});

/**
 * Many runs written straight to the ledger (as the history writes them, in leave order), two
 * limits holding them alone or together, waits of a few lengths (ties): long lists, many pages.
 */
describe('the runs behind a figure, over the wait ledger', () => {
  const constraint = (l: WaitLimit): Constraint => ({ ...l, limit: 1, inUse: 1, message: '' });
  const POOL: WaitLimit = { kind: 'POOL_LIMIT', key: null, value: null, pool: 'db', perUniqueValue: false };
  const runs = fc
    .array(
      fc.record({
        job: fc.constantFrom('a', 'b'),
        arrive: fc.integer({ min: 0, max: 3 * CROSSING_BUCKET_MS }),
        stretches: fc.array(
          fc.record({
            length: fc.constantFrom(1000, 60_000, 600_000, 1_800_000),
            held: fc.constantFrom([RUNS], [POOL], [RUNS, POOL]),
          }),
          { minLength: 1, maxLength: 3 },
        ),
      }),
      { maxLength: 150 },
    )
    .map((drawn) =>
      drawn.map(({ job, arrive, stretches }, i) => {
        let from = T0 + arrive;
        const waits: WaitInterval[] = stretches.map(({ length, held }) => {
          const wait = { from: new Date(from).toISOString(), to: new Date(from + length).toISOString() };
          from += length;
          return { ...wait, reasons: held.map(constraint) };
        });
        return { runId: `r${i}`, jobName: job, waits };
      }),
    );

  it('pages through each list as the reference orders it, whatever the page size', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`waiting runs ledger property seed ${seed} (SEED=${seed} reproduces it)`);
    let paged = 0;
    fc.assert(
      fc.property(
        runs,
        fc.integer({ min: -CROSSING_BUCKET_MS, max: 4 * CROSSING_BUCKET_MS }),
        fc.integer({ min: 1, max: 4 * CROSSING_BUCKET_MS }),
        fc.integer({ min: 1, max: 7 }),
        (all, start, length, first) => {
          const db = new Database(':memory:');
          db.exec(WAIT_LEDGER_SCHEMA);
          const ledger = new WaitLedger(db);
          const leftAt = (r: (typeof all)[number]) => Date.parse(r.waits.at(-1)?.to ?? '');
          for (const run of [...all].sort((a, b) => leftAt(a) - leftAt(b))) {
            ledger.recordLeft(run.runId, run.jobName, run.waits);
          }
          const fromMs = T0 + start;
          const toMs = fromMs + length;
          const lists: Array<[WaitingRunsOf, Parameters<typeof referenceList>[4]]> = [
            ...[RUNS, POOL].flatMap((limit) =>
              [false, true].map(
                (alone) =>
                  [
                    { limit, alone },
                    { limitKey: keyOf(limit), alone },
                  ] as [WaitingRunsOf, { limitKey: string; alone: boolean }],
              ),
            ),
            [{ jobName: 'a' }, { jobName: 'a' }],
            [{ jobName: 'b' }, { jobName: 'b' }],
          ];
          for (const [of, reference] of lists) {
            const got: Array<{ runId: string; ms: number }> = [];
            let after: WaitingRunData | null = null;
            for (;;) {
              const page = waitingRuns(
                ledger,
                fromMs,
                toMs,
                of,
                { first, after: after ? parseCursor(cursorOf(after)) : null },
                [],
              );
              got.push(...page.runs.map((r) => ({ runId: r.runId, ms: r.waitMs })));
              if (!page.hasNextPage) break;
              after = page.runs.at(-1) as WaitingRunData;
              paged++;
              if (got.length > all.length) throw new Error('paging does not end');
            }
            expect(got).toEqual(referenceList(all, fromMs, toMs, toMs, reference));
          }
          db.close();
        },
      ),
      { seed, numRuns: 100 },
    );
    expect(paged).toBeGreaterThan(30);
  });
});
