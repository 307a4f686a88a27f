/**
 * Random histories over the pure core: arrivals with tags and pools, starts, finishes, cancels,
 * step claims and releases, limit edits and the clock moving on (by seconds, or by hours so that
 * waits cross many buckets). Commands the core refuses are part of the history as refusals.
 */
import fc from 'fast-check';
import type { Command } from '../../src/domain/commands.js';
import { DomainError } from '../../src/domain/errors.js';
import { cmd, Scenario } from './scenario.js';
import { slotCmd } from './slots.js';

export type Op =
  | { kind: 'enqueue'; team: string | null; pools: string[]; priority: number }
  | { kind: 'start' | 'finish' | 'cancel' | 'terminate' | 'claim' | 'release'; pick: number; step: number }
  | { kind: 'maxRuns'; limit: number }
  | { kind: 'team'; limit: number; perValue: boolean }
  | { kind: 'pool'; pool: string; limit: number }
  | { kind: 'advance'; seconds: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('enqueue' as const),
      team: fc.option(fc.constantFrom('a', 'b')),
      pools: fc.subarray(['p1', 'p2']),
      priority: fc.integer({ min: 0, max: 2 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constantFrom('start', 'finish', 'cancel', 'terminate', 'claim', 'release'),
      pick: fc.nat(),
      step: fc.nat({ max: 1 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('maxRuns' as const), limit: fc.integer({ min: -1, max: 3 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('team' as const),
      limit: fc.integer({ min: 0, max: 2 }),
      perValue: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('pool' as const),
      pool: fc.constantFrom('p1', 'p2'),
      limit: fc.integer({ min: 0, max: 2 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      seconds: fc.oneof(fc.integer({ min: 0, max: 120 }), fc.integer({ min: 600, max: 3 * 3600 })),
    }),
  },
);

export const historyOps = (maxLength: number) => fc.array(op, { minLength: 5, maxLength });

function commandOf(s: Scenario, o: Op): Command | null {
  if (o.kind === 'advance') {
    s.advance(o.seconds);
    return null;
  }
  if (o.kind === 'enqueue') {
    return cmd.enqueue(null, {
      tags: o.team === null ? {} : { team: o.team },
      // One step per pool; step keys s0, s1 (see EnqueueOptions.pools).
      pools: o.pools,
      priority: o.priority,
    });
  }
  if (o.kind === 'maxRuns') return cmd.maxRuns(o.limit);
  if (o.kind === 'team') {
    return cmd.tagLimits(
      o.perValue ? { key: 'team', applyLimitPerUniqueValue: true, limit: o.limit } : { key: 'team', limit: o.limit },
    );
  }
  if (o.kind === 'pool') return cmd.poolLimit(o.pool, o.limit);
  const id = s.runIds[o.pick % Math.max(1, s.runIds.length)];
  if (!id) return null;
  switch (o.kind) {
    case 'start':
      return cmd.start(id);
    case 'finish':
      return cmd.finish(id);
    case 'cancel':
      return cmd.terminate(id, true);
    case 'terminate':
      return cmd.terminate(id);
    case 'claim':
      return slotCmd.claim(id, `s${o.step}`);
    case 'release':
      return slotCmd.release(id, `s${o.step}`);
  }
}

/** Runs the ops on a scenario with room for two runs at first (so queues form), optionally at RUN granularity. */
export function randomHistory(ops: readonly Op[], granularityRun: boolean): Scenario {
  const s = new Scenario({ check: 'off' }).given(cmd.maxRuns(2));
  if (granularityRun) s.given(cmd.granularity('RUN'));
  for (const o of ops) {
    const command = commandOf(s, o);
    if (!command) continue;
    try {
      s.when(command);
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
    }
  }
  return s;
}
