/** Wiring: Yoga over HTTP, graphql-ws over the same port, health and metrics routes, tokens, logs, graceful shutdown. */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ExecutionArgs, type execute, GraphQLError, type subscribe } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type GraphiQLOptions, maskError, type YogaServerInstance } from 'graphql-yoga';
import { type WebSocket, WebSocketServer } from 'ws';
import { applyConfigFile } from './app/config-file.js';
import { recordRulesVersion } from './app/rules-version.js';
import { startRunMonitor } from './app/run-monitor.js';
import { Sluice } from './app/sluice.js';
import { actorOf, ON_BEHALF_OF_HEADER } from './auth/actor.js';
import { type Principal, roleAllows } from './auth/roles.js';
import { type ConnectionLimits, DEFAULT_SECURITY, type RequestLimits, type SecuritySettings } from './auth/settings.js';
import { ANY_HOST, isLoopback, type SitePolicy, sitePolicyFor, siteRefusal } from './auth/site.js';
import { bearerToken, Tokens } from './auth/tokens.js';
import { readConcurrencyConfigFile } from './config-file.js';
import { CURRENT_RULES } from './domain/rules.js';
import { openCheckpointStore } from './eventstore/checkpoints.js';
import { StoreUnavailableError } from './eventstore/errors.js';
import { openEventStore } from './eventstore/open.js';
import type { EventStore } from './eventstore/store.js';
import { timeAppends } from './eventstore/timed.js';
import type { GraphQLContext } from './graphql/builder.js';
import {
  GRAPHIQL_ASSETS_PREFIX,
  GRAPHIQL_DEFAULT_QUERY,
  graphiqlAssetsDir,
  renderOfflineGraphiQL,
} from './graphql/graphiql.js';
import {
  corsFor,
  useAuthentication,
  useQuietErrors,
  useRoles,
  useSiteChecks,
  useSubscriptionBudget,
} from './graphql/guards.js';
import { boundedParseCache, requestLimitPlugins } from './graphql/limits.js';
import { useBadRequestStatus, useReadinessRoute, useRequestSizeLimit } from './graphql/plugins.js';
import { schema } from './graphql/schema.js';
import { useStaticFiles } from './graphql/static-files.js';
import { openHistoryStore } from './history/history-store.js';
import { createLogger, type Logger, lineLogger, logCommand } from './log/logger.js';
import { useSlowRequestLog } from './log/slow-requests.js';
import { useMetricsRoute, useSubscriptionCount } from './metrics/plugins.js';
import { createSluiceMetrics, type SluiceMetrics } from './metrics/sluice-metrics.js';
import {
  ALLOTMENT_ENV,
  builtDashboardDir,
  checkpointPathFor,
  historyPathFor,
  type Settings,
  SettingsError,
} from './settings.js';

interface EnvelopedRoot {
  execute: (args: ExecutionArgs) => ReturnType<typeof execute>;
  subscribe: (args: ExecutionArgs) => ReturnType<typeof subscribe>;
}

/** What the GraphQL layer enforces; `startServer` derives it from the settings. */
export interface YogaSecurity {
  tokens: Tokens;
  site: SitePolicy;
  limits: RequestLimits;
  maxSubscriptionsPerToken: number;
  graphiql: boolean;
}

/** In-process use (tests, `yoga.fetch`): open mode, any Host, the default limits. */
export const IN_PROCESS_SECURITY: YogaSecurity = {
  tokens: Tokens.open(),
  site: ANY_HOST,
  limits: DEFAULT_SECURITY.limits,
  maxSubscriptionsPerToken: DEFAULT_SECURITY.connections.maxSubscriptionsPerToken,
  graphiql: true,
};

function unauthenticated(): GraphQLError {
  return new GraphQLError('send a token: Authorization: Bearer TOKEN', {
    extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
  });
}

export interface ObservabilityOptions {
  metrics?: SluiceMetrics;
  /** Who may read /metrics; default everyone who reaches the server. */
  authorizeMetrics?: (request: Request) => boolean | Promise<boolean>;
  logger?: Logger;
  /** Requests slower than this log a warning; 0: none. */
  slowRequestMs?: number;
}

