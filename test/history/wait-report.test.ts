/**
 * Wait reports from the history read model: hand-built histories with known answers, and random
 * histories against the waits the history derives run by run (the reference).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WaitReportData } from '../../src/history/wait-report.js';
import { historyOps, randomHistory } from '../support/random-history.js';
import { referenceWaitReport } from '../support/reference-wait-report.js';
import { cmd, Scenario } from '../support/scenario.js';

const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const at = (seconds: number) => T0 + seconds * 1000;

/** `name: held/sole runs` for each share, in the report's order. */
const shares = (report: WaitReportData) =>
  report.byLimit.map((s) => {
    const name =
      s.kind === 'MAX_CONCURRENT_RUNS'
        ? 'runs'
        : s.kind === 'TAG_LIMIT'
          ? `tag ${s.key}=${s.value ?? '*'}`
          : `${s.kind === 'POOL_LIMIT' ? 'pool' : 'root'} ${s.pool}`;
    return `${name}: ${s.heldSeconds}/${s.soleSeconds} ${s.runs}`;
  });

/**
 * Given max runs 1 and tag team=a at 1, run a (team a) in progress; at 0 s run b (team a) and run
 * c (no tag) queue; at 10 s max runs goes to 5 (c is admitted, b stays held by the tag alone);
 * at 30 s a finishes and b is admitted.
 */
function overlapping(): Scenario {
  const s = new Scenario().given(
    cmd.maxRuns(1),
    cmd.tagLimits({ key: 'team', value: 'a', limit: 1 }),
    cmd.enqueue('a', { tags: { team: 'a' } }),
    cmd.enqueue('b', { tags: { team: 'a' } }),
    cmd.enqueue('c'),
  );
  s.advance(10).given(cmd.maxRuns(5));
  expect(s.statuses('b', 'c')).toEqual({ b: 'QUEUED', c: 'STARTING' });
  s.advance(20).given(cmd.finish('a'));
  expect(s.status('b')).toBe('STARTING');
  return s;
}

describe('a wait report over a hand-built history', () => {
  it('splits overlapping holds into held and sole seconds, largest first', () => {
    const report = overlapping().history.waitReport(at(0), at(60));
    expect(report).toMatchObject({ runs: 2, waitSeconds: 40 });
    expect(shares(report)).toEqual(['tag team=a: 30/20 1', 'runs: 20/10 2']);
  });

  it('counts only the part of a wait inside a window that cuts through it', () => {
    const s = overlapping();
    const middle = s.history.waitReport(at(5), at(15));
    expect(middle).toMatchObject({ runs: 2, waitSeconds: 15 });
    // Equal shares: by name.
    expect(shares(middle)).toEqual(['runs: 10/5 2', 'tag team=a: 10/5 1']);
    const late = s.history.waitReport(at(12), at(40));
    expect(late).toMatchObject({ runs: 1, waitSeconds: 18 });
    expect(shares(late)).toEqual(['tag team=a: 18/18 1']);
    expect(s.history.waitReport(at(30), at(60))).toMatchObject({ runs: 0, waitSeconds: 0, byLimit: [] });
    expect(s.history.waitReport(at(-60), at(0))).toMatchObject({ runs: 0, waitSeconds: 0, byLimit: [] });
  });

  it('names root-step holds by pool', () => {
    const s = new Scenario().given(cmd.poolLimit('db', 1), cmd.enqueue('a', { steps: ['load@db'] }));
    s.given(cmd.enqueue('b', { steps: ['load@db'] }), cmd.enqueue('c', { steps: ['x@db', 'y@api'] }));
    expect(s.statuses('b', 'c')).toEqual({ b: 'QUEUED', c: 'STARTING' });
    s.advance(20).given(cmd.finish('a'), cmd.finish('c'));
    expect(s.status('b')).toBe('STARTING');
    const report = s.history.waitReport(at(0), at(100));
    expect(report).toMatchObject({ runs: 1, waitSeconds: 20 });
    expect(shares(report)).toEqual(['root db: 20/20 1']);
  });

  it('counts runs still queued at `to` up to `to`, and runs still queued now up to now', () => {
    const s = new Scenario().given(cmd.maxRuns(0), cmd.enqueue('a'));
    s.advance(7200).given(cmd.enqueue('b'));
    s.advance(3600);
    // a waited 3 h, across many crossing buckets; b 1 h; both still queued now (3 h).
    expect(s.history.waitReport(at(1800), at(5400))).toMatchObject({ runs: 1, waitSeconds: 3600 });
    expect(s.history.waitReport(at(0), at(10800 + 999), at(10800))).toMatchObject({
      runs: 2,
      waitSeconds: 10800 + 3600,
    });
    // Once they leave the queue the same windows read from the ledger, with the same answers.
    s.given(cmd.maxRuns(5));
    expect(s.statuses('a', 'b')).toEqual({ a: 'STARTING', b: 'STARTING' });
    expect(s.history.waitReport(at(1800), at(5400))).toMatchObject({ runs: 1, waitSeconds: 3600 });
    const all = s.history.waitReport(at(0), at(20000));
    expect(all).toMatchObject({ runs: 2, waitSeconds: 10800 + 3600 });
    expect(shares(all)).toEqual(['runs: 14400/14400 2']);
    const cut = s.history.waitReport(at(9000), at(9900));
    expect(cut).toMatchObject({ runs: 2, waitSeconds: 1800 });
  });

  it('counts a run canceled while queued up to its cancellation', () => {
    const s = new Scenario().given(cmd.maxRuns(0), cmd.enqueue('a'));
    s.advance(90).given(cmd.terminate('a'));
    expect(s.status('a')).toBe('CANCELED');
    expect(shares(s.history.waitReport(at(0), at(1000)))).toEqual(['runs: 90/90 1']);
  });
});

