/**
 * isoClock formats as Date#toISOString does, for instants in time order (the replay's use),
 * across days, and for any instant at all (out of order, before 1970, beyond year 9999).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoClock } from '../../src/insight/iso-clock.js';

const MAX_DATE_MS = 8.64e15;
const iso = (ms: number) => new Date(ms).toISOString();

describe('isoClock', () => {
  it('gives toISOString for instants in time order, across days', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`iso clock property seed ${seed} (SEED=${seed} reproduces it)`);
    fc.assert(
      fc.property(
        fc.integer({ min: -4e12, max: 4e12 }),
        fc.array(fc.integer({ min: 0, max: 3 * 86_400_000 }), { maxLength: 50 }),
        (start, steps) => {
          const isoOf = isoClock();
          let ms = start;
          for (const step of [0, ...steps]) {
            ms += step;
            expect(isoOf(ms)).toBe(iso(ms));
          }
        },
      ),
      { seed, numRuns: 300 },
    );
  });

  it('gives toISOString for any instant, in any order', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`iso clock any-order property seed ${seed} (SEED=${seed} reproduces it)`);
    const isoOf = isoClock();
    fc.assert(
      fc.property(fc.integer({ min: -MAX_DATE_MS, max: MAX_DATE_MS - 1 }), (ms) => {
        expect(isoOf(ms)).toBe(iso(ms));
        expect(isoOf(ms + 1)).toBe(iso(ms + 1));
      }),
      { seed, numRuns: 1000 },
    );
  });

  it('at the edges of a day and of the four-digit years', () => {
    const isoOf = isoClock();
    for (const at of [
      '1970-01-01T00:00:00.000Z',
      '1969-12-31T23:59:59.999Z',
      '2026-12-06T23:59:59.999Z',
      '2026-12-07T00:00:00.000Z',
      '9999-12-31T23:59:59.999Z',
      '+010000-01-01T00:00:00.000Z',
      '0000-01-01T00:00:00.000Z',
      '-000001-12-31T23:59:59.999Z',
    ]) {
      expect(isoOf(Date.parse(at))).toBe(at);
    }
  });
});
