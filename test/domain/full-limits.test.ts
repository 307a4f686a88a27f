/**
 * Whether a counter's full limits are the ones recorded for it, answered without making them as
 * constraints (fullLimitsAre), against the plain comparison: make the full limits, then compare
 * their identities, values and counts as a set.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ApplicableLimit,
  type Constraint,
  constraintIdentity,
  fullLimitsAre,
  toConstraint,
} from '../../src/domain/constraints.js';

/** The plain comparison: full limits made, then compared by identity, value and count. */
function recordedAsFull(limits: readonly ApplicableLimit[], inUse: number, recorded: readonly Constraint[]): boolean {
  const full = limits.filter((l) => inUse >= l.limit).map((l) => toConstraint(l, inUse));
  if (full.length !== recorded.length) return false;
  const id = (c: Constraint) => `${constraintIdentity(c)}\u0000${c.limit}\u0000${c.inUse}`;
  const ids = new Set(full.map(id));
  return recorded.every((c) => ids.has(id(c)));
}

const limit: fc.Arbitrary<ApplicableLimit> = fc
  .record({
    kind: fc.constantFrom('MAX_CONCURRENT_RUNS' as const, 'TAG_LIMIT' as const, 'POOL_LIMIT' as const),
    key: fc.constantFrom(null, 'team', 'env'),
    value: fc.constantFrom(null, 'a', 'b'),
    pool: fc.constantFrom(null, 'gpu'),
    perUniqueValue: fc.boolean(),
    limit: fc.integer({ min: 0, max: 4 }),
  })
  .map((l) => ({ ...l, countKey: 'runs' }));

describe('fullLimitsAre', () => {
  it('answers as the plain comparison of the full limits made as constraints', () => {
    const field = fc.constantFrom('kind', 'key', 'value', 'pool', 'perUniqueValue', 'limit', 'inUse', 'drop');
    fc.assert(
      fc.property(
        fc.array(limit, { maxLength: 4 }),
        fc.integer({ min: 0, max: 5 }),
        fc.option(fc.tuple(field, fc.nat(), limit)),
        fc.array(fc.tuple(limit, fc.integer({ min: 0, max: 5 })), { maxLength: 4 }),
        fc.boolean(),
        (limits, inUse, tweak, others, recordTheFull) => {
          // Either what the limits make, in another order and perhaps with one field of one
          // changed (or one dropped), or a record of other limits altogether.
          const recorded: Constraint[] = recordTheFull
            ? limits
                .filter((l) => inUse >= l.limit)
                .map((l) => toConstraint(l, inUse))
                .reverse()
            : others.map(([l, count]) => toConstraint(l, count));
          if (tweak && recorded.length > 0) {
            const [name, at, from] = tweak;
            const i = at % recorded.length;
            const c = recorded[i] as Constraint;
            if (name === 'drop') recorded.splice(i, 1);
            else if (name === 'inUse') recorded[i] = { ...c, inUse: c.inUse + 1 };
            else recorded[i] = { ...c, [name]: from[name] };
          }
          expect(fullLimitsAre(limits, inUse, recorded)).toBe(recordedAsFull(limits, inUse, recorded));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('sees a changed value, count or identity', () => {
    const team: ApplicableLimit = {
      countKey: 'k\u0000team',
      kind: 'TAG_LIMIT',
      key: 'team',
      value: null,
      pool: null,
      perUniqueValue: false,
      limit: 2,
    };
    const recorded = [toConstraint(team, 2)];
    expect(fullLimitsAre([team], 2, recorded)).toBe(true);
    expect(fullLimitsAre([team], 3, recorded)).toBe(false);
    expect(fullLimitsAre([{ ...team, limit: 1 }], 2, recorded)).toBe(false);
    expect(fullLimitsAre([{ ...team, perUniqueValue: true }], 2, recorded)).toBe(false);
    expect(fullLimitsAre([team], 1, recorded)).toBe(false);
    expect(fullLimitsAre([team], 1, [])).toBe(true);
  });
});
