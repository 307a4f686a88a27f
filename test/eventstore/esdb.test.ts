import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { Transform } from 'node:stream';
import {
  AccessDeniedError,
  ANY,
  type AppendExpectedRevision,
  BACKWARDS,
  CancelledError,
  DeadlineExceededError,
  END,
  type EventData,
  MaxAppendSizeExceededError,
  NO_STREAM,
  NotLeaderError,
  type ReadPosition,
  type ReadRevision,
  type ResolvedEvent,
  START,
  STREAM_EXISTS,
  StreamDeletedError,
  StreamNotFoundError,
  UnavailableError,
  WrongExpectedVersionError,
} from '@eventstore/db-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ConcurrencyError, StoreUnavailableError, StoreUsageError } from '../../src/eventstore/errors.js';
import { openEsdbStore, openEsdbStoreWithClient } from '../../src/eventstore/esdb.js';
import {
  describeConnectionString,
  type EsdbClient,
  fromEsdbCurrentRevision,
  fromEsdbExpectedRevision,
  fromResolvedEvent,
  normalizeConnectionString,
  toConcurrencyError,
  toEsdbExpectedRevision,
  toStoreError,
} from '../../src/eventstore/esdb-translation.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { collector, describeEventStoreContract, event, eventually } from './contract.js';

const opened: EventStore[] = [];

function track(store: EventStore): EventStore {
  opened.push(store);
  return store;
}

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
});

// The contract suite names every stream `contract-<uuid>`, so reruns against a persistent server
// never collide and the store needs no per-test stream prefix.
const ESDB_URL = process.env.TEST_ESDB_URL;
const SKIPPED =
  'EventStoreDB store contract skipped: TEST_ESDB_URL is not set (no EventStoreDB server on this machine; run `docker compose up eventstoredb` and set TEST_ESDB_URL=esdb://localhost:2113?tls=false)';

if (ESDB_URL) {
  describeEventStoreContract('eventstoredb', async () => {
    const store = openEsdbStore({ connectionString: ESDB_URL });
    return { store, cleanup: () => store.close() };
  });

  describe('eventstoredb server', () => {
    it('given two stores on one server, when one appends, then the other one’s subscription delivers it', async () => {
      const stream = `esdb-${randomUUID()}`;
      const writer = track(openEsdbStore({ connectionString: ESDB_URL }));
      const reader = track(openEsdbStore({ connectionString: ESDB_URL }));
      await writer.append(stream, [event('E0')], 'no_stream');
      const seen = collector();

      const subscription = reader.subscribe(stream, {}, seen.handler, seen.onError);
      await subscription.caughtUp;
      await writer.append(stream, [event('E1'), event('E2')], 0n);
      await seen.until(3);
      await subscription.close();

      expect(seen.revisions()).toEqual([0n, 1n, 2n]);
      expect(seen.errors).toEqual([]);
    });

    it('given an append, when reading $all from just before it, then the positions are the ones the append returned', async () => {
      const stream = `esdb-${randomUUID()}`;
      const store = track(openEsdbStore({ connectionString: ESDB_URL }));
      const [before] = (await store.append(stream, [event('A0')], 'no_stream')).events;
      const appended = await store.append(stream, [event('A1'), event('A2'), event('A3')], 0n);

      const read = await store.readAll({ afterPosition: before?.position ?? -1n, maxCount: 3 });

      expect(read.map((e) => [e.stream, e.revision, e.position])).toEqual(
        appended.events.map((e) => [e.stream, e.revision, e.position]),
      );
    });
  });
} else {
  console.warn(SKIPPED);
  it.skip(SKIPPED, () => {});
}

