/**
 * simulateChange: what a config change would do now, without appending anything. Its answer
 * must be what the change then does when it is made (decide ChangeConcurrencyConfig + evolve):
 * the same runs admitted, in the same order, and every run left queued held by the same limits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import type { RunRecord, State } from '../../projections/state.js';
import { currentHolds } from '../../src/domain/admission.js';
import type { Command, ConfigChangeInput } from '../../src/domain/commands.js';
import { sameConstraintSet } from '../../src/domain/constraints.js';
import { decide } from '../../src/domain/decide.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { simulateChange } from '../../src/domain/simulate.js';
import { configChange, Lane, laneAfter, opArbitrary, POOLS, setupCommands, tagLimits } from '../support/audit.js';
import { cmd, fingerprint, recordedHolds } from '../support/scenario.js';

const history = fc.array(opArbitrary(), { minLength: 1, maxLength: 40 });
const context = (lane: Lane) => ({ now: lane.now, newRunId: 'simulation' });
const admittedIds = (events: readonly DomainEvent[]) =>
  events.flatMap((e) => (e.type === 'RunAdmitted' ? [e.data.runId] : []));
const queuedWithHolds = (state: State) =>
  [...state.queue.inOrder()].map((id) => ({ id, holds: currentHolds(state, state.runs.get(id) as RunRecord) }));

describe('simulateChange', () => {
  it('given a random state and a random change, when the change is simulated and then made, then the simulation appended nothing and foretold the admitted runs and every remaining hold', () => {
    fc.assert(
      fc.property(setupCommands, history, configChange, (setup, ops, change) => {
        const lane = laneAfter(setup, ops);
        const before = serializeState(lane.state);
        const fingerprintBefore = fingerprint(lane.state);
        const simulation = simulateChange(lane.state, change, context(lane));

        // Nothing appended, nothing changed.
        expect(serializeState(lane.state)).toBe(before);
        expect(fingerprint(lane.state)).toBe(fingerprintBefore);
        // Runs are shown as they are now (still QUEUED), the state's own records.
        for (const run of simulation.wouldAdmit) {
          expect(run).toBe(lane.state.runs.get(run.id));
          expect(run.status).toBe('QUEUED');
        }

        const outcome = lane.run({ type: 'ChangeConcurrencyConfig', change });
        if (!('events' in outcome)) throw new Error(`a valid change was refused: ${outcome.refused}`);
        expect(simulation.wouldAdmit.map((r) => r.id)).toEqual(admittedIds(outcome.events));
        for (const id of admittedIds(outcome.events)) expect(lane.state.runs.get(id)?.status).toBe('STARTING');
        expect(simulation.stillQueued.map(({ run, holds }) => ({ id: run.id, holds }))).toEqual(
          queuedWithHolds(lane.state),
        );
        expect(simulation.config).toEqual(lane.state.config);
        // What the log then records as holding each run is the same set of limits.
        for (const { run, holds } of simulation.stillQueued) {
          const recorded = recordedHolds(lane.state, lane.state.runs.get(run.id) as RunRecord);
          expect(sameConstraintSet(recorded, holds), `run ${run.id}`).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('given a random state and a change of one field, when it is simulated, decided and compared with the single mutation, then all three agree', () => {
    const pair = (change: ConfigChangeInput, command: Command) => ({ change, command });
    const single = fc.oneof(
      fc
        .integer({ min: -1, max: 4 })
        .map((limit) => pair({ maxConcurrentRuns: limit }, { type: 'SetMaxConcurrentRuns', limit })),
      tagLimits.map((limits) => pair({ tagConcurrencyLimits: limits }, { type: 'SetTagConcurrencyLimits', limits })),
      fc
        .constantFrom('OP', 'RUN')
        .map((granularity) => pair({ poolGranularity: granularity }, { type: 'SetPoolGranularity', granularity })),
      fc
        .option(fc.integer({ min: 0, max: 3 }), { nil: null })
        .map((limit) => pair({ defaultPoolLimit: limit }, { type: 'SetDefaultPoolLimit', limit })),
      fc
        .tuple(fc.constantFrom(...POOLS), fc.integer({ min: 0, max: 3 }))
        .map(([pool, limit]) => pair({ poolLimits: [{ pool, limit }] }, { type: 'SetPoolLimit', pool, limit })),
      fc
        .constantFrom(...POOLS)
        .map((pool) => pair({ poolLimits: [{ pool, limit: null }] }, { type: 'DeletePoolLimit', pool })),
    );
    fc.assert(
      fc.property(setupCommands, history, single, (setup, ops, { change, command }) => {
        const lane = laneAfter(setup, ops);
        const viaChange = decide({ type: 'ChangeConcurrencyConfig', change }, lane.state, context(lane));
        const viaMutation = decide(command, lane.state, context(lane));
        expect(viaChange).toEqual(viaMutation);
        const simulation = simulateChange(lane.state, change, context(lane));
        expect(simulation.wouldAdmit.map((r) => r.id)).toEqual(admittedIds(viaMutation));
      }),
      { numRuns: 200 },
    );
  });

  it('given edits that only together let a run through, when they are simulated and made as one change, then one pass admits what the whole new config allows', () => {
    const lane = new Lane();
    lane.run(cmd.granularity('RUN'));
    lane.run(cmd.maxRuns(0));
    lane.run(cmd.poolLimit('db', 0));
    lane.run(cmd.enqueue('a', { pools: ['db'] }));
    lane.run(cmd.enqueue('b'));
    const change: ConfigChangeInput = { maxConcurrentRuns: 1, poolLimits: [{ pool: 'db', limit: 1 }] };
    const simulation = simulateChange(lane.state, change, context(lane));
    expect(simulation.wouldAdmit.map((r) => r.id)).toEqual(['a']);
    expect(simulation.stillQueued.map(({ run, holds }) => [run.id, holds.map((h) => h.message)])).toEqual([
      ['b', ['max concurrent runs: 1 of 1 runs in progress']],
    ]);
    const outcome = lane.run({ type: 'ChangeConcurrencyConfig', change });
    expect('events' in outcome && outcome.events.map((e) => e.type)).toEqual([
      'MaxConcurrentRunsSet',
      'PoolLimitSet',
      'RunAdmitted',
      'LimitStatesChanged',
    ]);
    expect(lane.state.runs.get('a')?.status).toBe('STARTING');
    // b is still held by the run limit alone, as before: nothing about b is appended.
    expect('events' in outcome && outcome.events.some((e) => 'runId' in e.data && e.data.runId === 'b')).toBe(false);
  });

  it('given a change that changes nothing (empty, or the config as it is), when it is simulated, then nothing would be admitted and every queued run keeps its holds', () => {
    const lane = new Lane();
    lane.run(cmd.maxRuns(1));
    lane.run(cmd.tagLimits({ key: 'team', limit: 1 }));
    lane.run(cmd.enqueue('a', { tags: { team: 'x' } }));
    lane.run(cmd.enqueue('b', { tags: { team: 'x' } }));
    lane.run(cmd.enqueue('c'));
    for (const change of [{}, { maxConcurrentRuns: 1, tagConcurrencyLimits: [{ key: 'team', limit: 1 }] }]) {
      expect(decide({ type: 'ChangeConcurrencyConfig', change }, lane.state, context(lane))).toEqual([]);
      const simulation = simulateChange(lane.state, change, context(lane));
      expect(simulation.wouldAdmit).toEqual([]);
      expect(simulation.stillQueued.map(({ run, holds }) => ({ id: run.id, holds }))).toEqual(
        queuedWithHolds(lane.state),
      );
      expect(simulation.stillQueued.map(({ run }) => run.id)).toEqual(['b', 'c']);
    }
  });

  describe('invalid changes', () => {
    const cases: Array<[string, ConfigChangeInput, string]> = [
      ['max concurrent runs below -1', { maxConcurrentRuns: -2 }, 'change.maxConcurrentRuns'],
      ['max concurrent runs not an integer', { maxConcurrentRuns: 1.5 }, 'change.maxConcurrentRuns'],
      [
        'a negative tag limit',
        { tagConcurrencyLimits: [{ key: 'team', limit: -1 }] },
        'change.tagConcurrencyLimits.0.limit',
      ],
      ['an empty tag key', { tagConcurrencyLimits: [{ key: '', limit: 1 }] }, 'change.tagConcurrencyLimits.0.key'],
      [
        'the same tag limit twice',
        {
          tagConcurrencyLimits: [
            { key: 'team', limit: 1 },
            { key: 'team', limit: 2 },
          ],
        },
        'change.tagConcurrencyLimits.1',
      ],
      [
        'a value with a limit per unique value',
        { tagConcurrencyLimits: [{ key: 'team', value: 'a', applyLimitPerUniqueValue: true, limit: 1 }] },
        'change.tagConcurrencyLimits.0.value',
      ],
      ['an unknown granularity', { poolGranularity: 'STEP' }, 'change.poolGranularity'],
      ['a negative default pool limit', { defaultPoolLimit: -1 }, 'change.defaultPoolLimit'],
      ['a negative pool limit', { poolLimits: [{ pool: 'db', limit: -1 }] }, 'change.poolLimits.0.limit'],
      [
        'a pool limit too large, second in the list',
        {
          poolLimits: [
            { pool: 'db', limit: 1 },
            { pool: 'gpu', limit: 1_000_001 },
          ],
        },
        'change.poolLimits.1.limit',
      ],
      ['an empty pool name', { poolLimits: [{ pool: '', limit: 1 }] }, 'change.poolLimits.0.pool'],
      [
        'a pool listed twice',
        {
          poolLimits: [
            { pool: 'db', limit: 1 },
            { pool: 'db', limit: null },
          ],
        },
        'change.poolLimits.1.pool',
      ],
      [
        'a valid field beside an invalid one',
        { maxConcurrentRuns: 5, poolLimits: [{ pool: 'db', limit: -1 }] },
        'change.poolLimits.0.limit',
      ],
    ];

    it.each(cases)(
      'given %s (%j), when it is simulated or made, then an InvalidInputError names %s and nothing changes',
      (_what, change, field) => {
        const lane = new Lane();
        lane.run(cmd.maxRuns(0));
        lane.run(cmd.enqueue('a', { pools: ['db'] }));
        const before = serializeState(lane.state);
        const refusal = (work: () => unknown): InvalidInputError => {
          try {
            work();
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidInputError);
            return error as InvalidInputError;
          }
          throw new Error(`${JSON.stringify(change)} was accepted`);
        };
        const simulated = refusal(() => simulateChange(lane.state, change, context(lane)));
        expect(simulated.field).toBe(field);
        expect(simulated.message.startsWith(`${field}: `)).toBe(true);
        const decided = refusal(() => decide({ type: 'ChangeConcurrencyConfig', change }, lane.state, context(lane)));
        expect(decided.field).toBe(field);
        expect(decided.message).toBe(simulated.message);
        expect(serializeState(lane.state)).toBe(before);
      },
    );
  });
});
