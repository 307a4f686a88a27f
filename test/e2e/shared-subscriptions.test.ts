/**
 * Subscriptions executed once per event and distinct operation (useSharedSubscriptionResults):
 * subscribers of the same document get the result of one execution (and the same bytes), even
 * when the subscription field's own arguments differ; a different selection, a variable the
 * selection uses, or another role is executed on its own.
 */
import { createSchema, createYoga } from 'graphql-yoga';
import { afterEach, describe, expect, it } from 'vitest';
import { useSharedSubscriptionResults } from '../../src/graphql/shared-subscriptions.js';

interface Event {
  id: number;
}

/** Hands the same event object to every live subscriber, as the decision streams do. */
class Hub {
  private readonly listeners = new Set<(event: Event) => void>();
  publish(event: Event): void {
    for (const listener of this.listeners) listener(event);
  }
  get size(): number {
    return this.listeners.size;
  }
  /** Listens from the call on (not from the first read), as a decision stream does once subscribed. */
  stream(): AsyncIterableIterator<Event> {
    const queue: Event[] = [];
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
    plugins: [useSharedSubscriptionResults()],
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
});
