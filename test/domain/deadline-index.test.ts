/**
 * The deadline index against a brute-force reference: after random sequences of enqueues,
 * admissions, starts, heartbeats, claims, cancellations, finishes, timeout edits, clock moves
 * and checkpoint round trips, the next wake-up and the runs ExpireDeadlines ends are those
 * found by computing every in-progress run's deadlines again (what the index replaces), and
 * the index a replay of the log builds is the one the live fold built.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deserializeState, serializeState } from '../../projections/serialize.js';
import type { RunRecord, State } from '../../projections/state.js';
import { allotmentEndOf, deadlinesOf } from '../../src/domain/deadlines.js';
import { nextDeadline, nextWakeUp } from '../../src/domain/decide.js';
import { cmd, replay, Scenario } from '../support/scenario.js';
import { slotCmd } from '../support/slots.js';

const SEED = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** The earliest deadline and allotment end, by looking at every run in progress. */
function bruteWakeUp(state: State): { deadline: number | null; wakeUp: number | null } {
  let deadline = Number.POSITIVE_INFINITY;
  let wakeUp = Number.POSITIVE_INFINITY;
  for (const runId of state.inProgress) {
    const run = state.runs.get(runId) as RunRecord;
    const first = deadlinesOf(run, state.monitoring)[0]?.at ?? Number.POSITIVE_INFINITY;
    const allotment =
      allotmentEndOf(run, state.config.rootStepHold.startedRunAllotmentSeconds) ?? Number.POSITIVE_INFINITY;
    deadline = Math.min(deadline, first);
    wakeUp = Math.min(wakeUp, first, allotment);
  }
  const finite = (n: number) => (Number.isFinite(n) ? n : null);
  return { deadline: finite(deadline), wakeUp: finite(wakeUp) };
}

/** The runs ExpireDeadlines must end or whose allotment it must end at `now`, in admission order. */
function bruteDue(state: State, now: number): string[] {
  const allotment = state.config.rootStepHold.startedRunAllotmentSeconds;
  return [...state.inProgress].filter((runId) => {
    const run = state.runs.get(runId) as RunRecord;
    const expired = deadlinesOf(run, state.monitoring).some((d) => d.at <= now);
    return expired || (allotmentEndOf(run, allotment) ?? Number.POSITIVE_INFINITY) <= now;
  });
}

type Op =
  | { kind: 'enqueue'; lease: number | null; maxRuntime: string | null; pooled: boolean }
  | { kind: 'start' | 'heartbeat' | 'cancel' | 'finish' | 'claim'; pick: number }
  | { kind: 'advance'; seconds: number }
  | { kind: 'monitoring'; start: number; cancel: number; maxRuntime: number | null }
  | { kind: 'maxRuns'; limit: number }
  | { kind: 'expire' }
  | { kind: 'checkpoint' };

const runOp = (kind: 'start' | 'heartbeat' | 'cancel' | 'finish' | 'claim') =>
  fc.record({ kind: fc.constant(kind), pick: fc.nat(20) });

/** Weighted towards the run's own events; a checkpoint (which rebuilds the index) only now and then. */
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('enqueue' as const),
      lease: fc.constantFrom(null, 30, 90),
      maxRuntime: fc.constantFrom(null, '50', '400'),
      pooled: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: runOp('start') },
  { weight: 4, arbitrary: runOp('heartbeat') },
  { weight: 1, arbitrary: runOp('cancel') },
  { weight: 2, arbitrary: runOp('finish') },
  { weight: 2, arbitrary: runOp('claim') },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('advance' as const), seconds: fc.integer({ min: 1, max: 40 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('monitoring' as const),
      start: fc.constantFrom(10, 60, 180),
      cancel: fc.constantFrom(10, 180),
      maxRuntime: fc.constantFrom(null, 20, 300),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('maxRuns' as const), limit: fc.integer({ min: 0, max: 6 }) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'expire' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'checkpoint' as const }) },
);

function pickRun(s: Scenario, pick: number, statuses: string[]): string | null {
  const ids = [...s.state.runs.values()].filter((r) => statuses.includes(r.status)).map((r) => r.id);
  return ids.length === 0 ? null : (ids[pick % ids.length] as string);
}