/** Yoga's own messages (masked errors among them) go to our logger. */
function yogaLogging(logger: Logger) {
  const at =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...args: unknown[]) => {
      const [first, ...rest] = args;
      if (first instanceof Error) logger[level]({ err: first }, rest.map(String).join(' ') || first.message);
      else logger[level](args.map(String).join(' '));
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Paths the dashboard's client-side routes never shadow. */
const SERVER_ROUTES = /^\/(graphql|health|ready|metrics)(\/|$)/;

export interface DashboardOptions {
  /** Folder of the built dashboard; default dist/web of this package. */
  dashboardDir?: string | null;
}

/** Everything createSluiceYoga takes: the security it enforces (default: in-process, open), what it reports to, the dashboard. */
export type SluiceYogaOptions = Partial<YogaSecurity> & ObservabilityOptions & DashboardOptions;

export function createSluiceYoga(
  sluice: Sluice,
  options: SluiceYogaOptions = {},
): YogaServerInstance<Record<string, unknown>, GraphQLContext> {
  const security: YogaSecurity = { ...IN_PROCESS_SECURITY, ...definedOf(options) };
  const { tokens, site, limits } = security;
  const { metrics, logger } = options;
  // /metrics is for viewers when tokens are on (every request is a viewer in open mode).
  const authorizeMetrics =
    options.authorizeMetrics ??
    ((request: Request) => {
      const principal = tokens.authenticate(request);
      return principal !== null && roleAllows(principal.role, 'viewer');
    });
  return createYoga<Record<string, unknown>, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    graphiql: security.graphiql
      ? ({
          title: 'Sluice',
          subscriptionsProtocol: 'WS',
          defaultQuery: GRAPHIQL_DEFAULT_QUERY,
          initialQuery: GRAPHIQL_DEFAULT_QUERY,
        } as GraphiQLOptions)
      : false,
    renderGraphiQL: renderOfflineGraphiQL,
    cors: corsFor(site),
    // Only JSON bodies reach GraphQL (useSiteChecks); these make Yoga's own parsers agree.
    multipart: false,
    batching: false,
    maxRequestBodySize: limits.maxBodyBytes,
    parserAndValidationCache: boundedParseCache(limits),
    // Never Yoga's development mode, which sends stack traces to clients. A store outage under
    // a read is explicit, as under a command: clients retry it.
    maskedErrors: {
      isDev: false,
      maskError: (error, message) => {
        const original = error instanceof GraphQLError ? error.originalError : error;
        if (original instanceof StoreUnavailableError) {
          return new GraphQLError(`${original.message}; try again`, {
            ...(error instanceof GraphQLError ? { nodes: error.nodes, path: error.path } : {}),
            extensions: { code: 'STORE_UNAVAILABLE' },
          });
        }
        return maskError(error, message, false);
      },
    },
    // Over HTTP the principal comes from the request; over graphql-ws, onSubscribe passes it in.
    context: (initial) => {
      const principal = (initial.principal as Principal | undefined) ?? tokens.authenticate(initial.request);
      if (!principal) throw unauthenticated();
      return {
        sluice,
        principal,
        actor:
          typeof initial.actor === 'string'
            ? initial.actor
            : actorOf(principal, initial.request?.headers?.get?.(ON_BEHALF_OF_HEADER)),
      };
    },
    plugins: [
      useSiteChecks(site),
      useReadinessRoute({ notReadyBecause: () => sluice.notReadyBecause() }),
      ...(metrics
        ? [
            useMetricsRoute({ registry: metrics.registry, authorize: authorizeMetrics }),
            useSubscriptionCount({ opened: metrics.subscriptionOpened, closed: metrics.subscriptionClosed }),
          ]
        : []),
      ...(logger ? [useSlowRequestLog({ logger, thresholdMs: options.slowRequestMs ?? 1000 })] : []),
      useRequestSizeLimit({ maxBytes: limits.maxBodyBytes }),
      useAuthentication(tokens, '/graphql'),
      ...requestLimitPlugins(limits),
      useRoles(),
      useSubscriptionBudget(security.maxSubscriptionsPerToken),
      useBadRequestStatus(),
      useQuietErrors(),
      // Static files need no token: the page asks for one when the API answers 401.
      useStaticFiles({ prefix: GRAPHIQL_ASSETS_PREFIX, root: graphiqlAssetsDir() }),
      useStaticFiles({
        prefix: '/',
        root: options.dashboardDir ?? builtDashboardDir(),
        fallback: 'index.html',
        exclude: (pathname) => SERVER_ROUTES.test(pathname) || pathname.startsWith(GRAPHIQL_ASSETS_PREFIX),
        // Vite names what it builds into assets/ by a hash of the content.
        immutable: (path) => path.startsWith('assets/'),
        missingMessage: 'The dashboard is not built: run `npm run build` (npm install and npm start do).',
      }),
    ],
    logging: logger ? yogaLogging(logger) : process.env.NODE_ENV === 'test' ? false : 'info',
  });
}

