/**
 * Checkpoint serialization: deserializeState(serializeState(s)) is the same state. It
 * serializes identically, its derived indexes (counts, queue, per-key and per-pool sets) are
 * what the fold built, readers see the same, and it decides the same next commands the same
 * way, event for event.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CheckpointFormatError, deserializeState, STATE_FORMAT, serializeState } from '../../projections/serialize.js';
import { initialState, type State } from '../../projections/state.js';
import type { Command } from '../../src/domain/commands.js';
import { decide, nextDeadline } from '../../src/domain/decide.js';
import { Lane, laneAfter, type Op, opArbitrary, setupCommands, views } from '../support/audit.js';
import { cmd, fingerprint, invariantProblems } from '../support/scenario.js';

const roundTrip = (state: State): State => deserializeState(serializeState(state));

const history = fc.array(opArbitrary(), { minLength: 1, maxLength: 40 });

describe('serializeState / deserializeState', () => {
  it('given the empty state, when it makes the round trip, then it is the empty state', () => {
    const copy = roundTrip(initialState());
    expect(serializeState(copy)).toBe(serializeState(initialState()));
    expect(fingerprint(copy)).toBe(fingerprint(initialState()));
    expect(views(copy)).toEqual(views(initialState()));
  });

  it('given a random history, when its state makes the round trip, then the copy serializes identically and every index is rebuilt as the fold built it', () => {
    fc.assert(
      fc.property(setupCommands, history, (setup, ops) => {
        const lane = laneAfter(setup, ops);
        const text = serializeState(lane.state);
        const copy = deserializeState(text);
        expect(serializeState(copy)).toBe(text);
        // Counts, queue order, queuedByKey, activeRunsByPool, held: compared as sorted sets.
        expect(fingerprint(copy)).toBe(fingerprint(lane.state));
        expect(invariantProblems(lane.state), 'original').toEqual([]);
        expect(invariantProblems(copy)).toEqual([]);
        expect(copy.held).toEqual(lane.state.held);
        expect(copy.recentlyFinished).toEqual(lane.state.recentlyFinished);
        expect(copy.counts).toEqual(lane.state.counts);
        expect(nextDeadline(copy)?.at).toEqual(nextDeadline(lane.state)?.at);
        // The copy shares nothing with the original.
        const before = serializeState(lane.state);
        for (const run of copy.runs.values()) {
          run.tags.push({ key: 'mutated', value: 'yes' });
        }
        for (const full of copy.held.values()) for (const limit of full) limit.message = 'mutated';
        for (const claim of copy.claims.values()) claim.reasons = [];
        expect(serializeState(lane.state)).toBe(before);
      }),
      { numRuns: 150 },
    );
  });

  it('given a random history, when its state makes the round trip, then the copy decides every next command as the original does, event for event', () => {
    // First, the shape that once made a copy decide differently: runs admitted out of enqueue
    // order that time out together.
    const known: Array<[Command[], Op[], Op[]]> = [
      [
        [cmd.granularity('RUN')],
        [
          { kind: 'maxRuns', limit: 0 },
          {
            kind: 'enqueue',
            team: null,
            env: null,
            priority: null,
            steps: [{ pool: 'db', priority: 0 }],
            maxSteps: null,
          },
          { kind: 'enqueue', team: null, env: null, priority: 5, steps: [{ pool: 'db', priority: 0 }], maxSteps: null },
          { kind: 'maxRuns', limit: 3 },
        ],
        [{ kind: 'tick', seconds: 200 }, { kind: 'expire' }],
      ],
      // Seed -923019731: counters created in one order (team=b, then team=a) and rebuilt by the
      // round trip in another; an edit over both listed them in a LimitStatesChanged by map order.
      [
        [
          { type: 'SetMaxConcurrentRuns', limit: 1 },
          { type: 'SetTagConcurrencyLimits', limits: [{ key: 'env', value: 'prod', limit: 0 }] },
          { type: 'SetPoolGranularity', granularity: 'OP' },
          { type: 'SetDefaultPoolLimit', limit: null },
          { type: 'SetPoolLimit', pool: 'db', limit: 1 },
        ],
        [
          { kind: 'enqueue', team: 'b', env: 'prod', priority: null, steps: [], maxSteps: null },
          { kind: 'enqueue', team: 'a', env: null, priority: null, steps: [], maxSteps: null },
          { kind: 'change', change: { maxConcurrentRuns: 2, tagConcurrencyLimits: [] } },
        ],
        [
          {
            kind: 'change',
            change: { tagConcurrencyLimits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 0 }] },
          },
          { kind: 'enqueue', team: null, env: null, priority: null, steps: [], maxSteps: null },
        ],
      ],
    ];
    fc.assert(
      fc.property(
        setupCommands,
        history,
        fc.array(opArbitrary(), { minLength: 1, maxLength: 25 }),
        (setup, ops, next) => {
          const original = laneAfter(setup, ops);
          const copy = original.fork(roundTrip(original.state));
          for (const [i, op] of next.entries()) {
            const expected = original.play(op);
            const actual = copy.play(op);
            expect(actual, `next command ${i}: ${JSON.stringify(op)}`).toEqual(expected);
            expect(serializeState(copy.state), `after next command ${i}`).toBe(serializeState(original.state));
          }
          expect(views(copy.state)).toEqual(views(original.state));
        },
      ),
      { numRuns: 150, examples: known },
    );
  });

  it('given two runs admitted out of enqueue order that time out together, when the state made the round trip, then the copy finishes them in the same order as the original', () => {
    const lane = new Lane();
    lane.run(cmd.maxRuns(0));
    lane.run(cmd.enqueue('a'));
    lane.run(cmd.enqueue('b', { priority: 5 }));
    lane.run(cmd.maxRuns(5)); // admits b, then a, at the same instant
    expect(lane.state.runs.get('b')?.admittedAt).toBe(lane.state.runs.get('a')?.admittedAt);
    const copy = lane.fork(roundTrip(lane.state));
    lane.advance(200);
    copy.advance(200);
    const expire: Command = { type: 'ExpireDeadlines' };
    const original = lane.run(expire);
    expect(original).toMatchObject({
      events: [
        { type: 'RunFinished', data: { runId: 'b', status: 'FAILURE' } },
        { type: 'RunFinished', data: { runId: 'a', status: 'FAILURE' } },
      ],
    });
    // A server restarted from a checkpoint would append these in another order than one that replayed.
    expect(copy.run(expire)).toEqual(original);
  });

  it('given runs admitted out of enqueue order at RUN granularity, when the state made the round trip, then the pool lists its active runs in the same order', () => {
    const lane = new Lane();
    lane.run(cmd.granularity('RUN'));
    lane.run(cmd.maxRuns(0));
    lane.run(cmd.enqueue('a', { pools: ['db'] }));
    lane.run(cmd.enqueue('b', { pools: ['db'], priority: 5 }));
    lane.run(cmd.maxRuns(5));
    expect(views(lane.state).pools[0]?.activeRunIds).toEqual(['b', 'a']);
    expect(views(roundTrip(lane.state)).pools).toEqual(views(lane.state).pools);
  });

  it('given a state, when it is serialized, then the text names the format, and text of another format is refused', () => {
    const lane = new Lane();
    lane.run(cmd.enqueue('a'));
    const json = JSON.parse(serializeState(lane.state));
    expect(json.format).toBe(STATE_FORMAT);
    expect(json.revision).toBe('1');
    expect(() => deserializeState(JSON.stringify({ ...json, format: STATE_FORMAT + 1 }))).toThrow(
      CheckpointFormatError,
    );
    expect(() => deserializeState(JSON.stringify({ ...json, format: STATE_FORMAT + 1 }))).toThrow(
      `checkpoint format ${STATE_FORMAT + 1}, this server reads ${STATE_FORMAT}`,
    );
  });

  it('given a state with claims granted, waiting and released, when it makes the round trip, then the next release grants the same waiting claim', () => {
    const lane = new Lane();
    // Without the root-step hold, so that b is admitted and waits for a slot while a holds db.
    lane.run({ type: 'ChangeConcurrencyConfig', change: { rootStepHold: { enabled: false } } });
    lane.run(cmd.poolLimit('db', 1));
    lane.run(cmd.enqueue('a', { steps: ['x@db', 'y@db'] }));
    lane.run(cmd.enqueue('b', { steps: ['x@db'], priority: 1 }));
    lane.run({ type: 'ClaimStepSlot', runId: 'a', stepKey: 'x' });
    lane.run({ type: 'ClaimStepSlot', runId: 'a', stepKey: 'y' });
    lane.run({ type: 'ClaimStepSlot', runId: 'b', stepKey: 'x' });
    const copy = lane.fork(roundTrip(lane.state));
    const release: Command = { type: 'ReleaseStepSlot', runId: 'a', stepKey: 'x' };
    const expected = lane.run(release);
    expect(expected).toMatchObject({
      events: [{ type: 'StepSlotReleased' }, { type: 'StepSlotGranted', data: { runId: 'b', stepKey: 'x' } }],
    });
    expect(copy.run(release)).toEqual(expected);
    expect(decide(release, copy.state, { now: copy.now, newRunId: 'n' })).toEqual([]);
  });
});
