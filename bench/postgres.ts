/**
 * Section 12: 1, 2 and 3 Sluice servers sharing one PostgreSQL database, beside the same on one
 * SQLite file, in one run. Each server is a Sluice instance with a store (a connection pool, or
 * an SQLite connection) of its own, deciding on its own projections and racing the others'
 * appends as separate processes would; all share this process's event loop, so the figures
 * compare the stores, not the HTTP path (section 3 measures that). The workload is section 6's:
 * enqueue, or finish a run in progress, under maxConcurrentRuns 2. The PostgreSQL server is a
 * throwaway cluster with fsync on (or TEST_PG_URL's), SQLite runs synchronous FULL.
 */
import { join } from 'node:path';
import { DEPLOYMENT_STREAM, Sluice } from '../src/app/sluice.js';
import { openPostgresStore } from '../src/eventstore/postgres.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import type { EventStore } from '../src/eventstore/store.js';
import { postgresUnavailableBecause, startPostgres } from '../test/support/postgres-cluster.js';
import { fmt, heading, load, note, ratio, size, stats, table, tempDir } from './harness.js';
import { auditLog, type Counts, counting, emptyTally, type Tally, worker } from './race.js';

const LIMIT = 2;
const SERVERS = [1, 2, 3];

interface Result {
  store: string;
  servers: number;
  commands: number;
  perSecond: number;
  p50: number;
  p99: number;
  appends: number;
  lost: number;
  gaveUp: number;
  violations: number;
}

async function run(kind: string, servers: number, total: number, open: () => Promise<EventStore>): Promise<Result> {
  const counts: Counts[] = [];
  const stores: EventStore[] = [];
  const sluices: Sluice[] = [];
  for (let i = 0; i < servers; i++) {
    const c: Counts = { appends: 0, lost: 0 };
    counts.push(c);
    const store = counting(await open(), c);
    stores.push(store);
    sluices.push(await Sluice.open({ store, warn: () => {} }));
  }
  await (sluices[0] as Sluice).execute({ type: 'SetMaxConcurrentRuns', limit: LIMIT }, 'bench');
  for (const c of counts) c.appends = 0;
  const tallies: Tally[] = sluices.map(() => emptyTally());
  const t0 = performance.now();
  await Promise.all(
    sluices.map((sluice, i) => worker(sluice, `s${i}`, Math.floor(total / servers), tallies[i] as Tally)),
  );
  const wallMs = performance.now() - t0;
  const events = await (stores[0] as EventStore).readStream(DEPLOYMENT_STREAM);
  for (const sluice of sluices) await sluice.close();
  for (const store of stores) await store.close();
  const latency = stats(tallies.flatMap((t) => t.latency.wall));
  const commands = tallies.reduce((n, t) => n + t.commands, 0);
  return {
    store: kind,
    servers,
    commands,
    perSecond: (commands / wallMs) * 1000,
    p50: latency.p50,
    p99: latency.p99,
    appends: counts.reduce((n, c) => n + c.appends, 0),
    lost: counts.reduce((n, c) => n + c.lost, 0),
    gaveUp: tallies.reduce((n, t) => n + t.gaveUp, 0),
    violations: auditLog(events).violations.length,
  };
}

export async function postgresSection(): Promise<void> {
  heading('7. 1, 2 and 3 servers on one PostgreSQL database beside one SQLite file');
  const missing = postgresUnavailableBecause();
  if (missing !== null) {
    note(`skipped: ${missing}`);
    return;
  }
  const total = size('BENCH_PG_COMMANDS', 600, 30);
  const database = await startPostgres({ durable: true });
  const results: Result[] = [];
  try {
    for (const servers of SERVERS) {
      const path = join(tempDir(), 'events.db');
      results.push(await run('SQLite file', servers, total, async () => openSqliteStore({ path })));
      console.log(`  ${servers} server(s) on SQLite: done`);
      const url = database.newStoreUrl(`bench${servers}`);
      results.push(await run('PostgreSQL', servers, total, () => openPostgresStore({ url })));
      console.log(`  ${servers} server(s) on PostgreSQL: done`);
    }
  } finally {
    await database.destroy();
  }

  note(
    `${total} commands per configuration, split evenly over the servers; ${process.env.TEST_PG_URL ? 'TEST_PG_URL' : 'a throwaway local cluster, fsync on'}; ${load()}.`,
  );
  note('lost races: appends refused for a stale expected revision, each retried after catching up;');
  note('gave up: commands that lost every one of their 50 attempts (answered STORE_UNAVAILABLE by a server).');
  console.log();
  table(
    [
      'store',
      'servers',
      'commands/s',
      'p50 ms',
      'p99 ms',
      'appends',
      'lost races',
      'lost share',
      'gave up',
      'log check',
    ],
    results.map((r) => [
      r.store,
      String(r.servers),
      fmt(r.perSecond),
      fmt(r.p50),
      fmt(r.p99),
      String(r.appends),
      String(r.lost),
      `${fmt((r.lost / Math.max(1, r.appends)) * 100)}%`,
      String(r.gaveUp),
      r.violations === 0 ? 'OK' : `${r.violations} VIOLATIONS`,
    ]),
  );
  console.log();
  for (const servers of SERVERS) {
    const sqlite = results.find((r) => r.store === 'SQLite file' && r.servers === servers) as Result;
    const postgres = results.find((r) => r.store === 'PostgreSQL' && r.servers === servers) as Result;
    note(
      `${servers} server(s): PostgreSQL does ${ratio(postgres.perSecond, sqlite.perSecond)} SQLite's commands/s, at ${ratio(postgres.p99, sqlite.p99)} its p99`,
    );
  }
}
