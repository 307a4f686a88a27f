/** Wiring: Yoga over HTTP, graphql-ws over the same port, health routes, graceful shutdown. */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExecutionArgs, execute, subscribe } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type GraphiQLOptions, type YogaServerInstance } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { applyConfigFile } from './app/config-file.js';
import { startRunMonitor } from './app/run-monitor.js';
import { Sluice } from './app/sluice.js';
import { parseConcurrencyConfigFile } from './config-file.js';
import { openCheckpointStore } from './eventstore/checkpoints.js';
import { openEventStore } from './eventstore/open.js';
import type { EventStore } from './eventstore/store.js';
import type { GraphQLContext } from './graphql/builder.js';
import {
  GRAPHIQL_ASSETS_PREFIX,
  GRAPHIQL_DEFAULT_QUERY,
  graphiqlAssetsDir,
  renderOfflineGraphiQL,
} from './graphql/graphiql.js';
import { useBadRequestStatus, useReadinessRoute, useRequestSizeLimit } from './graphql/plugins.js';
import { schema } from './graphql/schema.js';
import { useStaticFiles } from './graphql/static-files.js';
import { builtDashboardDir, checkpointPathFor, type Settings } from './settings.js';

const ACTOR_HEADER = 'x-sluice-actor';

interface EnvelopedRoot {
  execute: (args: ExecutionArgs) => ReturnType<typeof execute>;
  subscribe: (args: ExecutionArgs) => ReturnType<typeof subscribe>;
}

function actorFrom(value: string | null | undefined): string {
  const actor = value?.trim();
  return actor && actor.length <= 255 ? actor : 'graphql';
}

/** Paths the dashboard's client-side routes never shadow. */
const SERVER_ROUTES = /^\/(graphql|health|ready|metrics)(\/|$)/;

export function createSluiceYoga(
  sluice: Sluice,
  options: { dashboardDir?: string | null } = {},
): YogaServerInstance<Record<string, unknown>, GraphQLContext> {
  return createYoga<Record<string, unknown>, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    graphiql: {
      title: 'Sluice',
      subscriptionsProtocol: 'WS',
      defaultQuery: GRAPHIQL_DEFAULT_QUERY,
      initialQuery: GRAPHIQL_DEFAULT_QUERY,
    } as GraphiQLOptions,
    renderGraphiQL: renderOfflineGraphiQL,
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
    logging: process.env.NODE_ENV === 'test' ? false : 'info',
  });
}

export interface RunningServer {
  url: string;
  sluice: Sluice;
  store: EventStore;
  http: Server;
  close(): Promise<void>;
}

/** Opens the store, replays the log, applies the config file, and serves. */
export async function startServer(
  settings: Settings,
  log: (line: string) => void = console.log,
): Promise<RunningServer> {
  const store = await openEventStore(settings.eventStoreUrl);
  const checkpoints = openCheckpointStore(checkpointPathFor(settings));
  let sluice: Sluice;
  try {
    sluice = await Sluice.open({ store, checkpoints, warn: log });
    if (settings.concurrencyConfigPath) {
      const text = await readFile(settings.concurrencyConfigPath, 'utf8');
      const file = parseConcurrencyConfigFile(text, settings.concurrencyConfigPath);
      const appended = await applyConfigFile(sluice, file, settings.concurrencyConfigPath);
      log(`applied ${settings.concurrencyConfigPath}: ${appended} limit edit(s) appended`);
    }
  } catch (error) {
    await store.close();
    checkpoints.close();
    throw error;
  }

  const monitor = startRunMonitor(sluice, (error) => log(`run monitor: ${(error as Error).message}`));
  const yoga = createSluiceYoga(sluice, { dashboardDir: settings.dashboardDir ?? null });
  const http = createServer(yoga);
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

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(settings.port, settings.host, () => resolve());
  });
  const address = http.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}/graphql`;

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      monitor.stop();
      await wsServer.dispose();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      await sluice.close();
      await store.close();
      checkpoints.close();
    })());
  return { url, sluice, store, http, close };
}