describe('eventstoredb mapping', () => {
  it('maps our expected revisions to the client’s and back', () => {
    const pairs: [Parameters<typeof toEsdbExpectedRevision>[0], AppendExpectedRevision][] = [
      ['any', ANY],
      ['no_stream', NO_STREAM],
      ['stream_exists', STREAM_EXISTS],
      [0n, 0n],
      [41n, 41n],
    ];
    for (const [ours, theirs] of pairs) {
      expect(toEsdbExpectedRevision(ours)).toBe(theirs);
      expect(fromEsdbExpectedRevision(theirs)).toBe(ours);
    }
  });

  it('maps expected revision -1n to no_stream and refuses anything below', () => {
    expect(toEsdbExpectedRevision(-1n)).toBe(NO_STREAM);
    expect(() => toEsdbExpectedRevision(-2n)).toThrow(StoreUsageError);
  });

  it('reads the client’s current revision: NO_STREAM and -1 both mean no stream', () => {
    expect(fromEsdbCurrentRevision(NO_STREAM)).toBe('no_stream');
    expect(fromEsdbCurrentRevision(-1n)).toBe('no_stream');
    expect(fromEsdbCurrentRevision(-1)).toBe('no_stream');
    expect(fromEsdbCurrentRevision('-1')).toBe('no_stream');
    expect(fromEsdbCurrentRevision(undefined)).toBe('no_stream');
    expect(fromEsdbCurrentRevision(0n)).toBe(0n);
    expect(fromEsdbCurrentRevision(7n)).toBe(7n);
    expect(fromEsdbCurrentRevision('12')).toBe(12n);
  });

  it('turns WrongExpectedVersionError into ConcurrencyError with the caller’s expectation and the actual revision', () => {
    const stale = new WrongExpectedVersionError(undefined, { streamName: 'runs', expected: 1n, current: 2n });
    const missing = new WrongExpectedVersionError(undefined, {
      streamName: 'runs',
      expected: STREAM_EXISTS,
      current: NO_STREAM,
    });

    const first = toConcurrencyError('runs', 1n, stale);
    const second = toConcurrencyError('runs', 'stream_exists', missing);
    const theirs = toConcurrencyError('runs', undefined, missing);

    expect(first).toBeInstanceOf(ConcurrencyError);
    expect(first).toMatchObject({ stream: 'runs', expected: 1n, actual: 2n });
    expect(second).toMatchObject({ stream: 'runs', expected: 'stream_exists', actual: 'no_stream' });
    expect(theirs).toMatchObject({ expected: 'stream_exists', actual: 'no_stream' });
  });

  it('turns an actual version of -1 into no_stream', () => {
    const error = Object.assign(new Error('wrong expected version'), {
      type: 'wrong-expected-version',
      expectedVersion: 0n,
      actualVersion: -1n,
    });

    expect(toConcurrencyError('runs', 0n, error)).toMatchObject({ expected: 0n, actual: 'no_stream' });
  });

  it('turns transport failures into StoreUnavailableError with a clear message', () => {
    const notLeaderCall = {
      code: 9,
      details: 'Leader info available',
      message: '9 FAILED_PRECONDITION: Leader info available',
      metadata: { getMap: () => ({ 'leader-endpoint-host': 'node-2', 'leader-endpoint-port': '2113' }) },
    } as unknown as ConstructorParameters<typeof NotLeaderError>[0];
    const cases: [unknown, RegExp][] = [
      [new UnavailableError(undefined, '14 UNAVAILABLE: No connection established'), /unavailable.*No connection/],
      [new DeadlineExceededError(undefined, '4 DEADLINE_EXCEEDED'), /did not answer in time/],
      [new CancelledError(undefined, '1 CANCELLED: Cancelled on server'), /cancelled/],
      [new NotLeaderError(notLeaderCall), /not the leader/],
      [Object.assign(new Error('14 UNAVAILABLE: raw'), { code: 14 }), /unavailable/],
      [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), /unavailable/],
      [new Error('Failed to discover after 10 attempts.'), /discovery failed/],
      [new AccessDeniedError(undefined, '7 PERMISSION_DENIED'), /denied access/],
    ];
    for (const [error, message] of cases) {
      const mapped = toStoreError(error, 'cannot read');
      expect(mapped).toBeInstanceOf(StoreUnavailableError);
      expect((mapped as Error).message).toMatch(message);
      expect((mapped as Error).message).toMatch(/cannot read/);
      expect((mapped as StoreUnavailableError).cause).toBe(error);
    }
  });

  it('turns requests the server cannot take into StoreUsageError and leaves anything else alone', () => {
    const tooBig = toStoreError(MaxAppendSizeExceededError.fromMaxAppendSize(1_048_576), 'nothing was appended');
    const deleted = toStoreError(StreamDeletedError.fromStreamName('runs'), 'cannot read');
    const other = new TypeError('a bug');

    expect(tooBig).toBeInstanceOf(StoreUsageError);
    expect((tooBig as Error).message).toMatch(/1048576 bytes/);
    expect(deleted).toBeInstanceOf(StoreUsageError);
    expect(toStoreError(other, 'cannot read')).toBe(other);
    expect(toStoreError(new StreamNotFoundError(undefined, 'runs'), 'cannot read')).toBeInstanceOf(Error);
  });

  it('converts a read event, taking actor, at and schemaVersion from its metadata', () => {
    const resolved = resolvedEvent({ stream: 'runs', revision: 3n, position: 4242n, type: 'RunEnqueued' });

    expect(fromResolvedEvent(resolved)).toEqual({
      stream: 'runs',
      revision: 3n,
      position: 4242n,
      type: 'RunEnqueued',
      schemaVersion: 2,
      data: { runId: 'r-1' },
      actor: 'api:test',
      at: '2024-05-06T07:08:09.123Z',
    });
    expect(fromResolvedEvent({ commitPosition: 1n })).toBeUndefined();
  });

  it('falls back to the response’s commit position, and refuses an event the server could not place', () => {
    const noPosition = { commit: 0xffff_ffff_ffff_ffffn, prepare: 0xffff_ffff_ffff_ffffn };
    const fallback = resolvedEvent({ stream: 'runs', revision: 0n, position: 5n });
    const placed = { ...fallback, event: { ...fallback.event, position: noPosition } } as ResolvedEvent;
    const unplaced = { ...placed, commitPosition: undefined } as ResolvedEvent;

    expect(fromResolvedEvent(placed)?.position).toBe(5n);
    expect(() => fromResolvedEvent(unplaced)).toThrow(StoreUnavailableError);
  });
});

