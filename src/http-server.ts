/**
 * The HTTP server under Yoga and graphql-ws: the site check on every route, connection limits
 * and timeouts, clients that stop reading closed, and graphql-ws on the same port with its own
 * token checks.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { type ExecutionArgs, type execute, GraphQLError, type subscribe } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { YogaServerInstance } from 'graphql-yoga';
import { type WebSocket, WebSocketServer } from 'ws';
import type { Sluice } from './app/sluice.js';
import { actorOf, ON_BEHALF_OF_HEADER } from './auth/actor.js';
import type { ConnectionLimits } from './auth/settings.js';
import { type SitePolicy, siteRefusal } from './auth/site.js';
import { bearerToken, type Tokens } from './auth/tokens.js';
import type { GraphQLContext } from './graphql/builder.js';
import { unauthenticated } from './graphql/yoga.js';
import { keepAlive } from './websocket-keep-alive.js';

interface EnvelopedRoot {
  execute: (args: ExecutionArgs) => ReturnType<typeof execute>;
  subscribe: (args: ExecutionArgs) => ReturnType<typeof subscribe>;
}

/** Every HTTP route, not only GraphQL's, refuses a foreign Host or Origin before Yoga sees it. */
export function siteGuarded(site: SitePolicy, handler: RequestListener): RequestListener {
  return (request, response) => {
    const refusal = siteRefusal(site, request.headers.host, request.headers.origin);
    if (refusal === null) return handler(request, response);
    response.writeHead(403, { 'content-type': 'application/json; charset=utf-8' });
    response.end(JSON.stringify({ errors: [{ message: refusal, extensions: { code: 'FORBIDDEN' } }] }));
  };
}

export function httpServer(handler: RequestListener, connections: ConnectionLimits): Server {
  const http = createServer(
    {
      headersTimeout: connections.headersTimeoutMs,
      requestTimeout: connections.requestTimeoutMs,
      keepAliveTimeout: connections.keepAliveTimeoutMs,
      // How often the timeouts above are checked; Node's default (30 s) would let them slip.
      connectionsCheckingInterval: Math.min(1_000, connections.headersTimeoutMs),
    },
    handler,
  );
  http.maxConnections = connections.maxConnections;
  return http;
}

/** Responses being written (SSE streams included), so that stalled readers can be found. */
export function trackResponses(handler: RequestListener, responses: Set<ServerResponse>): RequestListener {
  return (request, response) => {
    responses.add(response);
    response.once('close', () => responses.delete(response));
    return handler(request, response);
  };
}

/**
 * A client that stops reading (an SSE stream or a WebSocket) makes the server buffer what it
 * cannot send; past `maxBufferedBytes` the connection is closed.
 */
export function closeStalledClients(
  ws: WebSocketServer,
  responses: Set<ServerResponse>,
  maxBufferedBytes: number,
): () => void {
  const timer = setInterval(() => {
    for (const socket of ws.clients as Set<WebSocket>) {
      if (socket.bufferedAmount > maxBufferedBytes) socket.terminate();
    }
    for (const response of responses) {
      if (response.writableLength > maxBufferedBytes) response.destroy();
    }
  }, 1_000);
  timer.unref();
  return () => clearInterval(timer);
}

function connectionToken(params: Readonly<Record<string, unknown>> | undefined): string | null {
  const value = params?.authorization ?? params?.Authorization;
  return typeof value === 'string' ? bearerToken(value) : null;
}
/** Listens, with a clear message for a port in use or not allowed. */
export async function listen(http: Server, port: number, host: string): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, host, () => resolve());
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new Error(
        `port ${port} on ${host} is already in use (another Sluice?): stop that process or set PORT to a free port`,
      );
    }
    if (code === 'EACCES') throw new Error(`not allowed to listen on port ${port} on ${host}`);
    throw error;
  }
}

export interface WebSocketOptions {
  sluice: Sluice;
  tokens: Tokens;
  site: SitePolicy;
  maxPayloadBytes: number;
  maxBufferedBytes: number;
  /** The HTTP responses being written, watched with the sockets for clients that stop reading. */
  responses: Set<ServerResponse>;
}

/**
 * graphql-ws on the HTTP server's GraphQL path. Attach it after listening: it would report a busy
 * port as its own "internal error", with a stack trace, before the one clear line of `listen`.
 * Returns what stops it.
 */
export function attachWebSockets(
  http: Server,
  yoga: YogaServerInstance<Record<string, unknown>, GraphQLContext>,
  options: WebSocketOptions,
): () => Promise<void> {
  const { sluice, tokens, site } = options;
  const ws = new WebSocketServer({
    server: http,
    path: yoga.graphqlEndpoint,
    maxPayload: options.maxPayloadBytes,
    // A page on another site may open a WebSocket to any address: its Origin says so.
    verifyClient: ({ req }: { req: IncomingMessage }) =>
      siteRefusal(site, req.headers.host, req.headers.origin) === null,
  });
  const stopWatchingClients = closeStalledClients(ws, options.responses, options.maxBufferedBytes);
  const stopKeepAlive = keepAlive(ws);
  // graphql-ws authenticates once, from connection_init; each subscribe checks the token again,
  // so a token removed from the file (and SIGHUP) stops starting new operations at once.
  const socketTokens = new WeakMap<object, string | null>();
  const wsServer = useServer(
    {
      // Yoga's enveloped execute/subscribe travel in rootValue so its plugins wrap them.
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args),
      onConnect: (ctx) => {
        const token = connectionToken(ctx.connectionParams);
        if (tokens.principalOf(token) === null) return false;
        socketTokens.set(ctx.extra.socket, token);
        return true;
      },
      onSubscribe: async (ctx, _id, params) => {
        const principal = tokens.principalOf(socketTokens.get(ctx.extra.socket) ?? null);
        if (principal === null) return [unauthenticated()];
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
        });
        let document: ReturnType<typeof parse>;
        try {
          document = parse(params.query);
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        const onBehalfOf = ctx.extra.request.headers[ON_BEHALF_OF_HEADER];
        return {
          schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue: await contextFactory({
            sluice,
            principal,
            actor: actorOf(principal, typeof onBehalfOf === 'string' ? onBehalfOf : null),
          }),
          rootValue: { execute, subscribe },
        };
      },
    },
    ws,
    // Off: its pong deadline drops clients reading a long replay (see websocket-keep-alive.ts).
    0,
  );
  return async () => {
    stopKeepAlive();
    stopWatchingClients();
    await wsServer.dispose();
  };
}
