/**
 * The log as a stream (logStream, behind the `events` subscription): the backlog after a
 * position read from the store a page at a time, then live, nothing missed or repeated at the
 * seam even while commands keep coming, and a stream that is closed while it waits ends at once.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { logStream } from '../../src/app/log-stream.js';
import { Sluice } from '../../src/app/sluice.js';
import type { LoggedEvent } from '../../src/domain/events.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore, ReadOptions } from '../../src/eventstore/store.js';

let store: EventStore;
let sluice: Sluice;
let pageReads: ReadOptions[];

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  pageReads = [];
  // Records the pages the stream asks for; the reads themselves go to the real store.
  const read = store.readStream.bind(store);
  store.readStream = (stream, options) => {
    pageReads.push(options ?? {});
    return read(stream, options);
  };
  sluice = await Sluice.open({ store });
  pageReads = [];
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const enqueue = (id: string) => sluice.execute({ type: 'EnqueueRun', input: { runId: id, jobName: 'j' } }, 'test');

async function take(stream: AsyncIterableIterator<LoggedEvent>, count: number): Promise<LoggedEvent[]> {
  const out: LoggedEvent[] = [];
  while (out.length < count) {
    const { value, done } = await stream.next();
    if (done) break;
    out.push(value);
  }
  return out;
}

describe('logStream', () => {
  it('given a log, when read from -1 with pages of 3, then every event comes once, in order, a page at a time', async () => {
    await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 1 }, 'admin');
    for (let i = 0; i < 4; i++) await enqueue(`r${i}`);
    const last = sluice.state.revision;
    pageReads = [];
    const stream = logStream(sluice, { after: -1n, pageSize: 3 });
    const events = await take(stream, Number(last) + 1);
    await stream.return?.();
    expect(events.map((e) => e.revision)).toEqual(Array.from({ length: Number(last) + 1 }, (_, i) => BigInt(i)));
    expect(events[0]).toMatchObject({ type: 'MaxConcurrentRunsSet', actor: 'admin', data: { limit: 1 } });
    expect(events.filter((e) => e.type === 'RunEnqueued').map((e) => (e.data as { runId: string }).runId)).toEqual([
      'r0',
      'r1',
      'r2',
      'r3',
    ]);
    expect(pageReads.length).toBeGreaterThan(1);
    expect(pageReads.every((read) => read.maxCount === 3)).toBe(true);
  });

  it('given commands appended while the backlog is read, then the stream goes live with no gap and no repeat', async () => {
    for (let i = 0; i < 10; i++) await enqueue(`before-${i}`);
    const stream = logStream(sluice, { after: 2n, pageSize: 2 });
    const writing = (async () => {
      for (let i = 0; i < 10; i++) await enqueue(`during-${i}`);
    })();
    const first = await take(stream, 3);
    await writing;
    const expectedCount = Number(sluice.state.revision) - 2;
    const rest = await take(stream, expectedCount - first.length);
    await stream.return?.();
    const positions = [...first, ...rest].map((e) => e.revision);
    expect(positions).toEqual(Array.from({ length: expectedCount }, (_, i) => BigInt(i + 3)));
  });

  it('given no position, then only events appended after subscribing come', async () => {
    await enqueue('old');
    const stream = logStream(sluice, { after: null });
    await enqueue('new');
    const [event] = await take(stream, 1);
    await stream.return?.();
    expect(event).toMatchObject({ type: 'RunEnqueued', data: { runId: 'new' } });
  });

  it('given a stream waiting for the next event, when closed, then it ends at once and hears nothing more', async () => {
    const stream = logStream(sluice, { after: null });
    const waiting = stream.next();
    await stream.return?.();
    await expect(waiting).resolves.toEqual({ value: undefined, done: true });
    await enqueue('after-close');
    await expect(stream.next()).resolves.toMatchObject({ done: true });
  });

  it('given a subscriber that reads nothing, when more events come than it may buffer, then its stream fails', async () => {
    const stream = logStream(sluice, { after: null, capacity: 2 });
    for (let i = 0; i < 4; i++) await enqueue(`flood-${i}`);
    await expect(take(stream, 4)).rejects.toThrow(/fell more than 2 items behind/);
  });
});
