/**
 * The PostgreSQL store against a real server the test starts itself (see
 * test/support/postgres-cluster.ts), or the one TEST_PG_URL names. Never skipped under CI=true.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConcurrencyError, StoreUnavailableError, StoreUsageError } from '../../src/eventstore/errors.js';
import { openEventStore } from '../../src/eventstore/open.js';
import { openPostgresStore, type PostgresStoreOptions, parsePostgresUrl } from '../../src/eventstore/postgres.js';
import { MIGRATIONS } from '../../src/eventstore/postgres-migrations.js';
import type { EventStore, RecordedEvent } from '../../src/eventstore/store.js';
import { type PostgresServer, postgresUnavailableBecause, startPostgres } from '../support/postgres-cluster.js';
import { collector, describeEventStoreContract, event, eventually } from './contract.js';

const missing = postgresUnavailableBecause();
const runHere = missing === null || process.env.CI === 'true';

describe('postgres URLs (no server)', () => {
  it('given postgres:// and postgresql:// URLs with and without ?schema=, when parsed, then the schema is split off and the password hidden', () => {
    expect(parsePostgresUrl('postgres://sluice:s3cret@db:5432/sluice')).toEqual({
      connectionString: 'postgres://sluice:s3cret@db:5432/sluice',
      schema: 'public',
      description: 'postgres://sluice:***@db:5432/sluice',
    });
    expect(parsePostgresUrl('postgresql://sluice@db/sluice?schema=team_a&sslmode=disable')).toEqual({
      connectionString: 'postgresql://sluice@db/sluice?sslmode=disable',
      schema: 'team_a',
      description: 'postgresql://sluice@db/sluice?sslmode=disable&schema=team_a',
    });
  });

  it.each([
    ['postgres://db/sluice?schema=1abc', /not a schema name/],
    ['postgres://db/sluice?schema=a;drop', /not a schema name/],
    ['postgres://db/sluice?schema=', /not a schema name/],
    ['postgres://db/sluice?schema=a&schema=b', /more than once/],
    ['postgres://db:99999/sluice', /not a valid postgres:\/\/ URL/],
  ])('given %s, when opened, then StoreUsageError says what is wrong and nothing connects', async (url, message) => {
    const error = await openEventStore(url).catch((e) => e);
    expect(error).toBeInstanceOf(StoreUsageError);
    expect(error.message).toMatch(message);
  });

  it('given a port nothing listens on, when opened, then StoreUnavailableError without the password', async () => {
    const error = await openPostgresStore({
      url: 'postgres://u:topsecret@127.0.0.1:1/x',
      connectTimeoutMs: 2000,
    }).catch((e) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error.message).toMatch(/cannot open event store postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/x/);
    expect(error.message).not.toContain('topsecret');
  });
});

describe.skipIf(!runHere)('postgres store on a real server', () => {
  let server: PostgresServer;
  const opened: EventStore[] = [];
  const raw: pg.Client[] = [];

  beforeAll(async () => {
    server = await startPostgres();
  }, 120_000);

  afterAll(async () => {
    await server?.destroy();
  }, 60_000);

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    for (const client of raw.splice(0)) await client.end().catch(() => undefined);
  });

  async function open(url: string, options: Omit<PostgresStoreOptions, 'url'> = {}): Promise<EventStore> {
    const store = await openPostgresStore({ url, pollIntervalMs: 50, ...options });
    opened.push(store);
    return store;
  }

  async function sql(url: string): Promise<pg.Client> {
    const { connectionString } = parsePostgresUrl(url);
    const client = new pg.Client({ connectionString });
    client.on('error', () => undefined);
    await client.connect();
    raw.push(client);
    return client;
  }

  describeEventStoreContract('postgres', async () => {
    // One schema for the whole contract suite: streams are unique per test, as on any server.
    const store = await openPostgresStore({ url: contractUrl(), pollIntervalMs: 50 });
    return { store, cleanup: () => store.close() };
  });
  let contractSchemaUrl: string | undefined;
  function contractUrl(): string {
    contractSchemaUrl ??= server.newStoreUrl('contract');
    return contractSchemaUrl;
  }

  describe('migrations', () => {
    it('given a fresh schema, when four stores open it at once, then each migration ran exactly once and all four work', async () => {
      const url = server.newStoreUrl('migrate');

      const stores = await Promise.all([1, 2, 3, 4].map(() => open(url)));
      await stores[0]?.append('s', [event('A')], 'no_stream');

      const client = await sql(url);
      const { schema } = parsePostgresUrl(url);
      const { rows } = await client.query(`SELECT version FROM "${schema}".sluice_migrations ORDER BY version`);
      expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
      for (const store of stores) expect(await store.streamRevision('s')).toBe(0n);
    });

    it('given a schema migrated by a newer Sluice, when opened, then StoreUnavailableError names both versions and nothing changes', async () => {
      const url = server.newStoreUrl('newer');
      await (await open(url)).close();
      const client = await sql(url);
      const { schema } = parsePostgresUrl(url);
      await client.query(`INSERT INTO "${schema}".sluice_migrations (version, name) VALUES (99, 'from the future')`);

      const error = await openPostgresStore({ url }).catch((e) => e);

      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(error.message).toMatch(/migrated to version 99 by a newer Sluice; this one knows up to 1/);
    });

    it.skipIf(process.env.TEST_PG_URL !== undefined)(
      'given a user with rights on an existing schema only, when it opens the store, then it migrates without CREATE on the database',
      async () => {
        const admin = await sql(server.url);
        const role = `sluice_${Math.random().toString(36).slice(2, 10)}`;
        const schema = `owned_${role}`;
        await admin.query(`CREATE ROLE ${role} LOGIN`);
        await admin.query(`CREATE SCHEMA ${schema} AUTHORIZATION ${role}`);
        await admin.query(`REVOKE CREATE ON DATABASE sluice FROM PUBLIC`);
        const base = new URL(server.url);
        base.username = role;
        base.searchParams.set('schema', schema);

        const store = await open(base.toString()).catch((e) => e);

        expect(store).not.toBeInstanceOf(Error);
        expect((await (store as EventStore).append('s', [event('A')], 'no_stream')).nextExpectedRevision).toBe(0n);
      },
    );

    it.skipIf(process.env.TEST_PG_URL !== undefined)(
      'given a migrated schema, when a user with only USAGE, SELECT and INSERT opens it, then it appends, reads and follows',
      async () => {
        const url = server.newStoreUrl('least');
        await (await open(url)).close();
        const { schema } = parsePostgresUrl(url);
        const admin = await sql(server.url);
        const role = `writer_${Math.random().toString(36).slice(2, 10)}`;
        await admin.query(`CREATE ROLE ${role} LOGIN`);
        await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${role}`);
        await admin.query(`GRANT SELECT ON "${schema}".sluice_migrations TO ${role}`);
        await admin.query(`GRANT SELECT, INSERT ON "${schema}".events TO ${role}`);
        const asRole = new URL(url);
        asRole.username = role;

        const store = await open(asRole.toString());
        const seen = collector();
        await store.subscribe('s', {}, seen.handler, seen.onError).caughtUp;
        await store.append('s', [event('A'), event('B')], 'no_stream');
        await seen.until(2);

        expect(seen.types()).toEqual(['A', 'B']);
        expect(seen.errors).toEqual([]);
      },
    );
  });

  describe('appends', () => {
    it('given a writer that bypasses the append lock and commits the same revision first, when the store appends, then ConcurrencyError names the actual revision', async () => {
      const url = server.newStoreUrl('bypass');
      const store = await open(url);
      await store.append('s', [event('A')], 'no_stream');
      const client = await sql(url);
      const { schema } = parsePostgresUrl(url);
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO "${schema}".events (stream, revision, type, schema_version, data, actor, at) VALUES ('s', 1, 'X', 1, '{}', 'raw', 'now')`,
      );

      const appending = store.append('s', [event('B')], 0n).catch((e) => e);
      // The store's insert now waits on the uncommitted row of the same (stream, revision).
      await new Promise((resolve) => setTimeout(resolve, 300));
      await client.query('COMMIT');
      const error = await appending;

      expect(error).toBeInstanceOf(ConcurrencyError);
      expect(error).toMatchObject({ stream: 's', expected: 0n, actual: 1n });
      expect((await store.readStream('s')).map((e) => e.type)).toEqual(['A', 'X']);
    });

    it('given text PostgreSQL cannot store (a NUL character), when appended, then StoreUsageError and nothing is appended', async () => {
      const store = await open(server.newStoreUrl('nul'));
      await store.append('s', [event('A')], 'no_stream');

      const error = await store.append('s', [{ ...event('B'), actor: 'a\u0000b' }], 0n).catch((e) => e);

      expect(error).toBeInstanceOf(StoreUsageError);
      expect(await store.streamRevision('s')).toBe(0n);
      expect((await store.append('s', [event('C')], 0n)).nextExpectedRevision).toBe(1n);
    });

    it('given five stores (five pools) appending to many streams at once, when a reader follows readAll by position meanwhile, then it sees every event exactly once, in commit order', async () => {
      const url = server.newStoreUrl('positions');
      const writers = await Promise.all([1, 2, 3, 4, 5].map(() => open(url, { poolSize: 4 })));
      const reader = await open(url);
      const seen: RecordedEvent[] = [];
      let writing = true;
      const following = (async () => {
        let after = -1n;
        for (;;) {
          const done = !writing;
          const batch = await reader.readAll({ afterPosition: after, maxCount: 50 });
          seen.push(...batch);
          after = batch.at(-1)?.position ?? after;
          if (done && batch.length === 0) return;
        }
      })();

      await Promise.all(
        writers.flatMap((store, w) =>
          [0, 1, 2, 3].map(async (lane) => {
            for (let i = 0; i < 25; i++) {
              await store.append(`w${w}-l${lane}`, [event(`E${i}`), event(`E${i}b`)], i === 0 ? 'no_stream' : 'any');
            }
          }),
        ),
      );
      writing = false;
      await following;

      const all = await reader.readAll();
      expect(all).toHaveLength(5 * 4 * 25 * 2);
      expect(seen.map((e) => e.position)).toEqual(all.map((e) => e.position));
    }, 60_000);
  });

  describe('following across connections', () => {
    it('given a subscriber on one store, when another store (another pool) appends, then it is delivered without waiting for the poll', async () => {
      const url = server.newStoreUrl('notify');
      const follower = await open(url, { pollIntervalMs: 60_000 });
      const writer = await open(url);
      const seen = collector();
      const subscription = follower.subscribe('s', {}, seen.handler, seen.onError);
      await subscription.caughtUp;

      await writer.append('s', [event('E0'), event('E1')], 'no_stream');
      await seen.until(2);

      expect(seen.types()).toEqual(['E0', 'E1']);
      expect(seen.errors).toEqual([]);
    });

    it('given every connection of a follower is cut by the server, when events are appended meanwhile, then it reconnects LISTEN and delivers them all, once, in order', async () => {
      const url = server.newStoreUrl('reconnect');
      const follower = await open(url, { pollIntervalMs: 60_000, reconnectDelayMs: 20 });
      const writer = await open(url);
      const seen = collector();
      const subscription = follower.subscribe('s', {}, seen.handler, seen.onError);
      await subscription.caughtUp;
      await writer.append('s', [event('E0')], 'no_stream');
      await seen.until(1);
      const admin = await sql(server.url);

      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'sluice' AND pid <> pg_backend_pid() AND application_name = 'sluice'",
      );
      // The writer's pool lost its connections too: its next append connects again.
      await writer
        .append('s', [event('E1'), event('E2')], 0n)
        .catch(() => writer.append('s', [event('E1'), event('E2')], 0n));
      await eventually(() => seen.events.length >= 3, 'the events appended while LISTEN was down', 10_000);
      await writer.append('s', [event('E3')], 2n);
      await eventually(() => seen.events.length >= 4, 'an event appended after the reconnect', 10_000);

      expect(seen.revisions()).toEqual([0n, 1n, 2n, 3n]);
      expect(seen.errors).toEqual([]);
    });

    it('given two schemas on one database, when one is appended to, then the other schema’s subscribers are not woken for it and each sees only its own', async () => {
      const a = await open(server.newStoreUrl('left'), { pollIntervalMs: 60_000 });
      const b = await open(server.newStoreUrl('right'), { pollIntervalMs: 60_000 });
      const seenA = collector();
      const seenB = collector();
      await Promise.all([a.subscribe('s', {}, seenA.handler).caughtUp, b.subscribe('s', {}, seenB.handler).caughtUp]);

      await a.append('s', [event('A0')], 'no_stream');
      await b.append('s', [event('B0'), event('B1')], 'no_stream');
      await Promise.all([seenA.until(1), seenB.until(2)]);

      expect(seenA.types()).toEqual(['A0']);
      expect(seenB.types()).toEqual(['B0', 'B1']);
    });
  });

  describe.skipIf(process.env.TEST_PG_URL !== undefined)('the database going away (throwaway cluster only)', () => {
    it('given the server stops, when the store is used, then every call and the subscription fail as StoreUnavailableError; when it is back, the same store works again', async () => {
      const url = server.newStoreUrl('restart');
      const store = await open(url, { connectTimeoutMs: 1000 });
      await store.append('s', [event('E0')], 'no_stream');
      const seen = collector();
      const subscription = store.subscribe('s', {}, seen.handler, seen.onError);
      await subscription.caughtUp;

      await server.stop();
      try {
        const append = await store.append('s', [event('E1')], 0n).catch((e) => e);
        const read = await store.readStream('s').catch((e) => e);
        const revision = await store.streamRevision('s').catch((e) => e);
        await seen.untilError();

        expect(append).toBeInstanceOf(StoreUnavailableError);
        expect(append.message).toMatch(/nothing was appended/);
        expect(read).toBeInstanceOf(StoreUnavailableError);
        expect(revision).toBeInstanceOf(StoreUnavailableError);
        expect(seen.errors[0]).toBeInstanceOf(StoreUnavailableError);
      } finally {
        await server.start();
      }

      expect((await store.append('s', [event('E1')], 0n)).nextExpectedRevision).toBe(1n);
      expect((await store.readStream('s')).map((e) => e.type)).toEqual(['E0', 'E1']);
      const again = collector();
      await store.subscribe('s', {}, again.handler).caughtUp;
      expect(again.types()).toEqual(['E0', 'E1']);
    }, 60_000);
  });
});

if (!runHere) {
  describe('postgres store on a real server', () => {
    it.skip(`skipped: ${missing}`, () => {});
  });
}
