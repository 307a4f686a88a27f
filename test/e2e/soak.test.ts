/**
 * The soak in a short form: a minute of mixed load on three servers sharing PostgreSQL and one on
 * SQLite, a server killed with -9 every 20 s (at least once: a restart takes a while); then `sluice verify` on both stores finds nothing
 * wrong and every acknowledged command is in its log. The long form: `npm run soak -- --minutes 30`.
 */
import { describe, expect, it } from 'vitest';
import { postgresUnavailableBecause } from '../support/postgres-cluster.js';
import { soak } from '../support/soak.js';

const unavailable = postgresUnavailableBecause();
if (unavailable && process.env.CI === 'true') throw new Error(`the soak needs PostgreSQL: ${unavailable}`);

describe.skipIf(unavailable !== null)('a short soak', () => {
  it('given a minute of mixed load with kills, when it ends, then verify finds nothing wrong and no acknowledged command is missing', async () => {
    const seed = Math.floor(Math.random() * 1_000_000);
    const lines: string[] = [];
    const result = await soak({
      minutes: 1,
      killEverySeconds: 20,
      clientsPerServer: 2,
      seed,
      log: (l) => lines.push(l),
    });
    console.log(lines.join('\n'));
    expect(result.kills, `seed ${seed}`).toBeGreaterThanOrEqual(1);
    expect(result.acknowledged, `seed ${seed}`).toBeGreaterThan(50);
    expect(result.lost, `seed ${seed}`).toEqual([]);
    for (const { store, report } of result.verify) expect(report.breach, `${store}, seed ${seed}`).toBeNull();
  }, 240_000);
});
