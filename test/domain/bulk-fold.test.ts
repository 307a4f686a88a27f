/**
 * The replay fold (BulkFold) that Sluice.open uses: it skips the indexes derived from the runs
 * while it folds and rebuilds them once at the end. Whatever the log and wherever the replay
 * starts (from nothing, or from a state folded event by event as a checkpoint holds it), the
 * state it ends with is the one `evolve` of every event builds: it serializes identically, every
 * index and deadline is the same, readers see the same, and it decides the next commands the
 * same way, event for event.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BulkFold, evolve } from '../../projections/evolve.js';
import { serializeState } from '../../projections/serialize.js';
import { initialState, type State } from '../../projections/state.js';
import { nextDeadline } from '../../src/domain/decide.js';
import type { LoggedEvent } from '../../src/domain/events.js';
import { type Lane, laneAfter, opArbitrary, setupCommands, views } from '../support/audit.js';
import { cmd, fingerprint, invariantProblems, readBack } from '../support/scenario.js';

const history = fc.array(opArbitrary(), { minLength: 1, maxLength: 40 });

/** Folds events[0, split) one by one, then the rest with BulkFold. */
function bulkReplay(events: readonly LoggedEvent[], split: number): State {
  const state = initialState();
  for (const event of events.slice(0, split)) evolve(state, readBack(event));
  const bulk = new BulkFold(state);
  for (const event of events.slice(split)) bulk.add(readBack(event));
  return bulk.finish();
}

function expectSameState(actual: State, expected: State): void {
  expect(serializeState(actual)).toBe(serializeState(expected));
  expect(fingerprint(actual)).toBe(fingerprint(expected));
  expect(invariantProblems(actual)).toEqual([]);
  expect(actual.counts).toEqual(expected.counts);
  expect(actual.promisedSlots).toEqual(expected.promisedSlots);
  expect([...actual.queue.inOrder()]).toEqual([...expected.queue.inOrder()]);
  expect(actual.queuedByKey).toEqual(expected.queuedByKey);
  expect(actual.deadlines.view()).toEqual(expected.deadlines.view());
  expect(nextDeadline(actual)).toEqual(nextDeadline(expected));
  expect(views(actual)).toEqual(views(expected));
}

/** A lane whose state is `state`, to play the same next operations on both. */
const forkWith = (lane: Lane, state: State): Lane => lane.fork(state);

describe('BulkFold: a replay that rebuilds the derived indexes once', () => {
  it('given a random history, when its log is replayed in bulk from any position, then the state is the one the fold built event by event', () => {
    fc.assert(
      fc.property(setupCommands, history, fc.double({ min: 0, max: 1, noNaN: true }), (setup, ops, at) => {
        const lane = laneAfter(setup, ops);
        const split = Math.floor(at * lane.log.length);
        expectSameState(bulkReplay(lane.log, split), lane.state);
      }),
      { numRuns: 200 },
    );
  });

  it('given a random history replayed in bulk, when the same next commands are decided on both states, then they record the same events and stay the same', () => {
    fc.assert(
      fc.property(
        setupCommands,
        history,
        fc.array(opArbitrary(), { minLength: 1, maxLength: 25 }),
        (setup, ops, next) => {
          const original = laneAfter(setup, ops);
          const copy = forkWith(original, bulkReplay(original.log, 0));
          for (const [i, op] of next.entries()) {
            expect(copy.play(op), `next command ${i}: ${JSON.stringify(op)}`).toEqual(original.play(op));
            expect(serializeState(copy.state), `after next command ${i}`).toBe(serializeState(original.state));
          }
          expectSameState(copy.state, original.state);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('given runs in progress when the clock stepped forward, when the log is replayed in bulk, then their deadlines are moved as the fold moves them and the state is at the step', () => {
    const lane = laneAfter(
      [cmd.maxRuns(2)],
      [
        { kind: 'enqueue', team: null, env: null, priority: null, steps: [], maxSteps: null },
        { kind: 'enqueue', team: null, env: null, priority: null, steps: [], maxSteps: null },
        { kind: 'enqueue', team: null, env: null, priority: null, steps: [], maxSteps: null },
        { kind: 'start', pick: 0 },
      ],
    );
    const step = {
      type: 'ClockSteppedForward',
      data: { clockAt: '2024-06-01T02:00:00.000Z', byMs: 3_600_000 },
      revision: lane.state.revision + 1n,
      at: '2024-06-01T02:00:00.000Z',
      actor: 'clock',
    } as LoggedEvent;
    const log = [...lane.log, step];
    const live = initialState();
    for (const event of log) evolve(live, readBack(event));
    expect(live.revision).toBe(step.revision);
    expect([...live.runs.values()].filter((run) => run.clockShiftMs === 3_600_000)).toHaveLength(2);
    expectSameState(bulkReplay(log, 0), live);
    expectSameState(bulkReplay(log, log.length - 1), live);
  });
});
