/**
 * replayWindow on the pure core: a replay with no change gives back the recorded waiting exactly
 * (random histories with claims, cancels and limit edits); a changed limit gives the waiting a
 * brute-force simulation written apart from the decider computes (random histories of run
 * limits); and hand-built histories with known answers.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { State } from '../../projections/state.js';
import type { ConfigChangeInput } from '../../src/domain/commands.js';
import type { LoggedEvent } from '../../src/domain/events.js';
import { replayWindow } from '../../src/insight/replay.js';
import { historyOps, randomHistory } from '../support/random-history.js';
import { cmd, replay, Scenario } from '../support/scenario.js';
import { type SimLimits, type SimRun, simulateWhatIf } from '../support/what-if-simulation.js';

const T0 = Date.parse('2024-01-01T00:00:00.000Z');

/**
 * Where a window starts and ends, as fractions of the history's span: a third of the cases take
 * the whole history, so that most windows hold some waiting; the rest cut through waits anywhere.
 */
const windowFractions = fc.oneof(
  fc.constant<[number, number]>([0, 1]),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
);
const at = (seconds: number) => T0 + seconds * 1000;

/** The inputs of a replay of [fromMs, toMs] over a scenario's log. */
function windowOf(s: Scenario, fromMs: number, toMs: number): { start: State; events: LoggedEvent[] } {
  const before = s.log.filter((e) => Date.parse(e.at) < fromMs);
  const inside = s.log.filter((e) => Date.parse(e.at) >= fromMs && Date.parse(e.at) <= toMs);
  return { start: replay(before), events: inside };
}

function replayOf(s: Scenario, fromMs: number, toMs: number, change: ConfigChangeInput) {
  return replayWindow({ ...windowOf(s, fromMs, toMs), change, fromMs, toMs, keepEvents: true });
}

const brief = (r: {
  waitSeconds: number;
  runs: number;
  byLimit: Array<{ kind: string; heldSeconds: number; soleSeconds: number }>;
}) => ({
  waitSeconds: r.waitSeconds,
  runs: r.runs,
  byLimit: r.byLimit.map((l) => `${l.kind} ${l.heldSeconds}/${l.soleSeconds}`),
});

describe('a replay of a hand-built history', () => {
  /** Max runs 1: a runs 0-60 s, b arrives at 10 s and runs 30 s once admitted. */
  function twoRuns(): Scenario {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('a'));
    s.advance(10).given(cmd.enqueue('b'));
    s.advance(50).given(cmd.finish('a'));
    expect(s.status('b')).toBe('STARTING');
    s.advance(30).given(cmd.finish('b'));
    return s;
  }

  it('with no change, waits as recorded', () => {
    const s = twoRuns();
    const replayed = replayOf(s, at(0), at(200), {});
    expect(brief(replayed)).toEqual({ waitSeconds: 50, runs: 1, byLimit: ['MAX_CONCURRENT_RUNS 50/50'] });
    expect(brief(replayed)).toEqual(brief(s.history.waitReport(at(0), at(200))));
  });

  it('with room for two, admits b on arrival and finishes it after its recorded 30 s', () => {
    const replayed = replayOf(twoRuns(), at(0), at(200), { maxConcurrentRuns: 2 });
    expect(brief(replayed)).toEqual({ waitSeconds: 0, runs: 0, byLimit: [] });
    const finished = replayed.events?.find((e) => e.type === 'RunFinished' && e.data.runId === 'b');
    expect(finished?.at).toBe(new Date(at(40)).toISOString());
  });

  it('with no room, both wait until the window ends', () => {
    // a arrives at 0 s, inside the window, so it is held too.
    const replayed = replayOf(twoRuns(), at(0), at(200), { maxConcurrentRuns: 0 });
    expect(brief(replayed)).toEqual({ waitSeconds: 200 + 190, runs: 2, byLimit: ['MAX_CONCURRENT_RUNS 390/390'] });
  });

  it('two edits of one pool at one instant replay as the later one', () => {
    // Read back as one change, the two edits must not name the pool twice (an invalid change).
    const s = new Scenario().given(cmd.granularity('RUN'), cmd.poolLimit('p1', 1), cmd.poolLimit('p1', 0));
    s.given(cmd.enqueue('a', { pools: ['p1'] }));
    s.advance(30).given(cmd.poolLimit('p1', 1));
    expect(s.status('a')).toBe('STARTING');
    const same = replayOf(s, at(0), at(100), {});
    expect(brief(same)).toEqual({ waitSeconds: 30, runs: 1, byLimit: ['POOL_LIMIT 30/30'] });
  });

  it('a run canceled while queued is canceled at the same instant', () => {
    const s = new Scenario().given(cmd.maxRuns(1), cmd.enqueue('a'), cmd.enqueue('b'));
    s.advance(20).given(cmd.terminate('b'));
    expect(s.status('b')).toBe('CANCELED');
    const same = replayOf(s, at(0), at(100), {});
    expect(brief(same)).toEqual({ waitSeconds: 20, runs: 1, byLimit: ['MAX_CONCURRENT_RUNS 20/20'] });
    const raised = replayOf(s, at(0), at(100), { maxConcurrentRuns: 5 });
    expect(raised.waitSeconds).toBe(0);
    const canceled = raised.events?.find((e) => e.type === 'RunFinished' && e.data.runId === 'b');
    expect(canceled).toMatchObject({ at: new Date(at(20)).toISOString(), data: { status: 'CANCELED' } });
  });
});

