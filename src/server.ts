/** Wiring: Yoga over HTTP, graphql-ws over the same port, health and metrics routes, logs, graceful shutdown. */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExecutionArgs, execute, subscribe } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { applyConfigFile } from './app/config-file.js';
import { startRunMonitor } from './app/run-monitor.js';
import { Sluice } from './app/sluice.js';
import { readConcurrencyConfigFile } from './config-file.js';
import { openCheckpointStore } from './eventstore/checkpoints.js';
import { openEventStore } from './eventstore/open.js';
import type { EventStore } from './eventstore/store.js';
import { timeAppends } from './eventstore/timed.js';
import type { GraphQLContext } from './graphql/builder.js';
import { useBadRequestStatus, useReadinessRoute, useRequestSizeLimit } from './graphql/plugins.js';
import { schema } from './graphql/schema.js';
import { openHistoryStore } from './history/history-store.js';
import { createLogger, type Logger, lineLogger, logCommand } from './log/logger.js';
import { useSlowRequestLog } from './log/slow-requests.js';
import { useMetricsRoute, useSubscriptionCount } from './metrics/plugins.js';
import { createSluiceMetrics, type SluiceMetrics } from './metrics/sluice-metrics.js';
import { checkpointPathFor, historyPathFor, type Settings } from './settings.js';

const ACTOR_HEADER = 'x-sluice-actor';

interface EnvelopedRoot {
  execute: (args: ExecutionArgs) => ReturnType<typeof execute>;
  subscribe: (args: ExecutionArgs) => ReturnType<typeof subscribe>;
}

function actorFrom(value: string | null | undefined): string {
  const actor = value?.trim();
  return actor && actor.length <= 255 ? actor : 'graphql';
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

export function createSluiceYoga(
  sluice: Sluice,
  observability: ObservabilityOptions = {},
): YogaServerInstance<Record<string, unknown>, GraphQLContext> {
  const { metrics, logger } = observability;
  return createYoga<Record<string, unknown>, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    graphiql: { title: 'Sluice', subscriptionsProtocol: 'WS' },
    // Over HTTP the actor comes from the request; over graphql-ws, onSubscribe passes it in.
    context: (initial) => ({
      sluice,
      actor:
        typeof initial.actor === 'string'
          ? initial.actor
          : actorFrom(initial.request?.headers?.get?.(ACTOR_HEADER) ?? null),
    }),
    plugins: [
      useReadinessRoute({ notReadyBecause: () => sluice.notReadyBecause() }),
      // A run with 1,000 steps and 1,000 tags of 255-character names fits in about 1.5 MB.
      useRequestSizeLimit({ maxBytes: 4 * 1024 * 1024 }),
      useBadRequestStatus(),
      ...(metrics
        ? [
            useMetricsRoute({ registry: metrics.registry, authorize: observability.authorizeMetrics }),
            useSubscriptionCount({ opened: metrics.subscriptionOpened, closed: metrics.subscriptionClosed }),
          ]
        : []),
      ...(logger ? [useSlowRequestLog({ logger, thresholdMs: observability.slowRequestMs ?? 1000 })] : []),
    ],
    logging: logger ? yogaLogging(logger) : process.env.NODE_ENV === 'test' ? false : 'info',
  });
}

export interface RunningServer {
  url: string;
  sluice: Sluice;
  store: EventStore;
  http: Server;
  metrics: SluiceMetrics;
  logger: Logger;
  close(): Promise<void>;
}

export interface ServerOptions {
  /** Who may read /metrics; default everyone who reaches the server. */
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
    if (settings.concurrencyConfigPath) {
      const text = await readFile(settings.concurrencyConfigPath, 'utf8');
      const file = readConcurrencyConfigFile(text, settings.concurrencyConfigPath);
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
  const yoga = createSluiceYoga(sluice, {
    metrics,
    logger,
    slowRequestMs: settings.slowRequestMs,
    authorizeMetrics: options.authorizeMetrics,
  });
  const http = createServer(yoga);
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
  const ws = new WebSocketServer({ server: http, path: yoga.graphqlEndpoint });
  const wsServer = useServer(
    {
      // Yoga's enveloped execute/subscribe travel in rootValue so its plugins wrap them.
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args),
      onSubscribe: async (ctx, _id, params) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
        });
        const document = parse(params.query);
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        return {
          schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue: await contextFactory({
            sluice,
            actor: actorFrom(ctx.extra.request.headers[ACTOR_HEADER] as string),
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
    `sluice serving ${url} (GraphiQL there), store ${store.description}`,
  );

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      monitor.stop();
      stopMetrics();
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
  return { url, sluice, store, http, metrics, logger, close };
}
