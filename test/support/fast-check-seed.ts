/**
 * Replays a property test from the seed fast-check printed when it failed:
 * `FC_SEED=-923019731 npx vitest run test/domain/serialize.test.ts`. Without FC_SEED each run
 * draws a new seed, printed with any failure.
 */
import fc from 'fast-check';

const seed = process.env.FC_SEED;
if (seed !== undefined && seed !== '') {
  if (!/^-?\d+$/.test(seed)) throw new Error(`FC_SEED must be an integer, got ${JSON.stringify(seed)}`);
  fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: Number(seed) });
}