describe('a replay with no change', () => {
  it('gives back the recorded waiting exactly, on random histories', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`no-change replay property seed ${seed} (SEED=${seed} reproduces it)`);
    let waited = 0;
    fc.assert(
      fc.property(historyOps(60), windowFractions, fc.boolean(), (ops, [a, b], granularityRun) => {
        const s = randomHistory(ops, granularityRun);
        const nowMs = Date.parse(s.now);
        const span = Math.max(1000, nowMs - T0);
        const fromMs = Math.round(T0 + Math.min(a, b) * span);
        const toMs = Math.max(fromMs + 1, Math.round(T0 + Math.max(a, b) * span));
        const actual = s.history.waitReport(fromMs, toMs, nowMs);
        const replayed = replayOf(s, fromMs, Math.min(toMs, nowMs), {});
        if (actual.waitSeconds > 0) waited++;
        expect(brief(replayed)).toEqual(brief(actual));
      }),
      { seed, numRuns: 150 },
    );
    expect(waited).toBeGreaterThan(20);
  });
});

// ---------------------------------------------------------------------------------------------
// Against the brute-force simulation: run limits at RUN granularity, limits set before the
// first arrival, runs that finish or are canceled while queued.

type SimOp =
  | { kind: 'enqueue'; team: string | null; pools: string[]; priority: number }
  | { kind: 'finish' | 'cancel'; pick: number }
  | { kind: 'advance'; seconds: number };

const simOp: fc.Arbitrary<SimOp> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('enqueue' as const),
      team: fc.option(fc.constantFrom('a', 'b')),
      pools: fc.subarray(['p1', 'p2']),
      priority: fc.integer({ min: 0, max: 2 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('finish' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }) },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('advance' as const), seconds: fc.integer({ min: 0, max: 300 }) }),
  },
);

const simLimits = fc.record({
  maxConcurrentRuns: fc.integer({ min: -1, max: 3 }),
  team: fc.option(
    fc.record({
      value: fc.option(fc.constantFrom('a', 'b')),
      perValue: fc.boolean(),
      limit: fc.integer({ min: 0, max: 2 }),
    }),
  ),
  p1: fc.option(fc.integer({ min: 0, max: 2 })),
  defaultPoolLimit: fc.option(fc.integer({ min: 0, max: 2 })),
});
type Limits = typeof simLimits extends fc.Arbitrary<infer T> ? T : never;

function teamLimit(l: Limits) {
  if (!l.team) return [];
  const { value, perValue, limit } = l.team;
  if (perValue) return [{ key: 'team', applyLimitPerUniqueValue: true, limit }];
  return [value === null ? { key: 'team', limit } : { key: 'team', value, limit }];
}

function changeOf(l: Limits): ConfigChangeInput {
  return {
    maxConcurrentRuns: l.maxConcurrentRuns,
    tagConcurrencyLimits: teamLimit(l),
    poolLimits: [{ pool: 'p1', limit: l.p1 }],
    defaultPoolLimit: l.defaultPoolLimit,
  };
}

