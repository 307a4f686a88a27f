/**
 * A primary and a synchronous hot standby, two throwaway clusters from Debian's `postgresql`:
 * initdb, `pg_basebackup -R -c fast` for the standby, `synchronous_standby_names` on the primary
 * once the standby streams. The test kills the primary's postmaster with -9 and promotes the
 * standby with `pg_ctl promote`, as an operator (or Patroni) would, and may start the old
 * primary again afterwards, as a careless restart would.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './e2e-http.js';
import { postgresBinDir, postgresUnavailableBecause } from './postgres-cluster.js';

export interface ReplicatedPostgres {
  primaryPort: number;
  standbyPort: number;
  /** libpq's host list, primary first. */
  hostListUrl(schema: string): string;
  /** kill -9 of the primary's postmaster: its backends die with it. */
  killPrimary(): void;
  promoteStandby(): void;
  /** Starts the killed primary again: it comes back a primary on its old timeline (split brain). */
  restartPrimary(): void;
  /** kill -9 of the standby's (after a promotion: the new primary's) postmaster. */
  killStandby(): void;
  destroy(): void;
}

const isRoot = () => process.getuid?.() === 0;

function run(bin: string, cwd: string, program: string, args: string[]): string {
  const path = join(bin, program);
  const [command, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
  const result = spawnSync(command, argv, { encoding: 'utf8', cwd, timeout: 120_000 });
  if (result.status !== 0) throw new Error(`${program} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

function ownedDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (isRoot()) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  return dir;
}

async function query(port: number, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function startReplicatedPostgres(): Promise<ReplicatedPostgres> {
  const bin = postgresBinDir();
  if (bin === null) throw new Error(postgresUnavailableBecause() ?? 'no PostgreSQL binaries');
  const primaryDir = ownedDir('sluice-pg-primary-');
  const standbyDir = ownedDir('sluice-pg-standby-');
  const primaryData = join(primaryDir, 'data');
  const standbyData = join(standbyDir, 'data');
  const primaryPort = await freePort();
  const standbyPort = await freePort();
  const pgCtl = (dir: string, data: string, ...args: string[]) =>
    run(bin, dir, 'pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60', ...args]);
  const destroy = () => {
    for (const [dir, data] of [
      [primaryDir, primaryData],
      [standbyDir, standbyData],
    ] as const) {
      if (existsSync(join(data, 'postmaster.pid'))) {
        try {
          pgCtl(dir, data, '-m', 'immediate', 'stop');
        } catch {
          // Already gone (the killed primary).
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    run(bin, primaryDir, 'initdb', [
      '-D',
      primaryData,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    const common = ["listen_addresses = '127.0.0.1'", 'max_connections = 200', 'fsync = on', 'synchronous_commit = on'];
    appendFileSync(
      join(primaryData, 'postgresql.conf'),
      [
        ...common,
        `port = ${primaryPort}`,
        `unix_socket_directories = '${primaryDir}'`,
        'wal_level = replica',
        'max_wal_senders = 5',
      ]
        .map((l) => `${l}\n`)
        .join(''),
    );
    pgCtl(primaryDir, primaryData, 'start');
    await query(primaryPort, 'CREATE DATABASE sluice');
    run(bin, standbyDir, 'pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(primaryPort),
      '-U',
      'postgres',
      '-D',
      standbyData,
      '-R',
      '-c',
      'fast',
    ]);
    appendFileSync(
      join(standbyData, 'postgresql.auto.conf'),
      `port = ${standbyPort}\nunix_socket_directories = '${standbyDir}'\nprimary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres application_name=standby1'\n`,
    );
    pgCtl(standbyDir, standbyData, 'start');
    // Synchronous from now on: a commit returns once the standby has it.
    await query(primaryPort, "ALTER SYSTEM SET synchronous_standby_names = 'standby1'");
    await query(primaryPort, 'SELECT pg_reload_conf()');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await query(
        primaryPort,
        "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'",
      );
      if (rows[0]?.sync_state === 'sync') break;
      if (Date.now() > deadline) throw new Error(`the standby did not become synchronous: ${JSON.stringify(rows)}`);
      await new Promise((done) => setTimeout(done, 200));
    }
  } catch (error) {
    destroy();
    throw error;
  }
  return {
    primaryPort,
    standbyPort,
    hostListUrl: (schema) =>
      `postgres://postgres@127.0.0.1:${primaryPort},127.0.0.1:${standbyPort}/sluice?target_session_attrs=read-write&schema=${schema}`,
    killPrimary() {
      const pid = Number(readFileSync(join(primaryData, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
    },
    restartPrimary() {
      pgCtl(primaryDir, primaryData, 'start');
    },
    killStandby() {
      const pid = Number(readFileSync(join(standbyData, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
    },
    promoteStandby() {
      pgCtl(standbyDir, standbyData, 'promote');
    },
    destroy,
  };
}
