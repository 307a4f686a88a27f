/**
 * WAL checkpoints run by a worker thread instead of inside a commit: the pages written reach the
 * database file while the writer's own automatic checkpoints are off, and a worker that dies
 * hands the checkpoints back to the connections.
 */
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { WalCheckpointer } from '../../src/eventstore/wal-checkpoints.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function openWal(): { db: Database.Database; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-wal-'));
  dirs.push(dir);
  const path = join(dir, 'file.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (x BLOB)');
  return { db, path };
}

/** About 2 MiB in 64 commits, far past the 1,000 pages of an automatic checkpoint. */
function write(db: Database.Database): void {
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  for (let i = 0; i < 64; i++) insert.run(Buffer.alloc(32 * 1024, i));
}

async function until(check: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return check();
}

const TWO_MIB = 2 * 1024 * 1024;

describe('WAL checkpoints in a worker thread', () => {
  it('given a registered file, its committed pages reach the database file though its connection never checkpoints', async () => {
    const checkpointer = new WalCheckpointer({ everyMs: 20 });
    const { db, path } = openWal();
    const warnings: string[] = [];
    const release = checkpointer.register(db, path, (message) => warnings.push(message));

    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    write(db);
    expect(await until(() => statSync(path).size >= TWO_MIB)).toBe(true);

    release();
    expect(checkpointer.running).toBe(false);
    db.close();
    expect(warnings).toEqual([]);
  });

  it('given a file released and closed while another connection holds it open (the worker, mid-checkpoint), the database file alone holds every commit', async () => {
    const checkpointer = new WalCheckpointer({ everyMs: 60_000 });
    const { db, path } = openWal();
    const release = checkpointer.register(db, path, () => {});
    write(db);
    const holder = new Database(path);
    holder.prepare('SELECT count(*) FROM t').get();
    release();
    db.close();
    const copy = `${path}.copy`;
    copyFileSync(path, copy);
    holder.close();

    const read = new Database(copy, { readonly: true });
    expect(read.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 64 });
    read.close();
  });

  it('given the worker checkpointing the file at the moment its owner releases and closes it, then the worker has let go of it by then, and the database file alone is whole and holds every commit', async () => {
    for (let round = 0; round < 30; round++) {
      // A round of checkpoints every millisecond: the worker is on the file most of the time.
      const checkpointer = new WalCheckpointer({ everyMs: 1 });
      const { db, path } = openWal();
      const release = checkpointer.register(db, path, () => {});
      write(db);
      // Let the worker start and get into its rounds.
      await until(() => statSync(path).size >= 1024 * 1024);
      write(db);
      release();
      db.close();
      const copy = `${path}.copy`;
      copyFileSync(path, copy);

      const read = new Database(copy, { readonly: true });
      expect(read.pragma('integrity_check', { simple: true }), `round ${round}`).toBe('ok');
      expect(read.prepare('SELECT count(*) AS n FROM t').get(), `round ${round}`).toEqual({ n: 128 });
      read.close();
    }
  }, 60_000);

  it('given two connections of this process on one file, when one is released, the other’s pages still reach the database file', async () => {
    const checkpointer = new WalCheckpointer({ everyMs: 20 });
    const { db, path } = openWal();
    const second = new Database(path);
    const releaseFirst = checkpointer.register(db, path, () => {});
    const releaseSecond = checkpointer.register(second, path, () => {});
    releaseFirst();
    db.close();
    write(second);

    expect(await until(() => statSync(path).size >= TWO_MIB)).toBe(true);
    releaseSecond();
    second.close();
  });

  it('given automatic checkpoints off and no worker, the pages stay in the WAL (what the worker is for)', async () => {
    const { db, path } = openWal();
    db.pragma('wal_autocheckpoint = 0');
    write(db);
    await new Promise((resolve) => setTimeout(resolve, 200));

    expect(statSync(path).size).toBeLessThan(TWO_MIB);
    db.close();
  });

  it('given a worker that dies, the connections checkpoint for themselves again and it is told', async () => {
    const checkpointer = new WalCheckpointer({ source: 'throw new Error("no worker here")' });
    const { db, path } = openWal();
    const warnings: string[] = [];
    checkpointer.register(db, path, (message) => warnings.push(message));

    expect(await until(() => warnings.length > 0)).toBe(true);
    expect(warnings[0]).toMatch(/WAL checkpoint worker stopped \(no worker here\)/);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    write(db);
    expect(statSync(path).size).toBeGreaterThanOrEqual(TWO_MIB - 1_000 * 4096);
    db.close();
  });

  it('given a file it cannot checkpoint, it says so once, and goes on with the others', async () => {
    const checkpointer = new WalCheckpointer({ everyMs: 20 });
    const broken = openWal();
    const good = openWal();
    const warnings: string[] = [];
    checkpointer.register(broken.db, broken.path, (message) => warnings.push(message));
    checkpointer.register(good.db, good.path, () => {});
    rmSync(broken.path);

    write(good.db);
    expect(await until(() => statSync(good.path).size >= TWO_MIB)).toBe(true);
    expect(await until(() => warnings.length > 0)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/WAL checkpoint of .*file\.db failed/);
    broken.db.close();
    good.db.close();
  });
});
