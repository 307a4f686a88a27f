import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConcurrencyError, StoreUnavailableError } from '../../src/eventstore/errors.js';
import type { EventStore, NewEvent, RecordedEvent, Subscription } from '../../src/eventstore/store.js';

/**
 * The behaviour every event store must show, written once and run against each adapter.
 * Each test gets a fresh store from `factory`, yet uses streams of its own with unique names,
 * so a store shared between tests (a server such as EventStoreDB) passes too.
 */
export function describeEventStoreContract(
  name: string,
  factory: () => Promise<{ store: EventStore; cleanup(): Promise<void> }>,
): void {
  describe(`event store contract: ${name}`, () => {
    let store: EventStore;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
    });

    afterEach(async () => {
      await cleanup();
    });

    describe('append', () => {
      it('given a new stream, when appending with no_stream, then the events get revisions from 0', async () => {
        const stream = streamName();

        const result = await store.append(stream, [event('A'), event('B')], 'no_stream');

        expect(result.nextExpectedRevision).toBe(1n);
        expect(result.events.map((e) => e.revision)).toEqual([0n, 1n]);
        expect(result.events.map((e) => e.stream)).toEqual([stream, stream]);
        expect(await store.streamRevision(stream)).toBe(1n);
        expect(await store.readStream(stream)).toEqual(result.events);
      });

      it('given a stream with events, when appending with no_stream, then ConcurrencyError names the actual revision', async () => {
        const stream = streamName();
        await store.append(stream, [event('A'), event('B')], 'no_stream');

        const error = await rejection(store.append(stream, [event('C')], 'no_stream'));

        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(error).toMatchObject({ stream, expected: 'no_stream', actual: 1n });
        expect(await store.streamRevision(stream)).toBe(1n);
      });

      it('given an empty stream, when appending with stream_exists, then ConcurrencyError says no_stream and nothing is appended', async () => {
        const stream = streamName();

        const error = await rejection(store.append(stream, [event('A')], 'stream_exists'));

        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(error).toMatchObject({ stream, expected: 'stream_exists', actual: 'no_stream' });
        expect(await store.readStream(stream)).toEqual([]);
      });

      it('given a stream with events, when appending with stream_exists, then it appends', async () => {
        const stream = streamName();
        await store.append(stream, [event('A')], 'no_stream');

        const result = await store.append(stream, [event('B')], 'stream_exists');

        expect(result.nextExpectedRevision).toBe(1n);
      });

      it('given a stream at revision 1, when appending with expected 1n, then the events follow on at 2', async () => {
        const stream = streamName();
        await store.append(stream, [event('A'), event('B')], 'no_stream');

        const result = await store.append(stream, [event('C'), event('D')], 1n);

        expect(result.events.map((e) => e.revision)).toEqual([2n, 3n]);
        expect(result.nextExpectedRevision).toBe(3n);
      });

      it('given a stream at revision 2, when appending several events with stale revision 1n, then ConcurrencyError and none is appended', async () => {
        const stream = streamName();
        await store.append(stream, [event('A'), event('B'), event('C')], 'no_stream');

        const error = await rejection(store.append(stream, [event('X'), event('Y')], 1n));

        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(error).toMatchObject({ expected: 1n, actual: 2n });
        expect((await store.readStream(stream)).map((e) => e.type)).toEqual(['A', 'B', 'C']);
      });

      it('given an empty stream, when appending with an exact revision, then ConcurrencyError says no_stream', async () => {
        const stream = streamName();

        const error = await rejection(store.append(stream, [event('A')], 0n));

        expect(error).toMatchObject({ name: 'ConcurrencyError', actual: 'no_stream' });
        expect(await store.streamRevision(stream)).toBe(-1n);
      });

      it("given any stream, when appending with 'any', then it appends without a check", async () => {
        const stream = streamName();

        await store.append(stream, [event('A')], 'any');
        const result = await store.append(stream, [event('B')], 'any');

        expect(result.events.map((e) => e.revision)).toEqual([1n]);
      });

      it('given an empty event list, when appending, then the expectation is checked and nothing is appended', async () => {
        const stream = streamName();
        await store.append(stream, [event('A')], 'no_stream');

        const result = await store.append(stream, [], 0n);
        const error = await rejection(store.append(stream, [], 'no_stream'));

        expect(result).toEqual({ nextExpectedRevision: 0n, events: [] });
        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(await store.streamRevision(stream)).toBe(0n);
      });

      it('given two streams, when appending to both in turn, then each numbers its revisions from 0 and positions increase across them', async () => {
        const a = streamName();
        const b = streamName();

        const appended = [
          ...(await store.append(a, [event('A0'), event('A1')], 'no_stream')).events,
          ...(await store.append(b, [event('B0')], 'no_stream')).events,
          ...(await store.append(a, [event('A2')], 1n)).events,
          ...(await store.append(b, [event('B1'), event('B2')], 0n)).events,
        ];

        expect((await store.readStream(a)).map((e) => e.revision)).toEqual([0n, 1n, 2n]);
        expect((await store.readStream(b)).map((e) => e.revision)).toEqual([0n, 1n, 2n]);
        expectIncreasing(appended.map((e) => e.position));
      });

      it('given two writers with the same expected revision, when both append at once, then exactly one wins', async () => {
        const stream = streamName();
        await store.append(stream, [event('A')], 'no_stream');

        const outcomes = await Promise.allSettled(
          ['first', 'second', 'third'].map((writer) => store.append(stream, [event(writer), event(`${writer}-2`)], 0n)),
        );

        const won = outcomes.filter((o) => o.status === 'fulfilled');
        const lost = outcomes.filter((o) => o.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(2);
        for (const o of lost) expect(o.reason).toBeInstanceOf(ConcurrencyError);
        expect(await store.streamRevision(stream)).toBe(2n);
      });
    });

    describe('what is stored comes back exactly', () => {
      it('given an event with every field set, when read back, then type, schemaVersion, data, actor and at are unchanged', async () => {
        const stream = streamName();
        const written: NewEvent = {
          type: 'RunEnqueued',
          schemaVersion: 3,
          data: { runId: 'r-1', tags: { team: 'a' }, list: [1, 2.5, -3], flag: false, none: null },
          actor: 'api:client-7',
          at: '2024-05-06T07:08:09.123Z',
        };

        await store.append(stream, [written], 'no_stream');
        const [read] = await store.readStream(stream);

        expect(read).toMatchObject({ ...written, stream, revision: 0n });
        expect(typeof read?.position).toBe('bigint');
      });

      it('given unicode text, when read back, then every character is unchanged', async () => {
        const stream = streamName();
        const text =
          'emoji 🚀👩‍👩‍👧 · CJK 漢字かなカナ한국어 · RTL עברית العربية · combining é ñ · \u2028\u2029 · "quotes" \\ \t\n';

        await store.append(stream, [{ ...event('Unicode'), data: { text, [text]: text }, actor: text }], 'no_stream');
        const [read] = await store.readStream(stream);

        expect(read?.data).toEqual({ text, [text]: text });
        expect(read?.actor).toBe(text);
      });

      it('given a 1 MB event, when read back, then it is unchanged', async () => {
        const stream = streamName();
        const big = `${'x'.repeat(1024 * 1024 - 1)}€`;

        await store.append(stream, [{ ...event('Big'), data: { big } }], 'no_stream');
        const [read] = await store.readStream(stream);

        expect(read?.data).toStrictEqual({ big });
      });
    });

    describe('reading', () => {
      it('given a stream of 5 events, when reading from a revision with a count, then that slice comes back', async () => {
        const stream = streamName();
        await store.append(stream, ['E0', 'E1', 'E2', 'E3', 'E4'].map(event), 'no_stream');

        const types = async (options: { fromRevision?: bigint; maxCount?: number }) =>
          (await store.readStream(stream, options)).map((e) => e.type);

        expect(await types({ fromRevision: 2n })).toEqual(['E2', 'E3', 'E4']);
        expect(await types({ fromRevision: 1n, maxCount: 2 })).toEqual(['E1', 'E2']);
        expect(await types({ maxCount: 1 })).toEqual(['E0']);
        expect(await types({ maxCount: 0 })).toEqual([]);
        expect(await types({ fromRevision: 5n })).toEqual([]);
      });

      it('given an unknown stream, when reading it, then it is empty at revision -1', async () => {
        const stream = streamName();

        expect(await store.readStream(stream)).toEqual([]);
        expect(await store.streamRevision(stream)).toBe(-1n);
      });

      it('given events in several streams, when reading all, then they come in append order', async () => {
        const a = streamName();
        const b = streamName();
        await store.append(a, [event('A0')], 'no_stream');
        await store.append(b, [event('B0'), event('B1')], 'no_stream');
        await store.append(a, [event('A1')], 0n);

        const all = ours(await store.readAll(), [a, b]);

        expect(all.map((e) => e.type)).toEqual(['A0', 'B0', 'B1', 'A1']);
        expectIncreasing(all.map((e) => e.position));
      });

      it('given events in several streams, when reading all after a position with a count, then the next ones come', async () => {
        const a = streamName();
        const b = streamName();
        const [first] = (await store.append(a, [event('A0')], 'no_stream')).events;
        await store.append(b, [event('B0'), event('B1')], 'no_stream');
        await store.append(a, [event('A1')], 0n);
        const after = (first as RecordedEvent).position;

        const rest = ours(await store.readAll({ afterPosition: after }), [a, b]);
        const page = await store.readAll({ afterPosition: after, maxCount: 2 });

        expect(rest.map((e) => e.type)).toEqual(['B0', 'B1', 'A1']);
        expect(page.map((e) => e.type)).toEqual(['B0', 'B1']);
      });
    });

    describe('subscribing', () => {
      it('given a stream with events, when subscribing from the start, then it delivers those, then new ones', async () => {
        const stream = streamName();
        await store.append(stream, ['E0', 'E1', 'E2'].map(event), 'no_stream');
        const seen = collector();

        const subscription = store.subscribe(stream, {}, seen.handler, seen.onError);
        await subscription.caughtUp;
        const atCaughtUp = seen.types();
        await store.append(stream, ['E3', 'E4'].map(event), 2n);
        await seen.until(5);
        await subscription.close();

        expect(atCaughtUp).toEqual(['E0', 'E1', 'E2']);
        expect(seen.types()).toEqual(['E0', 'E1', 'E2', 'E3', 'E4']);
        expect(seen.errors).toEqual([]);
      });

      it('given a stream with events, when subscribing after a revision, then only later events are delivered', async () => {
        const stream = streamName();
        await store.append(stream, ['E0', 'E1', 'E2'].map(event), 'no_stream');
        const seen = collector();

        const subscription = store.subscribe(stream, { afterRevision: 1n }, seen.handler);
        await subscription.caughtUp;
        await store.append(stream, [event('E3')], 2n);
        await seen.until(2);
        await subscription.close();

        expect(seen.revisions()).toEqual([2n, 3n]);
      });

      it('given an empty stream, when subscribing, then it is caught up at once and delivers what comes', async () => {
        const stream = streamName();
        const seen = collector();

        const subscription = store.subscribe(stream, {}, seen.handler);
        await subscription.caughtUp;
        await store.append(stream, [event('E0')], 'no_stream');
        await seen.until(1);
        await subscription.close();

        expect(seen.types()).toEqual(['E0']);
      });

      it('given other streams, when subscribed to one, then only its events are delivered', async () => {
        const stream = streamName();
        const other = streamName();
        const seen = collector();

        const subscription = store.subscribe(stream, {}, seen.handler);
        await store.append(other, [event('Other')], 'no_stream');
        await store.append(stream, [event('Mine')], 'no_stream');
        await seen.until(1);
        await subscription.close();

        expect(seen.events.map((e) => e.stream)).toEqual([stream]);
      });

      it('given appends racing the catch-up, when subscribing mid-way, then every event arrives once, in order, one handler call at a time', async () => {
        const stream = streamName();
        const total = 200;
        await store.append(stream, numbered(0, 50), 'no_stream');
        const writer = (async () => {
          for (let i = 50; i < total; i += 1) {
            await store.append(stream, numbered(i, 1), BigInt(i - 1));
            if (i % 10 === 0) await nextTick();
          }
        })();
        let inFlight = 0;
        let maxInFlight = 0;
        const seen = collector(async () => {
          inFlight += 1;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await nextTick();
          inFlight -= 1;
        });

        await nextTick();
        const subscription = store.subscribe(stream, {}, seen.handler, seen.onError);
        await writer;
        await seen.until(total);
        // One more event proves nothing is still queued behind the last one.
        await store.append(stream, numbered(total, 1), BigInt(total - 1));
        await seen.until(total + 1);
        await subscription.close();

        expect(seen.revisions()).toEqual(range(total + 1));
        expect(maxInFlight).toBe(1);
        expect(seen.errors).toEqual([]);
      });

      it('given two subscriptions on one stream, when events are appended, then both see all of them', async () => {
        const stream = streamName();
        await store.append(stream, [event('E0')], 'no_stream');
        const one = collector();
        const two = collector();

        const first = store.subscribe(stream, {}, one.handler);
        const second = store.subscribe(stream, { afterRevision: 0n }, two.handler);
        await Promise.all([first.caughtUp, second.caughtUp]);
        await store.append(stream, [event('E1'), event('E2')], 0n);
        await Promise.all([one.until(3), two.until(2)]);
        await Promise.all([first.close(), second.close()]);

        expect(one.revisions()).toEqual([0n, 1n, 2n]);
        expect(two.revisions()).toEqual([1n, 2n]);
      });

      it('given a closed subscription, when events are appended, then it delivers none of them', async () => {
        const stream = streamName();
        const closed = collector();
        const witness = collector();
        const subscription = store.subscribe(stream, {}, closed.handler);
        const watching = store.subscribe(stream, {}, witness.handler);
        await store.append(stream, [event('E0')], 'no_stream');
        await closed.until(1);

        await subscription.close();
        await store.append(stream, [event('E1'), event('E2')], 0n);
        await witness.until(3);
        await watching.close();

        expect(closed.types()).toEqual(['E0']);
      });

      it('given a handler that closes its own subscription, when more events wait, then none of them is delivered', async () => {
        const stream = streamName();
        await store.append(stream, ['E0', 'E1', 'E2', 'E3'].map(event), 'no_stream');
        const witness = collector();
        let subscription: Subscription | undefined;
        const closing = collector(async (e) => {
          if (e.revision === 1n) await subscription?.close();
        });

        subscription = store.subscribe(stream, {}, closing.handler, closing.onError);
        const watching = store.subscribe(stream, {}, witness.handler);
        await closing.until(2);
        await store.append(stream, [event('E4')], 3n);
        await witness.until(5);
        await watching.close();

        expect(closing.revisions()).toEqual([0n, 1n]);
        expect(closing.errors).toEqual([]);
      });

      it('given a handler, when subscribing or appending, then it is never called from inside those calls', async () => {
        const stream = streamName();
        await store.append(stream, [event('E0')], 'no_stream');
        let insideCall = false;
        const calledInside: boolean[] = [];
        const seen = collector(() => {
          calledInside.push(insideCall);
        });

        insideCall = true;
        const subscription = store.subscribe(stream, {}, seen.handler);
        insideCall = false;
        await subscription.caughtUp;
        insideCall = true;
        const appending = store.append(stream, [event('E1')], 0n);
        insideCall = false;
        await appending;
        await seen.until(2);
        await subscription.close();

        expect(calledInside).toEqual([false, false]);
      });

      it('given a handler that throws, when it fails, then onError gets the error and the subscription stops', async () => {
        const stream = streamName();
        const boom = new Error('handler failed');
        const failing = collector((e) => {
          if (e.revision === 1n) throw boom;
        });
        const witness = collector();
        await store.append(stream, ['E0', 'E1', 'E2'].map(event), 'no_stream');

        const subscription = store.subscribe(stream, {}, failing.handler, failing.onError);
        const watching = store.subscribe(stream, {}, witness.handler);
        await failing.untilError();
        await store.append(stream, [event('E3')], 2n);
        await witness.until(4);
        await Promise.all([subscription.close(), watching.close()]);

        expect(failing.errors).toEqual([boom]);
        expect(failing.revisions()).toEqual([0n, 1n]);
        await expect(subscription.caughtUp).rejects.toBe(boom);
      });
    });

    describe('closing', () => {
      it('given a closed store, when used, then every call fails with StoreUnavailableError, and closing again is harmless', async () => {
        const stream = streamName();
        await store.append(stream, [event('E0')], 'no_stream');

        await store.close();

        const closed = { name: 'StoreUnavailableError', message: 'event store is closed' };
        await expect(store.append(stream, [event('E1')], 'any')).rejects.toMatchObject(closed);
        await expect(store.readStream(stream)).rejects.toMatchObject(closed);
        await expect(store.readAll()).rejects.toMatchObject(closed);
        await expect(store.streamRevision(stream)).rejects.toMatchObject(closed);
        expect(() => store.subscribe(stream, {}, () => {})).toThrow(StoreUnavailableError);
        await store.close();
      });
    });
  });
}

