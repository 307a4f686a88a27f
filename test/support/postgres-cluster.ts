/**
 * A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package: initdb into a
 * temporary folder, a free port on 127.0.0.1 and a socket folder inside the temporary one,
 * `pg_ctl start`/`stop`. initdb refuses to run as root, so as root the folder is handed to the
 * `postgres` user and the binaries run through `runuser -u postgres --`.
 *
 * `TEST_PG_URL` points the suites at a server of your own instead (each suite then works in a
 * schema of its own); a suite that must stop the server (`restart`) needs the throwaway one.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { openPostgresStore } from '../../src/eventstore/postgres.js';
import type { RecordedEvent } from '../../src/eventstore/store.js';
import { freePort } from './e2e-http.js';

/** The newest installed `/usr/lib/postgresql/<version>/bin`, or null. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? null : join(root, versions[0], 'bin');
}

/**
 * Why the PostgreSQL suites cannot run here, or null when they can. Under CI=true the suites
 * fail instead of skipping: `scripts/test-deps.mjs` installs the package there.
 */
export function postgresUnavailableBecause(): string | null {
  if (process.env.TEST_PG_URL) return null;
  if (postgresBinDir() === null) {
    return 'no PostgreSQL here: /usr/lib/postgresql/*/bin/initdb is missing (apt-get install postgresql, or set TEST_PG_URL)';
  }
  return null;
}

export interface PostgresServer {
  /** A URL for a fresh schema of its own on this server: `...?schema=NAME`. */
  newStoreUrl(prefix?: string): string;
  /** The server's base URL, without a schema. */
  readonly url: string;
  readonly port: number;
  /** Whether stop()/start() work: only for a throwaway cluster. */
  readonly controllable: boolean;
  /** Stops the server (fast shutdown: sessions are cut, as in a restart). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops and deletes a throwaway cluster; drops the schemas made on a server of your own. */
  destroy(): Promise<void>;
}

/** A throwaway cluster, or the server TEST_PG_URL names. */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<PostgresServer> {
  const external = process.env.TEST_PG_URL;
  if (external) return externalServer(external);
  return ThrowawayCluster.create(options.durable ?? false);
}

function schemaName(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
}

function withSchema(url: string, schema: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('schema', schema);
  return parsed.toString();
}

function externalServer(url: string): PostgresServer {
  const schemas: string[] = [];
  return {
    url,
    port: Number(new URL(url).port || 5432),
    controllable: false,
    newStoreUrl(prefix = 'test') {
      const schema = schemaName(prefix);
      schemas.push(schema);
      return withSchema(url, schema);
    },
    async stop() {
      throw new Error('TEST_PG_URL names a server the tests do not own: it cannot be stopped');
    },
    async start() {
      throw new Error('TEST_PG_URL names a server the tests do not own: it cannot be started');
    },
    async destroy() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

class ThrowawayCluster implements PostgresServer {
  readonly controllable = true;
  private constructor(
    private readonly bin: string,
    private readonly dir: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/sluice`;
  }

  static async create(durable: boolean): Promise<ThrowawayCluster> {
    const bin = postgresBinDir();
    if (bin === null) throw new Error(postgresUnavailableBecause() ?? 'no PostgreSQL binaries');
    const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'));
    // The folder must be the server user's; as root that is `postgres`, not root.
    if (isRoot()) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    chmodSync(dir, 0o700);
    const port = await freePort();
    const cluster = new ThrowawayCluster(bin, dir, port);
    try {
      cluster.run('initdb', [
        '-D',
        cluster.dataDir,
        '-U',
        'postgres',
        '-A',
        'trust',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
      ]);
      const settings = [
        `port = ${port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        'max_connections = 200',
        // Throwaway data: durability only where a test or the bench asks for it.
        `fsync = ${durable ? 'on' : 'off'}`,
        `synchronous_commit = ${durable ? 'on' : 'off'}`,
        'full_page_writes = off',
      ];
      cluster.run('sh', ['-c', `printf '%s\\n' "$@" >> ${cluster.dataDir}/postgresql.conf`, 'sh', ...settings]);
      await cluster.start();
      cluster.run('createdb', ['-h', dir, '-p', String(port), '-U', 'postgres', 'sluice']);
      return cluster;
    } catch (error) {
      await cluster.destroy().catch(() => undefined);
      throw error;
    }
  }

  private get dataDir(): string {
    return join(this.dir, 'data');
  }

  newStoreUrl(prefix = 'test'): string {
    return withSchema(this.url, schemaName(prefix));
  }

  async start(): Promise<void> {
    this.run('pg_ctl', ['-D', this.dataDir, '-l', join(this.dir, 'server.log'), '-w', '-t', '60', 'start']);
  }

  async stop(): Promise<void> {
    this.run('pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
  }

  async destroy(): Promise<void> {
    if (existsSync(join(this.dataDir, 'postmaster.pid'))) {
      this.run('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop'], true);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The server's log, for failure messages. */
  log(): string {
    const path = join(this.dir, 'server.log');
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  }

  private run(program: string, args: string[], quiet = false): void {
    const path = program === 'sh' ? 'sh' : join(this.bin, program);
    const [command, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
    const result = spawnSync(command, argv, { encoding: 'utf8', cwd: this.dir, timeout: 120_000 });
    if (result.status !== 0 && !quiet) {
      throw new Error(
        `${program} ${args.join(' ')} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}\n${this.log()}`,
      );
    }
  }
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The deployment's whole log, read straight from the database, as an auditor would. */
export async function readPostgresLog(url: string): Promise<RecordedEvent[]> {
  const store = await openPostgresStore({ url });
  try {
    return await store.readStream(DEPLOYMENT_STREAM);
  } finally {
    await store.close();
  }
}