/** The options a caller set (an explicit undefined keeps the default). */
function definedOf<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/**
 * Open mode (no tokens file) only where nobody else can connect: on a non-loopback address the
 * server refuses to start unless SLUICE_ALLOW_ANONYMOUS=1, and says which it is.
 */
function checkOpenMode(host: string, security: SecuritySettings, tokens: Tokens, log: (line: string) => void): void {
  if (!tokens.isOpen) {
    log(`tokens: ${tokens.size} from ${tokens.path} (SIGHUP reads it again)`);
    return;
  }
  if (isLoopback(host)) {
    log(`open mode: no SLUICE_TOKENS_FILE, so anyone on this machine is admin; serving on loopback ${host} only`);
    return;
  }
  if (!security.allowAnonymous) {
    throw new SettingsError(
      `refusing to serve ${host} without tokens: anyone who can reach it could change every limit. Set SLUICE_TOKENS_FILE (sluice token create NAME --role ROLE --file PATH writes it), or SLUICE_ALLOW_ANONYMOUS=1 to accept that`,
    );
  }
  log(
    `WARNING: SLUICE_ALLOW_ANONYMOUS=1 and no SLUICE_TOKENS_FILE: anyone who can reach ${host} is admin and can change every limit`,
  );
}

/** Every HTTP route, not only GraphQL's, refuses a foreign Host or Origin before Yoga sees it. */
function siteGuarded(site: SitePolicy, handler: RequestListener): RequestListener {
  return (request, response) => {
    const refusal = siteRefusal(site, request.headers.host, request.headers.origin);
    if (refusal === null) return handler(request, response);
    response.writeHead(403, { 'content-type': 'application/json; charset=utf-8' });
    response.end(JSON.stringify({ errors: [{ message: refusal, extensions: { code: 'FORBIDDEN' } }] }));
  };
}

