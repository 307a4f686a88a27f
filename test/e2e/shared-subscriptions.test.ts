/**
 * Subscriptions executed once per event and distinct operation (useSharedSubscriptionResults):
 * subscribers of the same document get the result of one execution (and the same bytes), even
 * when the subscription field's own arguments differ; a different selection, a variable the
 * selection uses, or another role is executed on its own. Written over SSE as the server does
 * (useSharedSseFrames): one encoded frame per result, and a client that stops reading stops its
 * own stream only.
 */

import { GraphQLError } from 'graphql';
import { createSchema, createYoga } from 'graphql-yoga';
import { afterEach, describe, expect, it } from 'vitest';
import { useSharedSubscriptionResults } from '../../src/graphql/shared-subscriptions.js';
import { frameOf, useSharedSseFrames } from '../../src/graphql/sse-frames.js';

interface Event {
  id: number;
}

/** Hands the same event object to every live subscriber, as the decision streams do. */
class Hub {
  private readonly listeners = new Set<(event: Event) => void>();
  /** Each stream's events not yet read by its subscriber's writer. */
  readonly queues: Event[][] = [];
  publish(event: Event): void {
    for (const listener of this.listeners) listener(event);
  }
  get size(): number {
    return this.listeners.size;
  }
  /** Listens from the call on (not from the first read), as a decision stream does once subscribed. */
  stream(): AsyncIterableIterator<Event> {
    const queue: Event[] = [];
    this.queues.push(queue);
    let wake: (() => void) | null = null;
    const listener = (event: Event) => {
      queue.push(event);
      wake?.();
    };
    this.listeners.add(listener);
    const listeners = this.listeners;
    return {
      async next() {
        for (;;) {
          const event = queue.shift();
          if (event) return { value: event, done: false };
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      },
      async return() {
        listeners.delete(listener);
        wake?.();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

function server(hub: Hub, labelled: string[]) {
  return createYoga<{ role?: string }>({
    schema: createSchema({
      typeDefs: /* GraphQL */ `
        type Query { ok: Boolean }
        type Event { id: Int! label(prefix: String): String! }
        type Subscription { events(channel: String): Event! }
      `,
      resolvers: {
        Subscription: { events: { subscribe: () => hub.stream(), resolve: (event: Event) => event } },
        Event: {
          label: (event: Event, args: { prefix?: string | null }) => {
            labelled.push(`${args.prefix ?? ''}${event.id}`);
            return `${args.prefix ?? ''}${event.id}`;
          },
        },
      },
    }),
    context: ({ request }) => ({ principal: { role: request.headers.get('x-role') ?? 'viewer' } }),
    plugins: [useSharedSubscriptionResults(), useSharedSseFrames()],
    logging: false,
  });
}

/** An SSE subscriber: reads `data:` lines as they come. */
async function subscribe(
  yoga: ReturnType<typeof server>,
  query: string,
  variables: Record<string, unknown> = {},
  role = 'viewer',
) {
  const response = await yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-role': role },
    body: JSON.stringify({ query, variables }),
  });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  return {
    async take(n: number): Promise<string[]> {
      for (;;) {
        const lines = text.split('\n').filter((line) => line.startsWith('data: '));
        if (lines.length >= n) return lines.slice(0, n).map((line) => line.slice('data: '.length));
        const chunk = await reader.read();
        if (chunk.done) throw new Error(`stream ended after ${lines.length} events`);
        text += decoder.decode(chunk.value);
      }
    },
    close: () => reader.cancel(),
  };
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('subscriptions shared between subscribers', () => {
  it('given subscribers of one document with different subscription arguments, then each event is executed once and every subscriber gets the same bytes', async () => {
    const hub = new Hub();
    const labelled: string[] = [];
    const yoga = server(hub, labelled);
    const query = 'subscription($channel: String) { events(channel: $channel) { id label } }';
    const subscribers = await Promise.all(['a', 'b', 'c', null].map((channel) => subscribe(yoga, query, { channel })));
    for (const s of subscribers) closers.push(async () => void (await s.close()));
    await until(() => hub.size === 4);
    hub.publish({ id: 1 });
    hub.publish({ id: 2 });
    const received = await Promise.all(subscribers.map((s) => s.take(2)));
    for (const events of received) {
      expect(events).toEqual(['{"data":{"events":{"id":1,"label":"1"}}}', '{"data":{"events":{"id":2,"label":"2"}}}']);
    }
    expect(labelled).toEqual(['1', '2']);
  });

  it('given subscribers whose selections differ by document, by a variable the selection uses, or by role, then each kind is executed on its own', async () => {
    const hub = new Hub();
    const labelled: string[] = [];
    const yoga = server(hub, labelled);
    const withPrefix = 'subscription($p: String) { events { id label(prefix: $p) } }';
    const subscribers = await Promise.all([
      subscribe(yoga, withPrefix, { p: 'x' }),
      subscribe(yoga, withPrefix, { p: 'x' }),
      subscribe(yoga, withPrefix, { p: 'y' }),
      subscribe(yoga, withPrefix, { p: 'x' }, 'admin'),
      subscribe(yoga, 'subscription { events { label } }'),
    ]);
    for (const s of subscribers) closers.push(async () => void (await s.close()));
    await until(() => hub.size === 5);
    hub.publish({ id: 7 });
    const received = await Promise.all(subscribers.map((s) => s.take(1)));
    expect(received.map(([event]) => JSON.parse(event as string).data.events.label)).toEqual([
      'x7',
      'x7',
      'y7',
      'x7',
      '7',
    ]);
    expect(labelled.sort()).toEqual(['7', 'x7', 'x7', 'y7']);
  });

  it('given a subscriber that stops reading, when many events follow, then the others get every one in order, its writer stops reading its stream, and it gets them all once it reads again', async () => {
    const hub = new Hub();
    const yoga = server(hub, []);
    const query = 'subscription { events { id label(prefix: "a fairly long label, so the events fill a buffer ") } }';
    const subscribers = await Promise.all([0, 1, 2].map(() => subscribe(yoga, query)));
    for (const s of subscribers) closers.push(async () => void (await s.close()));
    await until(() => hub.size === 3);
    const [stalled, ...readers] = subscribers as [(typeof subscribers)[0], ...typeof subscribers];
    // The stalled one reads its first event, then nothing while the events come.
    hub.publish({ id: 0 });
    await stalled.take(1);
    const count = 2_000;
    for (let id = 1; id <= count; id++) hub.publish({ id });
    const ids = (events: string[]) => events.map((e) => JSON.parse(e).data.events.id);
    const expected = Array.from({ length: count + 1 }, (_, id) => id);
    for (const reader of readers) expect(ids(await reader.take(count + 1))).toEqual(expected);
    // The readers' streams are drained; the stalled one's still holds most of its events.
    await until(() => (hub.queues[1]?.length ?? 0) === 0 && (hub.queues[2]?.length ?? 0) === 0);
    expect(hub.queues[0]?.length ?? 0).toBeGreaterThan(count / 2);
    expect(ids(await stalled.take(count + 1))).toEqual(expected);
  });
});

describe('SSE frames', () => {
  it('given one result, when framed for several subscribers, then they share one buffer', () => {
    const result = { data: { events: { id: 1 } } };
    const frame = frameOf(result);
    expect(frameOf(result)).toBe(frame);
    expect(frame.toString()).toBe('event: next\ndata: {"data":{"events":{"id":1}}}\n\n');
    expect(frameOf({ data: { events: { id: 1 } } })).not.toBe(frame);
  });

  it('given a result with errors, when framed, then the internal extensions are left out as Yoga leaves them out', () => {
    const error = new GraphQLError('no such run', {
      extensions: { code: 'NOT_FOUND', http: { status: 404 }, unexpected: true },
    });
    const frame = frameOf({ data: null, errors: [error], extensions: { http: { status: 404 } } });
    const json = JSON.parse(frame.toString().split('data: ')[1] as string);
    expect(json).toEqual({ data: null, errors: [{ message: 'no such run', extensions: { code: 'NOT_FOUND' } }] });
  });
});
