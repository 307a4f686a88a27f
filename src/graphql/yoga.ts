/**
 * The GraphQL server over HTTP (Yoga): the schema behind the guards (site, tokens, roles, request
 * limits), errors masked, the readiness and metrics routes, GraphiQL and the dashboard's files.
 */
import { GraphQLError } from 'graphql';
import { createYoga, type GraphiQLOptions, maskError, type YogaServerInstance } from 'graphql-yoga';
import type { Sluice } from '../app/sluice.js';
import { actorOf, ON_BEHALF_OF_HEADER } from '../auth/actor.js';
import { type Principal, roleAllows } from '../auth/roles.js';
import { DEFAULT_SECURITY, type RequestLimits } from '../auth/settings.js';
import { ANY_HOST, type SitePolicy } from '../auth/site.js';
import { Tokens } from '../auth/tokens.js';
import { StoreUnavailableError } from '../eventstore/errors.js';
import type { Logger } from '../log/logger.js';
import { useSlowRequestLog } from '../log/slow-requests.js';
import { useMetricsRoute, useSubscriptionCount } from '../metrics/plugins.js';
import type { SluiceMetrics } from '../metrics/sluice-metrics.js';
import { builtDashboardDir } from '../settings.js';
import type { GraphQLContext } from './builder.js';
import { storeUnavailableExtensions } from './errors.js';
import {
  GRAPHIQL_ASSETS_PREFIX,
  GRAPHIQL_DEFAULT_QUERY,
  graphiqlAssetsDir,
  renderOfflineGraphiQL,
} from './graphiql.js';
import {
  corsFor,
  useAuthentication,
  useQuietErrors,
  useRoles,
  useSiteChecks,
  useSubscriptionBudget,
} from './guards.js';
import { boundedParseCache, requestLimitPlugins } from './limits.js';
import { useBadRequestStatus, useReadinessRoute, useRequestSizeLimit } from './plugins.js';
import { schema } from './schema.js';
import { useSharedSubscriptionResults } from './shared-subscriptions.js';
import { useSharedSseFrames } from './sse-frames.js';
import { useStaticFiles } from './static-files.js';

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

export function unauthenticated(): GraphQLError {
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
    // Bodies are capped by useRequestSizeLimit, which counts only those without a Content-Length.
    maxRequestBodySize: false,
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
            extensions: storeUnavailableExtensions(original),
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
      useReadinessRoute({ notReadyBecause: () => sluice.notReadyBecause(), details: () => historyDetails(sluice) }),
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
      // Before the budget, which wraps whatever subscribe function is set when it runs.
      useSharedSubscriptionResults(),
      useSharedSseFrames(),
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

/**
 * While the history read model catches up in the background after a start, how far it is (the
 * server answers meanwhile: only reads of the history wait). Nothing once it has caught up.
 */
function historyDetails(sluice: Sluice): Record<string, unknown> {
  const { position, logPosition, catchingUp } = sluice.historyStatus();
  if (!catchingUp) return {};
  return {
    history: {
      catchingUp,
      position: position.toString(),
      logPosition: logPosition.toString(),
      behind: Number(logPosition - position),
    },
  };
}

/** The options a caller set (an explicit undefined keeps the default). */
function definedOf<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