function httpServer(handler: RequestListener, connections: ConnectionLimits): Server {
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
function trackResponses(handler: RequestListener, responses: Set<ServerResponse>): RequestListener {
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
function closeStalledClients(
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

export interface RunningServer {
  url: string;
  sluice: Sluice;
  store: EventStore;
  http: Server;
  metrics: SluiceMetrics;
  logger: Logger;
  close(): Promise<void>;
  /** Reads SLUICE_TOKENS_FILE again (on SIGHUP); on error the tokens in force stay, and it throws. */
  reloadTokens(): Promise<string>;
}

export interface ServerOptions {
  /** Who may read /metrics; default: a viewer (anyone in open mode). */
  authorizeMetrics?: (request: Request) => boolean | Promise<boolean>;
}

/**
 * Opens the store, replays the log, applies the config file, and serves. Logs go to `log`: a
 * pino logger, or a function given each JSON line (tests), default stdout at settings.logLevel.
 */
export async function startServer(
  settings: Settings,
  log?: Logger | ((line: string) => void),
  options: ServerOptions = {},
): Promise<RunningServer> {
  const logger =
    typeof log === 'function'
      ? lineLogger(log, settings.logLevel ?? 'info')
      : (log ?? createLogger({ level: settings.logLevel ?? 'info' }));
  const security = settings.security ?? DEFAULT_SECURITY;
  // Refusals about tokens come before the store is opened: nothing to undo.
  const tokens = await Tokens.load(security.tokensFile);
  checkOpenMode(settings.host, security, tokens, (line) =>
    line.startsWith('WARNING') ? logger.warn(line) : logger.info(line),
  );
  const metrics = createSluiceMetrics();
  const store = timeAppends(await openEventStore(settings.eventStoreUrl), metrics.recordAppend);
  const checkpoints = openCheckpointStore(checkpointPathFor(settings));
  let sluice: Sluice;
  let stopMetrics = () => {};
  try {
    sluice = await Sluice.open({
      store,
      checkpoints,
      history: openHistoryStore(historyPathFor(settings)),
      warn: (message) => logger.warn(message),
      info: (message) => logger.info(message),
      onCommand: (record) => {
        metrics.recordCommand(record);
        logCommand(logger, record);
      },
    });
    // Before the config file: the decisions its limit edits cause are counted too.
    stopMetrics = metrics.follow(sluice);
    // A config file that is refused leaves the log as it was: it is read before anything is appended.
    const file = settings.concurrencyConfigPath
      ? readConcurrencyConfigFile(
          await readFile(settings.concurrencyConfigPath, 'utf8'),
          settings.concurrencyConfigPath,
        )
      : null;
    // Before any edit: the log says which rules decide from here on.
    if (await recordRulesVersion(sluice)) logger.info(`the log now records rules version ${CURRENT_RULES}`);
    if (settings.startedRunAllotmentSeconds !== undefined) {
      await sluice.execute(
        {
          type: 'ChangeConcurrencyConfig',
          change: { rootStepHold: { startedRunAllotmentSeconds: settings.startedRunAllotmentSeconds } },
        },
        `environment:${ALLOTMENT_ENV}`,
      );
    }
    if (settings.concurrencyConfigPath && file) {
      const appended = await applyConfigFile(sluice, file.settings, settings.concurrencyConfigPath);
      logger.info(
        { configFile: settings.concurrencyConfigPath, events: appended },
        `applied ${settings.concurrencyConfigPath}: ${appended} limit edit(s) appended`,
      );
      if (file.notActedOn.length > 0) {
        logger.warn(
          { configFile: settings.concurrencyConfigPath, notActedOn: file.notActedOn },
          `${settings.concurrencyConfigPath}: read but not acted on by Sluice: ${file.notActedOn.join(', ')}`,
        );
      }
    }
  } catch (error) {
    stopMetrics();
    await store.close();
    checkpoints.close();
    throw error;
  }

  const monitor = startRunMonitor(
    sluice,
    (error) => logger.error({ err: error }, `run monitor: ${(error as Error).message}`),
    (timeout) =>
      logger.warn(
        {
          timeout: timeout.kind,
          run: timeout.runId,
          status: timeout.status,
          reason: timeout.reason,
          position: timeout.position.toString(),
        },
        `run ${timeout.runId} ended as ${timeout.status}: ${timeout.reason}`,
      ),
  );
  const site = sitePolicyFor(settings.host, security.allowedHosts, security.corsOrigins);
  const yoga = createSluiceYoga(sluice, {
    tokens,
    site,
    limits: security.limits,
    maxSubscriptionsPerToken: security.connections.maxSubscriptionsPerToken,
    graphiql: security.graphiql,
    metrics,
    logger,
    slowRequestMs: settings.slowRequestMs,
    authorizeMetrics: options.authorizeMetrics,
    dashboardDir: settings.dashboardDir ?? null,
  });
  const responses = new Set<ServerResponse>();
  const http = httpServer(siteGuarded(site, trackResponses(yoga, responses)), security.connections);
  // Listen before the WebSocket server is attached: it would report a busy port as its own
  // "internal error", with a stack trace, before the one clear line below.
  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(settings.port, settings.host, () => resolve());
    });
  } catch (error) {
    monitor.stop();
    await sluice.close();
    await store.close();
    checkpoints.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new Error(
        `port ${settings.port} on ${settings.host} is already in use (another Sluice?): stop that process or set PORT to a free port`,
      );
    }
    if (code === 'EACCES') throw new Error(`not allowed to listen on port ${settings.port} on ${settings.host}`);
    throw error;
  }
  const ws = new WebSocketServer({
    server: http,
    path: yoga.graphqlEndpoint,
    maxPayload: security.limits.maxBodyBytes,
    // A page on another site may open a WebSocket to any address: its Origin says so.
    verifyClient: ({ req }: { req: IncomingMessage }) =>
      siteRefusal(site, req.headers.host, req.headers.origin) === null,
  });
  const stopWatchingClients = closeStalledClients(ws, responses, security.connections.maxWebSocketBufferedBytes);
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
  );

  const address = http.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}/graphql`;
  logger.info(
    { url, store: store.description, position: sluice.state.revision.toString() },
    `sluice serving ${url} (GraphiQL there), dashboard at ${new URL('/', url)}, store ${store.description}`,
  );

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      monitor.stop();
      stopMetrics();
      stopWatchingClients();
      await wsServer.dispose();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      await sluice.close();
      await store.close();
      checkpoints.close();
      logger.info({ position: sluice.state.revision.toString() }, 'sluice stopped: requests finished, store closed');
    })());
  const reloadTokens = async () => {
    const count = await tokens.reload();
    return tokens.isOpen ? 'open mode: no tokens file to read' : `tokens: ${count} from ${tokens.path}`;
  };
  return { url, sluice, store, http, metrics, logger, close, reloadTokens };
}