function simLimitsOf(l: Limits): SimLimits {
  const team = l.team;
  return {
    maxConcurrentRuns: l.maxConcurrentRuns,
    tagLimits: team
      ? [{ key: 'team', value: team.perValue ? null : team.value, perValue: team.perValue, limit: team.limit }]
      : [],
    poolLimits: new Map(l.p1 === null ? [] : [['p1', l.p1]]),
    defaultPoolLimit: l.defaultPoolLimit,
  };
}

/** The recorded arrivals and run lengths, as the simulation takes them. */
function simRunsOf(log: readonly LoggedEvent[]): SimRun[] {
  const runs = new Map<string, SimRun & { admittedMs: number | null }>();
  for (const e of log) {
    const ms = Date.parse(e.at);
    const order = Number(e.revision);
    if (e.type === 'RunEnqueued') {
      const pools = [...new Set(e.data.steps.flatMap((s) => (s.pool ? [s.pool] : [])))];
      runs.set(e.data.runId, {
        id: e.data.runId,
        arriveMs: ms,
        order,
        tags: e.data.tags,
        pools,
        priority: e.data.priority,
        length: null,
        canceled: null,
        admittedMs: null,
      });
    } else if (e.type === 'RunAdmitted') {
      (runs.get(e.data.runId) as { admittedMs: number | null }).admittedMs = ms;
    } else if (e.type === 'RunFinished') {
      const run = runs.get(e.data.runId) as SimRun & { admittedMs: number | null };
      if (run.admittedMs === null) run.canceled = { atMs: ms, order };
      else run.length = { ms: ms - run.admittedMs, order };
    }
  }
  return [...runs.values()];
}

describe('a replay under a change', () => {
  it('waits as a brute-force simulation of the same arrivals and run lengths, on random histories', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`what-if simulation property seed ${seed} (SEED=${seed} reproduces it)`);
    let differed = 0;
    fc.assert(
      fc.property(fc.array(simOp, { minLength: 5, maxLength: 60 }), simLimits, simLimits, (ops, recorded, changed) => {
        const s = new Scenario({ check: 'off' }).given(cmd.granularity('RUN'), {
          type: 'ChangeConcurrencyConfig',
          change: changeOf(recorded),
        });
        const inProgress = () => s.runIds.filter((id) => ['STARTING', 'STARTED'].includes(s.status(id)));
        const queued = () => s.runIds.filter((id) => s.status(id) === 'QUEUED');
        for (const o of ops) {
          if (o.kind === 'advance') s.advance(o.seconds);
          else if (o.kind === 'enqueue') {
            s.when(cmd.enqueue(null, { tags: o.team ? { team: o.team } : {}, pools: o.pools, priority: o.priority }));
          } else {
            const among = o.kind === 'finish' ? inProgress() : queued();
            const id = among[o.pick % Math.max(1, among.length)];
            if (id) s.when(o.kind === 'finish' ? cmd.finish(id) : cmd.terminate(id));
          }
        }
        const toMs = Date.parse(s.now);
        if (toMs === T0) return;
        const replayed = replayOf(s, T0, toMs, changeOf(changed));
        const sim = simulateWhatIf(simRunsOf(s.log), simLimitsOf(changed), T0, toMs);
        expect({ waitSeconds: replayed.waitSeconds, runs: replayed.runs }).toEqual({
          waitSeconds: sim.waitMs / 1000,
          runs: sim.runs,
        });
        const byName = (l: {
          kind: string;
          key: string | null;
          value: string | null;
          pool: string | null;
          perUniqueValue: boolean;
        }) =>
          l.kind === 'MAX_CONCURRENT_RUNS'
            ? 'runs'
            : l.kind === 'POOL_LIMIT'
              ? `pool ${l.pool}`
              : `tag ${l.key}${l.value !== null ? `=${l.value}` : ''}${l.perUniqueValue ? ' per value' : ''}`;
        expect(
          Object.fromEntries(replayed.byLimit.map((l) => [byName(l), [l.heldSeconds, l.soleSeconds, l.runs]])),
        ).toEqual(
          Object.fromEntries(
            [...sim.shares].map(([name, sh]) => [name, [sh.heldMs / 1000, sh.soleMs / 1000, sh.runs.size]]),
          ),
        );
        if (replayed.waitSeconds !== s.history.waitReport(T0, toMs).waitSeconds) differed++;
      }),
      { seed, numRuns: 200 },
    );
    // The changes changed something often enough for the comparison to mean something.
    expect(differed).toBeGreaterThan(20);
  });
});
