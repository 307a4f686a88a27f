/**
 * A checkpoint file that is created when the first checkpoint is saved, not when the server
 * opens it. A first start (no file yet) then creates nothing on its way to answering: creating
 * an SQLite file in WAL mode syncs the disk several times, and the checkpoints of that start
 * are only saved once it answers (see app/checkpointing). Until the file exists, there is no
 * checkpoint to read; one that another server creates meanwhile is opened when next read.
 */
import { existsSync } from 'node:fs';
import type { CheckpointStore } from './checkpoints.js';
import { StoreUnavailableError } from './errors.js';

/** `open` opens (creating when missing) the store at `path`: at once when the file exists. */
export function checkpointFileCreatedOnSave(path: string, open: () => CheckpointStore): CheckpointStore {
  let store: CheckpointStore | null = existsSync(path) ? open() : null;
  let closed = false;
  /** The store, once its file exists (or must, to save): null while there is nothing to read. */
  const opened = (create: boolean): CheckpointStore | null => {
    if (store || closed) return store;
    if (create || existsSync(path)) store = open();
    return store;
  };
  return {
    path: path === ':memory:' ? null : path,
    save: (checkpoint) => {
      const target = opened(true);
      // The error an opened store gives once closed.
      if (!target) throw new StoreUnavailableError('checkpoint store: save failed: the store is closed');
      target.save(checkpoint);
    },
    atOrBefore: (revision, limit) => opened(false)?.atOrBefore(revision, limit) ?? [],
    load: (revision) => opened(false)?.load(revision) ?? null,
    delete: (revision) => opened(false)?.delete(revision),
    keepLatest: (count) => opened(false)?.keepLatest(count),
    close: () => {
      closed = true;
      store?.close();
    },
  };
}
