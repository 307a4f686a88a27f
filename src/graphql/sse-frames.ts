/**
 * Subscriptions over SSE written as shared bytes. Yoga's SSE writer encodes every event for
 * every subscriber (two TextEncoder calls) and hands it through a web ReadableStream that pulls
 * one event per tick, so each event cost each subscriber its own encoding and its own write to
 * the socket: with a thousand subscribers the writes alone took most of the server's time.
 *
 * Here the frame of an event (`event: next`, its `data:` line) is encoded once per result
 * object, and the subscribers of one operation get the same result object (see
 * shared-subscriptions), so they get the same Buffer. Each subscriber's stream is a Node
 * Readable that the HTTP layer pipes straight into the response, and the events that reach a
 * subscriber in one turn are written together, as one chunk, in one write to its socket.
 * When a client reads too slowly its stream stops pulling events: its decision stream buffers
 * them up to its capacity (then tells the client where to resume), and the stalled-client check
 * closes the connection once the response holds too much. The protocol is Yoga's: a ping first
 * and every 12 s, `next` events, a `complete` event at the end.
 */
import { Readable } from 'node:stream';
import type { ExecutionResult, GraphQLError } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';

const PING = Buffer.from(':\n\n');
const COMPLETE = Buffer.from('event: complete\ndata:\n\n');
const PING_MS = process.env.NODE_ENV === 'test' ? 300 : 12_000;

type Result = ExecutionResult & { stringify?: (result: unknown) => string };

/** The frame of each result object, made by the first subscriber that writes it. */
const frames = new WeakMap<object, Buffer>();

/** A result's JSON as Yoga writes it: internal extensions (http, unexpected) left out. */
function jsonOf(result: Result): string {
  if (!result.errors?.length && !result.extensions?.http) return (result.stringify ?? JSON.stringify)(result);
  const { http: _http, ...extensions } = result.extensions ?? {};
  const errors = result.errors?.map((error: GraphQLError) => {
    const json = typeof error.toJSON === 'function' ? error.toJSON() : { message: String(error) };
    const { http: _h, unexpected: _u, ...rest } = (json.extensions ?? {}) as Record<string, unknown>;
    return { ...json, extensions: Object.keys(rest).length > 0 ? rest : undefined };
  });
  return JSON.stringify({
    ...result,
    ...(errors ? { errors } : {}),
    extensions: Object.keys(extensions).length > 0 ? extensions : undefined,
  });
}

export function frameOf(result: Result): Buffer {
  let frame = frames.get(result);
  if (!frame) {
    frame = Buffer.from(`event: next\ndata: ${jsonOf(result)}\n\n`);
    frames.set(result, frame);
  }
  return frame;
}

/** A subscription's results as an SSE body: a Node Readable fed from the results as they come. */
export function sseBody(results: AsyncIterable<Result>): Readable {
  const iterator = results[Symbol.asyncIterator]();
  let pulling = false;
  let over = false;
  const stop = () => {
    if (over) return;
    over = true;
    clearInterval(ping);
    iterator.return?.().catch(() => undefined);
  };
  const body = new Readable({
    // Called when the response wants more: the first time, and after it drained a backlog.
    read() {
      if (!pulling && !over) void pull();
    },
    destroy(error, callback) {
      stop();
      callback(error);
    },
  });
  const ping = setInterval(() => {
    if (!over && body.readableLength === 0) body.push(PING);
  }, PING_MS);
  ping.unref();
  // Some browsers hold a fetch until the first bytes arrive.
  body.push(PING);

  // Frames that came in this turn, written together once the turn's deliveries are done: a tick
  // runs after the promise jobs that hand a subscriber its decisions one by one.
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const roomLeft = () => body.readableLength + batchBytes < body.readableHighWaterMark;
  const flush = () => {
    const frames = batch;
    batch = [];
    batchBytes = 0;
    if (over || frames.length === 0) return;
    body.push(frames.length === 1 ? frames[0] : Buffer.concat(frames));
    if (!pulling && roomLeft()) void pull();
  };

  async function pull(): Promise<void> {
    pulling = true;
    try {
      for (;;) {
        const step = await iterator.next();
        if (over) return;
        if (step.done) {
          flush();
          body.push(COMPLETE);
          body.push(null);
          over = true;
          clearInterval(ping);
          return;
        }
        if (step.value == null) continue;
        if (batch.length === 0) process.nextTick(flush);
        const frame = frameOf(step.value);
        batch.push(frame);
        batchBytes += frame.length;
        // A client that reads slowly: stop taking events until the response drains (read()).
        if (!roomLeft()) return;
      }
    } catch (error) {
      if (!over) body.destroy(error as Error);
    } finally {
      pulling = false;
    }
  }
  return body;
}

/** Whether the client lists text/event-stream in its Accept header. */
function asksForSse(request: Request): boolean {
  const accept = request.headers.get('accept') ?? '';
  return accept.split(',').some((part) => part.split(';')[0]?.trim().toLowerCase() === 'text/event-stream');
}

/**
 * Writes subscriptions asked for as text/event-stream with sseBody instead of Yoga's writer.
 * Added after Yoga's own result processors (as every plugin is), so it overrides its choice for
 * exactly these requests; anything else (a query, multipart, an error result) is left to Yoga.
 */
export function useSharedSseFrames(): Plugin {
  const subscriptionRequests = new WeakSet<Request>();
  return {
    onSubscribe({ args }) {
      const request = (args.contextValue as { request?: Request } | undefined)?.request;
      if (request) subscriptionRequests.add(request);
    },
    onResultProcess({ request, result, setResultProcessor }) {
      if (!subscriptionRequests.has(request) || !isAsyncIterable(result) || !asksForSse(request)) return;
      setResultProcessor(
        (results, fetchAPI) =>
          new fetchAPI.Response(sseBody(results as AsyncIterable<Result>) as unknown as BodyInit, {
            status: 200,
            headers: {
              'Content-Type': 'text/event-stream',
              Connection: 'keep-alive',
              'Cache-Control': 'no-cache',
              'Content-Encoding': 'none',
            },
          }),
        'text/event-stream',
      );
    },
  };
}
