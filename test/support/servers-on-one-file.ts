/**
 * Two Sluice servers on one SQLite file, as two processes would be: `x` on a store the test wraps
 * (to hold or fail its appends and reads), `y` on a plain one. For the races between a server's
 * own commands and another server's events.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sluice } from '../../src/app/sluice.js';
import { openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

export interface ServersOnOneFile {
  x: Sluice;
  y: Sluice;
  /** y's store: the log as it is, read past both servers. */
  storeY: EventStore;
  /** A server opened afresh on the file: the log replayed, from the checkpoints x kept when asked. */
  reopen: (fromCheckpoints?: boolean) => Promise<Sluice>;
  /** Closes both servers and everything opened for them. */
  close: () => Promise<void>;
}

/** `checkpointEvery`: x keeps checkpoints, one every so many events. */
export async function serversOnOneFile(
  prefix: string,
  wrap: (inner: EventStore) => EventStore,
  options: { checkpointEvery?: number } = {},
): Promise<ServersOnOneFile> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const path = join(dir, 'events.db');
  const checkpointsPath = join(dir, 'checkpoints.db');
  const closers: Array<() => Promise<void> | void> = [];
  const innerX = openSqliteStore({ path });
  const storeY = openSqliteStore({ path });
  closers.push(
    () => innerX.close(),
    () => storeY.close(),
  );
  const checkpointEvery = options.checkpointEvery;
  const checkpoints = checkpointEvery === undefined ? undefined : openCheckpointStore(checkpointsPath);
  if (checkpoints) closers.push(() => checkpoints.close());
  const x = await Sluice.open({ store: wrap(innerX), ...(checkpoints ? { checkpoints, checkpointEvery } : {}) });
  const y = await Sluice.open({ store: storeY });
  closers.push(
    () => x.close(),
    () => y.close(),
  );
  return {
    x,
    y,
    storeY,
    reopen: async (fromCheckpoints = false) => {
      const store = openSqliteStore({ path });
      const kept = fromCheckpoints ? openCheckpointStore(checkpointsPath) : undefined;
      const server = await Sluice.open({ store, ...(kept ? { checkpoints: kept } : {}) });
      closers.push(
        () => store.close(),
        () => kept?.close(),
        () => server.close(),
      );
      return server;
    },
    close: async () => {
      for (const close of closers.splice(0).reverse()) await close();
    },
  };
}