function streamName(): string {
  return `contract-${randomUUID()}`;
}

export function event(type: string): NewEvent {
  return { type, schemaVersion: 1, data: { type }, actor: 'test', at: '2024-01-01T00:00:00.000Z' };
}

function numbered(from: number, count: number): NewEvent[] {
  return range(count).map((i) => event(`E${from + Number(i)}`));
}

function range(count: number): bigint[] {
  return Array.from({ length: count }, (_, i) => BigInt(i));
}

function ours(events: RecordedEvent[], streams: string[]): RecordedEvent[] {
  return events.filter((e) => streams.includes(e.stream));
}

function expectIncreasing(values: bigint[]): void {
  for (let i = 1; i < values.length; i += 1) {
    expect((values[i] as bigint) > (values[i - 1] as bigint)).toBe(true);
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Polls until `done` holds; subscriptions deliver asynchronously, so tests wait on outcomes. */
export async function eventually(done: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export function collector(onEach?: (event: RecordedEvent) => void | Promise<void>) {
  const events: RecordedEvent[] = [];
  const errors: Error[] = [];
  return {
    events,
    errors,
    handler: async (e: RecordedEvent) => {
      events.push(e);
      await onEach?.(e);
    },
    onError: (error: Error) => {
      errors.push(error);
    },
    types: () => events.map((e) => e.type),
    revisions: () => events.map((e) => e.revision),
    until: (count: number) => eventually(() => events.length >= count, `${count} events`),
    untilError: () => eventually(() => errors.length > 0, 'an error'),
  };
}
