/**
 * Pool limit edits cost what they change: the decider reads the edited limits through an
 * overlay on the state's map, and the fold updates that map in place. These tests prove the
 * overlay reads as a copied map would, that the decider leaves the state's map as it was, and
 * that no other state (a checkpoint's copy, a simulation, a replay) shares the live map.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evolve } from '../../projections/evolve.js';
import { deserializeState, serializeState } from '../../projections/serialize.js';
import { initialState, type State } from '../../projections/state.js';
import type { Command } from '../../src/domain/commands.js';
import { decide } from '../../src/domain/decide.js';
import type { DomainEvent, LoggedEvent } from '../../src/domain/events.js';
import { MapOverlay } from '../../src/domain/map-overlay.js';
import { simulateChange } from '../../src/domain/simulate.js';

const key = fc.constantFrom<string>('a', 'b', 'c', 'd', 'e', 'f');
type MapOp = { set: string; value: number } | { delete: string };
const mapOp: fc.Arbitrary<MapOp> = fc.oneof(
  fc.record({ set: key, value: fc.integer({ min: 0, max: 9 }) }),
  fc.record({ delete: key }),
);

/** One pool limit command: set (limit) or delete (null). */
const poolEdit = fc.record({ pool: key, limit: fc.option(fc.integer({ min: 0, max: 9 }), { nil: null }) });
type PoolEdit = { pool: string; limit: number | null };
const commandOf = ({ pool, limit }: PoolEdit): Command =>
  limit === null ? { type: 'DeletePoolLimit', pool } : { type: 'SetPoolLimit', pool, limit };

/** Decides a command on a state and folds its events in, as the server does. */
function exec(state: State, command: Command): DomainEvent[] {
  const at = new Date(Date.parse('2024-01-01T00:00:00.000Z') + Number(state.revision + 1n)).toISOString();
  const events = decide(command, state, { now: at, newRunId: `gen-${state.revision}` });
  for (const event of events) {
    evolve(state, { ...event, revision: state.revision + 1n, at, actor: 'test' } as LoggedEvent);
  }
  return events;
}

const entries = (map: ReadonlyMap<string, number>) => [...map].sort(([a], [b]) => (a < b ? -1 : 1));

describe('MapOverlay', () => {
  it('given a random base and random edits, when read, then it answers as a copy of the base with the same edits, and the base is unchanged', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(key, fc.integer()), { selector: ([k]) => k }),
        fc.array(mapOp),
        (base, ops) => {
          const baseMap = new Map(base);
          const copy = new Map(base);
          const overlay = new MapOverlay(baseMap);
          for (const op of ops) {
            if ('set' in op) {
              expect(overlay.set(op.set, op.value)).toBe(overlay);
              copy.set(op.set, op.value);
            } else {
              expect(overlay.delete(op.delete)).toBe(copy.delete(op.delete));
            }
            expect(overlay.size).toBe(copy.size);
          }
          for (const k of ['a', 'b', 'c', 'd', 'e', 'f', 'z']) {
            expect(overlay.get(k), k).toBe(copy.get(k));
            expect(overlay.has(k), k).toBe(copy.has(k));
          }
          expect(entries(overlay)).toEqual(entries(copy));
          expect([...overlay.keys()].sort()).toEqual([...copy.keys()].sort());
          expect([...overlay.values()].sort()).toEqual([...copy.values()].sort());
          const seen: Array<[string, number]> = [];
          overlay.forEach((value, k, map) => {
            expect(map).toBe(overlay);
            seen.push([k, value]);
          });
          expect(seen).toEqual([...overlay.entries()]);
          expect(baseMap).toEqual(new Map(base));
        },
      ),
    );
  });

  it('given edits of existing keys and new keys, when iterated, then the order is a Map’s: existing keys where they stand, new ones after', () => {
    const overlay = new MapOverlay(
      new Map([
        ['a', 1],
        ['b', 2],
        ['c', 3],
      ]),
    );
    overlay.set('z', 9).set('b', 5);
    overlay.delete('a');
    expect([...overlay]).toEqual([
      ['b', 5],
      ['c', 3],
      ['z', 9],
    ]);
  });
});