describe('a wait report over random histories', () => {
  it('equals the sum of every run’s waits (Run.waits) clipped to the window', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`wait report property seed ${seed} (SEED=${seed} reproduces it)`);
    let cut = 0;
    let shared = 0;
    fc.assert(
      fc.property(
        historyOps(80),
        fc.array(
          fc.tuple(fc.double({ min: -0.1, max: 1.1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
          {
            minLength: 1,
            maxLength: 6,
          },
        ),
        fc.boolean(),
        (ops, windows, granularityRun) => {
          const s = randomHistory(ops, granularityRun);
          const nowMs = Date.parse(s.now);
          const span = Math.max(1000, nowMs - T0);
          const waits = s.runIds.map((id) => s.waits(id));
          for (const [start, length] of windows) {
            const fromMs = Math.round(T0 + start * span);
            const toMs = Math.max(fromMs + 1, Math.round(fromMs + length * span));
            const report = s.history.waitReport(fromMs, toMs, nowMs);
            const reference = referenceWaitReport(waits, fromMs, toMs, nowMs);
            expect({ runs: report.runs, waitSeconds: report.waitSeconds }).toEqual({
              runs: reference.runs,
              waitSeconds: reference.waitMs / 1000,
            });
            const mine = new Map(
              report.byLimit.map((l) => [
                [l.kind, l.key, l.value, l.pool, l.perUniqueValue].join('|'),
                { held: l.heldSeconds, sole: l.soleSeconds, runs: l.runs },
              ]),
            );
            const theirs = new Map(
              [...reference.byLimit].map(([id, l]) => [
                id,
                { held: l.heldMs / 1000, sole: l.soleMs / 1000, runs: l.runs },
              ]),
            );
            expect(mine).toEqual(theirs);
            if (report.byLimit.length > 1) shared++;
            if (report.waitSeconds > 0 && (fromMs > T0 || toMs < nowMs)) cut++;
            const held = report.byLimit.map((l) => l.heldSeconds);
            expect(held).toEqual([...held].sort((a, b) => b - a));
          }
        },
      ),
      { seed, numRuns: 150 },
    );
    // The histories exercised what they are for: waits cut by windows, several limits at once.
    console.log(`windows cutting a wait: ${cut}, with several limits: ${shared}`);
    expect(cut).toBeGreaterThan(10);
    expect(shared).toBeGreaterThan(0);
  });
});
