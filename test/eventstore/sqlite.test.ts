import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ConcurrencyError, StoreUnavailableError } from '../../src/eventstore/errors.js';
import { openSqliteStore, type SqliteStoreOptions } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { collector, describeEventStoreContract, event } from './contract.js';

const dirs: string[] = [];
const opened: { close(): unknown }[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-sqlite-'));
  dirs.push(dir);
  return dir;
}

function open(options: SqliteStoreOptions): EventStore {
  const store = openSqliteStore({ pollIntervalMs: 5, ...options });
  opened.push(store);
  return store;
}

function rawConnection(path: string): Database.Database {
  const db = new Database(path);
  opened.push(db);
  return db;
}

afterEach(async () => {
  for (const handle of opened.splice(0)) await handle.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describeEventStoreContract('sqlite file', async () => {
  // A directory that does not exist yet: the store creates it.
  const store = open({ path: join(tempDir(), 'data', 'events.db') });
  return { store, cleanup: () => store.close() };
});

describeEventStoreContract('sqlite :memory:', async () => {
  const store = open({ path: ':memory:' });
  return { store, cleanup: () => store.close() };
});

/**
 * Runs a writer in its own process, as a second server would be: it appends `count` events,
 * one at a time, each with the revision it just read, and on ConcurrencyError reads again.
 */
function appendFromChildProcess(
  path: string,
  id: string,
  count: number,
): Promise<{ appended: number; conflicts: number }> {
  const storeModule = new URL('../../src/eventstore/sqlite.ts', import.meta.url).href;
  const code = `
    import { openSqliteStore } from ${JSON.stringify(storeModule)};
    const store = openSqliteStore({ path: ${JSON.stringify(path)} });
    let appended = 0;
    let conflicts = 0;
    while (appended < ${count}) {
      const revision = await store.streamRevision('admission');
      const event = { type: '${id}-' + appended, schemaVersion: 1, data: {}, actor: '${id}', at: 'now' };
      try {
        await store.append('admission', [event], revision < 0n ? 'no_stream' : revision);
        appended += 1;
      } catch (error) {
        if (error.name !== 'ConcurrencyError') throw error;
        conflicts += 1;
      }
    }
    await store.close();
    console.log(JSON.stringify({ appended, conflicts }));
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
    });
    child.on('error', reject);
    child.on('close', (exitCode) => {
      if (exitCode === 0) resolve(JSON.parse(out));
      else reject(new Error(`writer ${id} exited with ${exitCode}: ${err}`));
    });
  });
}

describe('sqlite event store', () => {
  it('given two stores on one file, when one appends, then the other one’s subscription delivers it', async () => {
    const path = join(tempDir(), 'events.db');
    const writer = open({ path });
    const reader = open({ path });
    await writer.append('runs', [event('E0')], 'no_stream');
    const seen = collector();

    const subscription = reader.subscribe('runs', {}, seen.handler, seen.onError);
    await subscription.caughtUp;
    await writer.append('runs', [event('E1'), event('E2')], 0n);
    await seen.until(3);
    await writer.append('runs', [event('E3')], 2n);
    await seen.until(4);

    expect(seen.revisions()).toEqual([0n, 1n, 2n, 3n]);
    expect(seen.errors).toEqual([]);
  });

  it('given two stores on one file, when both append with the same expected revision, then the second gets ConcurrencyError', async () => {
    const path = join(tempDir(), 'events.db');
    const one = open({ path });
    const two = open({ path });
    await one.append('runs', [event('E0')], 'no_stream');

    await one.append('runs', [event('one')], 0n);
    const losing = two.append('runs', [event('two')], 0n);

    await expect(losing).rejects.toMatchObject({ name: 'ConcurrencyError', actual: 1n });
    expect((await two.readStream('runs')).map((e) => e.type)).toEqual(['E0', 'one']);
  });

  it('given a store that has read or written to the end, when another store (or a raw connection) appends, then a read after the end sees it at once', async () => {
    const path = join(tempDir(), 'events.db');
    const here = open({ path });
    const there = open({ path });
    const raw = rawConnection(path);
    await here.append('runs', [event('E0'), event('E1')], 'no_stream');
    expect(await here.readStream('runs', { fromRevision: 2n })).toEqual([]);
    expect(await here.readStream('runs', { fromRevision: 9n })).toEqual([]);

    await there.append('runs', [event('there')], 1n);
    expect((await here.readStream('runs', { fromRevision: 2n })).map((e) => e.type)).toEqual(['there']);
    expect(await here.readStream('runs', { fromRevision: 3n })).toEqual([]);

    raw
      .prepare(
        "INSERT INTO events (stream, revision, type, schema_version, data, actor, at) VALUES ('runs', 3, 'raw', 1, '{}', 'a', 'b')",
      )
      .run();
    expect((await here.readStream('runs', { fromRevision: 3n })).map((e) => e.type)).toEqual(['raw']);
    await here.append('runs', [event('E4')], 3n);
    expect(await here.readStream('runs', { fromRevision: 5n })).toEqual([]);
    expect((await there.readStream('runs', { fromRevision: 4n })).map((e) => e.type)).toEqual(['E4']);
    // Another stream's end is its own.
    await there.append('other', [event('O0')], 'no_stream');
    expect((await here.readStream('other')).map((e) => e.type)).toEqual(['O0']);
  });

  it('given several processes appending to one file with retries, when they race, then every event lands once, numbered without gaps, and a subscriber sees them all in order', async () => {
    const path = join(tempDir(), 'events.db');
    const processes = 3;
    const perProcess = 40;
    const total = processes * perProcess;
    const store = open({ path });
    await store.append('admission', [], 'any'); // creates the file before the writers race
    const seen = collector();
    store.subscribe('admission', {}, seen.handler, seen.onError);

    const outcomes = await Promise.all(
      Array.from({ length: processes }, (_, id) => appendFromChildProcess(path, `p${id}`, perProcess)),
    );
    await seen.until(total);

    const events = await store.readStream('admission');
    expect(outcomes.map((o) => o.appended)).toEqual(Array(processes).fill(perProcess));
    expect(events.map((e) => e.revision)).toEqual(Array.from({ length: total }, (_, i) => BigInt(i)));
    expect(new Set(events.map((e) => e.type)).size).toBe(total);
    expect(seen.revisions()).toEqual(events.map((e) => e.revision));
    expect(seen.errors).toEqual([]);
  });

  it('given a stored event, when another writer inserts the same stream and revision, then the table refuses it', async () => {
    const path = join(tempDir(), 'events.db');
    const store = open({ path });
    await store.append('runs', [event('E0')], 'no_stream');

    const duplicate = () =>
      rawConnection(path)
        .prepare(
          `INSERT INTO events (stream, revision, type, schema_version, data, actor, at)
           VALUES ('runs', 0, 'Forged', 1, '{}', 'raw', 'now')`,
        )
        .run();

    expect(duplicate).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_UNIQUE' }));
  });

  it('given a writer that bypasses the store and takes the revision first, when appending, then ConcurrencyError and nothing is appended', async () => {
    const path = join(tempDir(), 'events.db');
    const store = open({ path });
    await store.append('runs', [event('E0')], 'no_stream');
    // The trigger steals the revision inside the store's own transaction.
    rawConnection(path).exec(`
      CREATE TRIGGER steal BEFORE INSERT ON events WHEN NEW.type = 'Stolen'
      BEGIN
        INSERT INTO events (stream, revision, type, schema_version, data, actor, at)
        VALUES (NEW.stream, NEW.revision, 'Thief', 1, '{}', 'raw', 'now');
      END`);

    const error = await store.append('runs', [event('E1'), event('Stolen')], 0n).catch((e) => e);

    expect(error).toBeInstanceOf(ConcurrencyError);
    expect((await store.readStream('runs')).map((e) => e.type)).toEqual(['E0']);
  });

  it('given a full disk, when appending, then StoreUnavailableError, nothing is appended and the store still serves', async () => {
    const store = open({ path: join(tempDir(), 'events.db'), maxPageCount: 16 });
    await store.append('runs', [event('E0')], 'no_stream');

    const error = await store
      .append('runs', [event('E1'), { ...event('Huge'), data: 'x'.repeat(512 * 1024) }], 0n)
      .catch((e) => e);

    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error.message).toMatch(/full/);
    expect((await store.readStream('runs')).map((e) => e.type)).toEqual(['E0']);
    expect(await store.streamRevision('runs')).toBe(0n);
    await store.append('runs', [event('E1')], 0n);
    expect(await store.streamRevision('runs')).toBe(1n);
  });

  it('given another connection holding the write lock, when appending, then StoreUnavailableError after the busy timeout and nothing is appended', async () => {
    const path = join(tempDir(), 'events.db');
    const store = open({ path, busyTimeoutMs: 20 });
    const locker = rawConnection(path);
    locker.exec('BEGIN EXCLUSIVE');

    const error = await store.append('runs', [event('E0')], 'no_stream').catch((e) => e);
    const readWhileLocked = await store.readStream('runs');
    locker.exec('ROLLBACK');

    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error.message).toMatch(/busy/);
    expect(readWhileLocked).toEqual([]);
    expect(await store.streamRevision('runs')).toBe(-1n);
    await store.append('runs', [event('E0')], 'no_stream');
  });

  it('given a live subscription, when the store closes, then the subscription ends quietly', async () => {
    const store = open({ path: join(tempDir(), 'events.db') });
    const seen = collector();
    const subscription = store.subscribe('runs', {}, seen.handler, seen.onError);
    await subscription.caughtUp;

    await store.close();

    expect(seen.errors).toEqual([]);
    await subscription.close();
  });

  it('given appended events, when the store is closed and reopened, then every event reads back and numbering continues', async () => {
    const path = join(tempDir(), 'events.db');
    const first = open({ path });
    await first.append('a', [event('A0'), event('A1')], 'no_stream');
    await first.append('b', [{ ...event('B0'), data: { nested: ['ü', 1, null] } }], 'no_stream');
    const before = await first.readAll();
    await first.close();

    const second = open({ path });
    const after = await second.readAll();
    const next = await second.append('a', [event('A2')], 1n);

    expect(after).toEqual(before);
    expect(next.events[0]?.revision).toBe(2n);
    expect((next.events[0]?.position ?? 0n) > (before.at(-1)?.position ?? 0n)).toBe(true);
  });

  it('given a path under a regular file, when opening, then StoreUnavailableError', () => {
    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, 'x');

    expect(() => openSqliteStore({ path: join(file, 'events.db') })).toThrow(StoreUnavailableError);
  });

  it('given a file that is not a database, when opening, then StoreUnavailableError', () => {
    const file = join(tempDir(), 'events.db');
    writeFileSync(file, 'this is not an SQLite database, just some text long enough to have a header');

    expect(() => openSqliteStore({ path: file })).toThrow(StoreUnavailableError);
  });
});