describe('pool limit edits', () => {
  it('given random pool limit edits, when each is decided, then the decider leaves the state’s limits as they were, and folding its events gives the limits a copied map would', () => {
    fc.assert(
      fc.property(fc.array(poolEdit, { maxLength: 30 }), (edits) => {
        const state = initialState();
        const model = new Map<string, number>();
        for (const edit of edits) {
          const before = entries(state.config.poolLimits);
          const events = decide(commandOf(edit), state, { now: '2024-01-01T00:00:00.000Z', newRunId: 'x' });
          expect(entries(state.config.poolLimits)).toEqual(before);
          exec(state, commandOf(edit));
          const changed = edit.limit === null ? model.has(edit.pool) : model.get(edit.pool) !== edit.limit;
          expect(events.length > 0).toBe(changed);
          if (edit.limit === null) model.delete(edit.pool);
          else model.set(edit.pool, edit.limit);
          expect(entries(state.config.poolLimits)).toEqual(entries(model));
        }
      }),
    );
  });

  it('given a state copied through a checkpoint, when either goes on with its own pool edits, then the other’s limits do not move', () => {
    fc.assert(
      fc.property(
        fc.array(poolEdit, { maxLength: 15 }),
        fc.array(poolEdit, { maxLength: 15 }),
        fc.array(poolEdit, { maxLength: 15 }),
        (common, liveEdits, copyEdits) => {
          const live = initialState();
          for (const edit of common) exec(live, commandOf(edit));
          const copy = deserializeState(serializeState(live));
          expect(copy.config.poolLimits).not.toBe(live.config.poolLimits);
          const atCopy = entries(copy.config.poolLimits);
          for (const edit of liveEdits) exec(live, commandOf(edit));
          expect(entries(copy.config.poolLimits)).toEqual(atCopy);
          const liveNow = entries(live.config.poolLimits);
          for (const edit of copyEdits) exec(copy, commandOf(edit));
          expect(entries(live.config.poolLimits)).toEqual(liveNow);
        },
      ),
    );
  });

  it('given a live state, when pool limit changes are simulated, then the live limits do not move and the simulation shows its own', () => {
    fc.assert(
      fc.property(
        fc.array(poolEdit, { maxLength: 15 }),
        fc.uniqueArray(poolEdit, { selector: (e) => e.pool, minLength: 1, maxLength: 6 }),
        (setup, change) => {
          const live = initialState();
          for (const edit of setup) exec(live, commandOf(edit));
          const before = entries(live.config.poolLimits);
          const simulation = simulateChange(
            live,
            { poolLimits: change },
            { now: '2024-01-02T00:00:00.000Z', newRunId: 's' },
          );
          expect(entries(live.config.poolLimits)).toEqual(before);
          const expected = new Map(before);
          for (const { pool, limit } of change) {
            if (limit === null) expected.delete(pool);
            else expected.set(pool, limit);
          }
          expect(entries(simulation.config.poolLimits)).toEqual(entries(expected));
          // Changes made to the live state afterwards do not reach the simulation's answer.
          const simulated = entries(simulation.config.poolLimits);
          exec(live, { type: 'SetPoolLimit', pool: 'a', limit: 42 });
          expect(entries(simulation.config.poolLimits)).toEqual(simulated);
        },
      ),
    );
  });

  it('given several edits in one config change, when decided, then the admission pass sees them all and the state none until they are folded', () => {
    const state = initialState();
    exec(state, { type: 'SetMaxConcurrentRuns', limit: -1 });
    exec(state, { type: 'SetPoolLimit', pool: 'gpu', limit: 0 });
    exec(state, { type: 'EnqueueRun', input: { runId: 'r', jobName: 'j', steps: [{ key: 's', pool: 'gpu' }] } });
    exec(state, { type: 'ChangeConcurrencyConfig', change: { poolGranularity: 'RUN' } });
    expect(state.runs.get('r')?.status).toBe('QUEUED');
    const events = decide(
      {
        type: 'ChangeConcurrencyConfig',
        change: {
          poolLimits: [
            { pool: 'gpu', limit: 1 },
            { pool: 'cpu', limit: 2 },
          ],
        },
      },
      state,
      { now: '2024-01-02T00:00:00.000Z', newRunId: 'x' },
    );
    expect(events.map((e) => e.type)).toContain('RunAdmitted');
    expect(entries(state.config.poolLimits)).toEqual([['gpu', 0]]);
  });
});