function apply(s: Scenario, o: Op, n: number): void {
  switch (o.kind) {
    case 'enqueue': {
      const tags: Record<string, string> = o.maxRuntime === null ? {} : { 'dagster/max_runtime': o.maxRuntime };
      s.when(cmd.enqueue(`r${n}`, { tags, leaseSeconds: o.lease, steps: o.pooled ? ['root@db'] : [] }));
      return;
    }
    case 'start': {
      const runId = pickRun(s, o.pick, ['STARTING']);
      if (runId) s.when(cmd.start(runId));
      return;
    }
    case 'heartbeat': {
      const runId = pickRun(s, o.pick, ['STARTING', 'STARTED', 'CANCELING']);
      if (runId) s.when(slotCmd.heartbeat(runId));
      return;
    }
    case 'cancel': {
      const runId = pickRun(s, o.pick, ['STARTING', 'STARTED']);
      if (runId) s.when(cmd.terminate(runId));
      return;
    }
    case 'finish': {
      const runId = pickRun(s, o.pick, ['STARTING', 'STARTED', 'CANCELING']);
      if (runId) s.when(cmd.finish(runId));
      return;
    }
    case 'claim': {
      const runId = pickRun(s, o.pick, ['STARTED']);
      if (runId && (s.state.runs.get(runId) as RunRecord).promisedSteps.has('root')) {
        s.when(slotCmd.claim(runId, 'root'));
      }
      return;
    }
    case 'advance':
      s.advance(o.seconds);
      return;
    case 'monitoring':
      s.when(slotCmd.monitoring(o.start, o.cancel, o.maxRuntime));
      return;
    case 'maxRuns':
      s.when(cmd.maxRuns(o.limit));
      return;
    case 'expire': {
      const now = Date.parse(s.now);
      const due = bruteDue(s.state, now);
      const events = s.when(slotCmd.expire());
      const of = (type: string) =>
        events.flatMap((e) => (e.type === type ? [(e.data as { runId: string }).runId] : []));
      const allotmentsEnded = of('RootStepAllotmentEnded');
      const finished = of('RunFinished');
      // Each due run appears once; nothing else is ended. The decision records the allotments
      // that end first, then the runs that end, each in admission order.
      expect([...allotmentsEnded, ...finished].sort()).toEqual([...due].sort());
      expect(allotmentsEnded).toEqual(due.filter((id) => allotmentsEnded.includes(id)));
      expect(finished).toEqual(due.filter((id) => finished.includes(id)));
      return;
    }
    case 'checkpoint':
      s.state = deserializeState(serializeState(s.state));
      return;
  }
}

describe('the deadline index', () => {
  it(`given random runs starting, beating, claiming, cancelling and finishing in any order, then the next wake-up and the runs expired are the brute-force ones, and a replay builds the same index`, () => {
    console.log(`deadline index property: seed ${SEED} (FC_SEED=${SEED} reproduces it)`);
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 80 }), (ops) => {
        const s = new Scenario({ check: 'off' });
        s.given(cmd.maxRuns(3), cmd.poolLimit('db', 1));
        ops.forEach((o, n) => {
          apply(s, o, n);
          const brute = bruteWakeUp(s.state);
          expect(nextWakeUp(s.state)).toBe(brute.wakeUp);
          expect(nextDeadline(s.state)?.at ?? null).toBe(brute.deadline);
        });
        expect(replay(s.log).deadlines.view()).toEqual(s.state.deadlines.view());
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('given thousands of runs in progress, when one timeout is edited, then the next deadline moves with it without any run being re-indexed', () => {
    const s = new Scenario({ check: 'off' });
    s.given(cmd.maxRuns(5000));
    for (let i = 0; i < 3000; i++) {
      s.when(cmd.enqueue(`r${i}`));
      s.advance(0.01);
    }
    const admitted = Date.parse(s.state.runs.get('r0')?.admittedAt as string);
    expect(nextWakeUp(s.state)).toBe(admitted + 180_000);
    const before = s.state.deadlines.view();
    s.when(slotCmd.monitoring(30, 180));
    expect(s.state.deadlines.view()).toEqual(before);
    expect(nextWakeUp(s.state)).toBe(admitted + 30_000);
    // Half of them were admitted more than 30 s ago 15 s later: the index lists those, in admission order.
    s.advance(15);
    const due = s.state.deadlines.due(Date.parse(s.now), { ...s.state.monitoring, startedRunAllotmentSeconds: 5 });
    expect(due.length).toBeGreaterThan(1000);
    expect(due).toEqual(bruteDue(s.state, Date.parse(s.now)));
  });
});
