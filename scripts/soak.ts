/**
 * `npm run soak -- --minutes N [--kill-every SECONDS] [--postgres-servers N] [--seed N]`: several
 * servers on PostgreSQL and one on SQLite under a mixed load, one killed with -9 every few
 * minutes; at the end `sluice verify` on every store and every acknowledged command looked for in
 * its log. Exits 1 when a rule broke or an acknowledged command is missing.
 */
import { parseArgs } from 'node:util';
import { soak } from '../test/support/soak.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'kill-every': { type: 'string', default: '180' },
    'postgres-servers': { type: 'string', default: '3' },
    seed: { type: 'string' },
  },
});
const number = (name: string, value: string | undefined) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} ${value}: give a positive number`);
    process.exit(2);
  }
  return n;
};
process.env.NODE_ENV ??= 'test';
const result = await soak({
  minutes: number('minutes', values.minutes),
  killEverySeconds: number('kill-every', values['kill-every']),
  postgresServers: number('postgres-servers', values['postgres-servers']),
  ...(values.seed ? { seed: number('seed', values.seed) } : {}),
});
process.exit(result.ok ? 0 : 1);