describe('eventstoredb connection strings', () => {
  it('maps kurrentdb:// to esdb:// and leaves the esdb schemes alone', () => {
    expect(normalizeConnectionString('kurrentdb://localhost:2113?tls=false')).toBe('esdb://localhost:2113?tls=false');
    expect(normalizeConnectionString('KurrentDB://localhost:2113')).toBe('esdb://localhost:2113');
    expect(normalizeConnectionString('kurrentdb+discover://a:2113,b:2113')).toBe('esdb+discover://a:2113,b:2113');
    expect(normalizeConnectionString('esdb://localhost:2113?tls=false')).toBe('esdb://localhost:2113?tls=false');
    expect(normalizeConnectionString(' esdb+discover://cluster.local:2113 ')).toBe(
      'esdb+discover://cluster.local:2113',
    );
  });

  it('refuses other schemes with StoreUsageError', () => {
    expect(() => normalizeConnectionString('http://localhost:2113')).toThrow(StoreUsageError);
    expect(() => normalizeConnectionString('localhost:2113')).toThrow(StoreUsageError);
    expect(() => openEsdbStore({ connectionString: 'sqlite:data/events.db' })).toThrow(StoreUsageError);
  });

  it('opens a store for every accepted scheme without connecting, and describes it without credentials', async () => {
    for (const url of [
      'esdb://localhost:2113?tls=false',
      'esdb+discover://localhost:2113?tls=false',
      'kurrentdb://admin:changeit@localhost:2113?tls=false',
    ]) {
      const store = track(openEsdbStore({ connectionString: url }));
      expect(store.description).not.toMatch(/changeit/);
    }
    expect(describeConnectionString('kurrentdb://admin:changeit@db:2113?tls=false')).toBe(
      'kurrentdb://***@db:2113?tls=false',
    );
  });

  it('refuses a connection string the client cannot parse, without echoing its password', () => {
    const open = () => openEsdbStore({ connectionString: 'esdb://admin:changeit@localhost:2113?tls=maybe' });

    expect(open).toThrow(StoreUsageError);
    expect(open).not.toThrow(/changeit/);
  });
});

describe('eventstoredb store without a server', () => {
  it('given nothing listens at the address, when used, then every call fails with StoreUnavailableError', async () => {
    const store = track(
      openEsdbStore({
        connectionString: `esdb://127.0.0.1:${await closedPort()}?tls=false`,
        resubscribe: { attempts: 2, baseDelayMs: 5 },
      }),
    );
    const unavailable = { name: 'StoreUnavailableError', message: expect.stringMatching(/unavailable/) };

    await expect(store.streamRevision('runs')).rejects.toMatchObject(unavailable);
    await expect(store.readStream('runs')).rejects.toMatchObject(unavailable);
    await expect(store.readAll()).rejects.toMatchObject(unavailable);
    await expect(store.append('runs', [event('E0')], 'no_stream')).rejects.toMatchObject({
      name: 'StoreUnavailableError',
      message: expect.stringMatching(/may not have been appended/),
    });
    const seen = collector();
    const subscription = store.subscribe('runs', {}, seen.handler, seen.onError);
    await seen.untilError();

    expect(seen.errors[0]).toBeInstanceOf(StoreUnavailableError);
    expect(seen.errors[0]?.message).toMatch(/could not be resumed after 2 attempt/);
    await expect(subscription.caughtUp).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('given a bad event, when appending, then StoreUsageError before anything is sent', async () => {
    const fake = new FakeEsdbClient();
    const store = track(openEsdbStoreWithClient(fake.asClient(), 'fake'));

    await expect(store.append('runs', [{ ...event('E0'), data: undefined }], 'any')).rejects.toThrow(StoreUsageError);
    await expect(store.append('runs', [{ ...event('E0'), data: 1n }], 'any')).rejects.toThrow(StoreUsageError);
    await expect(store.append('runs', [event('E0')], -2n)).rejects.toThrow(StoreUsageError);
    await expect(store.append('', [event('E0')], 'any')).rejects.toThrow(StoreUsageError);
    expect(fake.appends).toBe(0);
  });

  // How a closed store answers is in the contract suite; what is particular here is the client.
  it('given a store, when closed, then its client is disposed', async () => {
    const fake = new FakeEsdbClient();
    const store = openEsdbStoreWithClient(fake.asClient(), 'fake');
    await store.append('runs', [event('E0')], 'no_stream');

    await store.close();

    expect(fake.disposed).toBe(true);
    await store.close();
  });
});

// The adapter's own logic (read-back positions, $all paging and filtering, catch-up, resuming
// after a drop) against an in-memory stand-in that behaves as the 6.x client documents. It does
// not replace a run against a real server.
describeEventStoreContract('eventstoredb adapter over an in-memory fake client (no server)', async () => {
  const store = openEsdbStoreWithClient(new FakeEsdbClient().asClient(), 'fake', { baseDelayMs: 1 });
  return { store, cleanup: () => store.close() };
});

describe('eventstoredb adapter over an in-memory fake client (no server)', () => {
  function open(fake: FakeEsdbClient): EventStore {
    return track(openEsdbStoreWithClient(fake.asClient(), 'fake', { attempts: 3, baseDelayMs: 1 }));
  }

  it('given a dropped connection, when the subscription resumes, then it delivers from the last delivered revision: no gap, no duplicate', async () => {
    const fake = new FakeEsdbClient();
    const store = open(fake);
    await store.append('runs', ['E0', 'E1', 'E2'].map(event), 'no_stream');
    const seen = collector();
    const subscription = store.subscribe('runs', {}, seen.handler, seen.onError);
    await subscription.caughtUp;

    fake.dropSubscriptions();
    await store.append('runs', [event('E3'), event('E4')], 2n);
    await seen.until(5);
    fake.dropSubscriptions();
    await store.append('runs', [event('E5')], 4n);
    await seen.until(6);

    expect(seen.revisions()).toEqual([0n, 1n, 2n, 3n, 4n, 5n]);
    expect(seen.errors).toEqual([]);
    expect(fake.subscriptionsOpened).toBeGreaterThanOrEqual(3);
  });

  it('given a drop while events wait in the buffer behind a slow handler, when resumed, then each is delivered once', async () => {
    const fake = new FakeEsdbClient();
    const store = open(fake);
    await store.append('runs', numbered(0, 40), 'no_stream');
    let dropped = false;
    const seen = collector(async (e) => {
      if (e.revision === 5n && !dropped) {
        dropped = true;
        fake.dropSubscriptions();
      }
      await new Promise((resolve) => setImmediate(resolve));
    });

    const subscription = store.subscribe('runs', {}, seen.handler, seen.onError);
    await seen.until(40);
    await subscription.close();

    expect(seen.revisions()).toEqual(Array.from({ length: 40 }, (_, i) => BigInt(i)));
    expect(seen.errors).toEqual([]);
  });

  it('given a server that resends the revision a subscription resumes from, when resumed, then nothing is delivered twice', async () => {
    const fake = new FakeEsdbClient({ inclusiveFromRevision: true });
    const store = open(fake);
    await store.append('runs', ['E0', 'E1', 'E2'].map(event), 'no_stream');
    const seen = collector();
    const subscription = store.subscribe('runs', { afterRevision: 0n }, seen.handler, seen.onError);
    await subscription.caughtUp;

    fake.dropSubscriptions();
    await store.append('runs', [event('E3')], 2n);
    await seen.until(3);
    await subscription.close();

    expect(seen.revisions()).toEqual([1n, 2n, 3n]);
  });

  it('given a server that sends no caught-up message (before 23.10), when subscribing, then caughtUp follows the last revision at subscribe time', async () => {
    const fake = new FakeEsdbClient({ sendCaughtUp: false });
    const store = open(fake);
    await store.append('runs', ['E0', 'E1', 'E2'].map(event), 'no_stream');
    const seen = collector();
    const empty = collector();

    const subscription = store.subscribe('runs', {}, seen.handler);
    const onEmpty = store.subscribe('other', {}, empty.handler);
    await Promise.all([subscription.caughtUp, onEmpty.caughtUp]);

    expect(seen.types()).toEqual(['E0', 'E1', 'E2']);
    expect(empty.types()).toEqual([]);
  });

  it('given the caught-up message arrives while events wait in the buffer, when it resolves, then the handler has seen all of them', async () => {
    // Backwards reads fail, so only the server's message can resolve caughtUp.
    const fake = new FakeEsdbClient({ failBackwardReads: true });
    const store = open(fake);
    await store.append('runs', numbered(0, 60), 'no_stream');
    const seen = collector(() => new Promise((resolve) => setImmediate(resolve)));

    const subscription = store.subscribe('runs', {}, seen.handler, seen.onError);
    await subscription.caughtUp;

    expect(seen.events).toHaveLength(60);
    await subscription.close();
  });

  it('given system events and more than a page of events, when reading all, then only ours come, in order, paged and after the position', async () => {
    const fake = new FakeEsdbClient();
    const store = open(fake);
    const appended = [];
    for (let i = 0; i < 30; i += 1) {
      appended.push(...(await store.append(`s-${i % 3}`, numbered(i * 40, 40), 'any')).events);
    }

    const all = await store.readAll();
    const after = await store.readAll({ afterPosition: appended[599]?.position ?? 0n, maxCount: 501 });

    expect(fake.systemEvents).toBeGreaterThan(0);
    expect(all).toEqual(appended);
    expect(after).toEqual(appended.slice(600, 1101));
  });

  it('given the client reports a failed append instead of throwing, when appending, then ConcurrencyError', async () => {
    const fake = new FakeEsdbClient({ throwOnAppendFailure: false });
    const store = open(fake);
    await store.append('runs', [event('E0')], 'no_stream');

    const error = await store.append('runs', [event('E1')], 'no_stream').catch((e) => e);

    expect(error).toBeInstanceOf(ConcurrencyError);
    expect(error).toMatchObject({ expected: 'no_stream', actual: 0n });
  });

  it('given a server that cannot place events in stream reads, when appending, then StoreUnavailableError names the server version', async () => {
    const fake = new FakeEsdbClient({ streamReadsWithoutPosition: true });
    const store = open(fake);

    const error = await store.append('runs', [event('E0')], 'no_stream').catch((e) => e);

    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error.message).toMatch(/appended 1 event\(s\).*22\.6/);
  });

  it('given a handler that fails after a drop, when resumed, then onError gets the handler’s error and delivery stops', async () => {
    const fake = new FakeEsdbClient();
    const store = open(fake);
    const boom = new Error('handler failed');
    const seen = collector((e) => {
      if (e.revision === 2n) throw boom;
    });
    await store.append('runs', [event('E0')], 'no_stream');
    const subscription = store.subscribe('runs', {}, seen.handler, seen.onError);
    await subscription.caughtUp;

    fake.dropSubscriptions();
    await store.append('runs', [event('E1'), event('E2'), event('E3')], 0n);
    await seen.untilError();
    await eventually(() => fake.liveSubscriptions === 0, 'the subscription to be cancelled');

    expect(seen.errors).toEqual([boom]);
    expect(seen.revisions()).toEqual([0n, 1n, 2n]);
  });
});

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function numbered(from: number, count: number) {
  return Array.from({ length: count }, (_, i) => event(`E${from + i}`));
}

function resolvedEvent(options: { stream: string; revision: bigint; position: bigint; type?: string }): ResolvedEvent {
  return {
    event: {
      streamId: options.stream,
      id: randomUUID(),
      isJson: true,
      revision: options.revision,
      type: options.type ?? 'E',
      created: new Date('2024-05-06T07:08:09.500Z'),
      data: { runId: 'r-1' },
      metadata: { actor: 'api:test', at: '2024-05-06T07:08:09.123Z', schemaVersion: 2 },
      position: { commit: options.position, prepare: options.position },
    },
    commitPosition: options.position,
  } as ResolvedEvent;
}

interface Stored {
  streamId: string;
  revision: bigint;
  id: string;
  type: string;
  data: string;
  metadata: string | undefined;
  position: bigint;
  created: Date;
}

interface Live {
  stream: string;
  sink: Transform;
}

/**
 * Stands in for the 6.x client as its docs and sources describe it: reads stream their results,
 * report a missing stream as StreamNotFoundError and errors by emitting them; subscriptions take
 * an exclusive fromRevision, pass responses through a transform that emits `caughtUp` when the
 * catch-up ends (23.10 and later), and end on unsubscribe(). Every append is preceded by a
 * system event, as a server's own statistics and metadata events interleave with ours.
 */
class FakeEsdbClient {
  readonly streams = new Map<string, Stored[]>();
  readonly all: Stored[] = [];
  appends = 0;
  systemEvents = 0;
  subscriptionsOpened = 0;
  disposed = false;
  private readonly live = new Set<Live>();
  private nextPosition = 1_000n;

  constructor(
    private readonly options: {
      sendCaughtUp?: boolean;
      failBackwardReads?: boolean;
      throwOnAppendFailure?: boolean;
      streamReadsWithoutPosition?: boolean;
      /** Misreads fromRevision as inclusive, resending the revision a subscription resumes from. */
      inclusiveFromRevision?: boolean;
    } = {},
  ) {}

  get liveSubscriptions(): number {
    return this.live.size;
  }

  asClient(): EsdbClient {
    return this as unknown as EsdbClient;
  }

  async appendToStream(
    stream: string,
    events: EventData | EventData[],
    { expectedRevision = ANY }: { expectedRevision?: AppendExpectedRevision } = {},
  ) {
    await nextTick();
    this.appends += 1;
    const list = this.streams.get(stream) ?? [];
    const current = BigInt(list.length) - 1n;
    const ok =
      expectedRevision === ANY ||
      (expectedRevision === NO_STREAM && current === -1n) ||
      (expectedRevision === STREAM_EXISTS && current >= 0n) ||
      expectedRevision === current;
    if (!ok) {
      if (this.options.throwOnAppendFailure === false) {
        return { success: false, nextExpectedRevision: current, position: undefined };
      }
      throw new WrongExpectedVersionError(undefined, {
        streamName: stream,
        expected: expectedRevision,
        current: current < 0n ? NO_STREAM : current,
      });
    }
    this.write('$stats-127.0.0.1:2113', '$statsCollected', '{}', undefined);
    this.systemEvents += 1;
    const written = (Array.isArray(events) ? events : [events]).map((e) =>
      this.write(stream, e.type, JSON.stringify(e.data), e.metadata ? JSON.stringify(e.metadata) : undefined, e.id),
    );
    const last = written.at(-1) as Stored;
    // One position for the whole append, as the server reports it.
    return {
      success: true,
      nextExpectedRevision: last.revision,
      position: { commit: last.position, prepare: last.position },
    };
  }

  readStream(
    stream: string,
    {
      fromRevision = START,
      maxCount = Number.MAX_SAFE_INTEGER,
      direction = 'forwards',
    }: { fromRevision?: ReadRevision; maxCount?: number | bigint; direction?: string } = {},
  ) {
    const list = this.streams.get(stream);
    if (direction === BACKWARDS && this.options.failBackwardReads) {
      return readOf([], new UnavailableError(undefined, '14 UNAVAILABLE: backward reads fail in this test'));
    }
    if (list === undefined) return readOf([], new StreamNotFoundError(undefined, stream));
    let items: Stored[];
    if (direction === BACKWARDS) {
      const from = fromRevision === END || fromRevision === START ? BigInt(list.length) : fromRevision;
      items = list.filter((e) => e.revision <= from).reverse();
    } else {
      const from = fromRevision === START ? 0n : fromRevision === END ? BigInt(list.length) : fromRevision;
      items = list.filter((e) => e.revision >= from);
    }
    return readOf(
      items.slice(0, Number(maxCount)).map((e) => this.resolve(e, !this.options.streamReadsWithoutPosition)),
    );
  }

  readAll({
    fromPosition = START,
    maxCount = Number.MAX_SAFE_INTEGER,
  }: {
    fromPosition?: ReadPosition;
    maxCount?: number | bigint;
  } = {}) {
    const from = fromPosition === START ? 0n : fromPosition === END ? this.nextPosition : fromPosition.commit;
    // fromPosition is inclusive.
    return readOf(
      this.all
        .filter((e) => e.position >= from)
        .slice(0, Number(maxCount))
        .map((e) => this.resolve(e, true)),
    );
  }

  subscribeToStream(stream: string, { fromRevision = START }: { fromRevision?: ReadRevision } = {}) {
    this.subscriptionsOpened += 1;
    const sendCaughtUp = this.options.sendCaughtUp !== false;
    const sink = new Transform({
      objectMode: true,
      transform(response: { caughtUp?: true; event?: ResolvedEvent }, _encoding, next) {
        if (response.caughtUp) {
          if (sendCaughtUp) this.emit('caughtUp');
          next();
          return;
        }
        next(null, response.event);
      },
    });
    const live: Live = { stream, sink };
    Object.assign(sink, {
      unsubscribe: async () => {
        this.live.delete(live);
        await nextTick();
        if (!sink.writableEnded) sink.end();
      },
    });
    setImmediate(() => {
      if (sink.destroyed || sink.writableEnded) return;
      sink.emit('confirmation');
      const list = this.streams.get(stream) ?? [];
      const exclusive = fromRevision === START ? -1n : fromRevision === END ? BigInt(list.length) - 1n : fromRevision;
      const after = this.options.inclusiveFromRevision && exclusive >= 0n ? exclusive - 1n : exclusive;
      for (const stored of list) {
        if (stored.revision > after) sink.write({ event: this.resolve(stored, true) });
      }
      sink.write({ caughtUp: true });
      this.live.add(live);
    });
    return sink;
  }

  /** Every live subscription fails as on a lost connection: the client emits, it does not destroy. */
  dropSubscriptions(): void {
    for (const live of [...this.live]) {
      this.live.delete(live);
      live.sink.emit('error', new UnavailableError(undefined, '14 UNAVAILABLE: Connection dropped'));
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    for (const live of [...this.live]) live.sink.end();
    this.live.clear();
  }

  private write(
    stream: string,
    type: string,
    data: string,
    metadata: string | undefined,
    id: string = randomUUID(),
  ): Stored {
    const list = this.streams.get(stream) ?? [];
    this.streams.set(stream, list);
    const stored: Stored = {
      streamId: stream,
      revision: BigInt(list.length),
      id,
      type,
      data,
      metadata,
      position: this.nextPosition,
      created: new Date(),
    };
    this.nextPosition += 100n + BigInt(data.length);
    list.push(stored);
    this.all.push(stored);
    for (const live of this.live) {
      if (live.stream === stream) live.sink.write({ event: this.resolve(stored, true) });
    }
    return stored;
  }

  private resolve(stored: Stored, placed: boolean): ResolvedEvent {
    const unknown = 0xffff_ffff_ffff_ffffn;
    const position = placed ? stored.position : unknown;
    return {
      event: {
        streamId: stored.streamId,
        id: stored.id,
        isJson: true,
        revision: stored.revision,
        type: stored.type,
        created: stored.created,
        data: JSON.parse(stored.data),
        metadata: stored.metadata === undefined ? undefined : JSON.parse(stored.metadata),
        position: { commit: position, prepare: position },
      },
      ...(placed ? { commitPosition: position } : {}),
    } as ResolvedEvent;
  }
}

/** A finished read, as the client streams it; an error comes as an emitted 'error'. */
function readOf<T>(items: T[], error?: Error) {
  const read = new Transform({ objectMode: true, transform: (item, _encoding, next) => next(null, item) });
  setImmediate(() => {
    if (error !== undefined) {
      read.emit('error', error);
      return;
    }
    for (const item of items) read.write(item);
    read.end();
  });
  return Object.assign(read, { cancel: async () => undefined });
}

function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
