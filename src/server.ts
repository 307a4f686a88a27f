/**
 * Start-up and shutdown of the server, as a straight line: load the tokens, open the store and
 * the live state (see Sluice.open: choose a checkpoint, catch up the history, replay the log,
 * follow it), apply the limits the environment and dagster.yaml set, start the run monitor,
 * serve GraphQL over HTTP and WebSocket.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { applyConfigFile } from './app/apply-dagster-yaml.js';
import { recordRulesVersion } from './app/rules-version.js';
import { startRunMonitor } from './app/run-monitor.js';
import { type HistoryToCreate, Sluice } from './app/sluice.js';
import { DEFAULT_SECURITY, type SecuritySettings } from './auth/settings.js';
import { isLoopback, sitePolicyFor } from './auth/site.js';
import { Tokens } from './auth/tokens.js';
import { readConcurrencyConfigFile } from './dagster-yaml.js';
import { CURRENT_RULES } from './domain/rules.js';
import { checkpointFileCreatedOnSave } from './eventstore/checkpoint-file.js';
import { openCheckpointStore } from './eventstore/checkpoints.js';
import { openEventStore } from './eventstore/open.js';
import type { EventStore } from './eventstore/store.js';
import { timeAppends } from './eventstore/timed.js';
import { createSluiceYoga } from './graphql/yoga.js';
import { type HistoryStore, openHistoryStore } from './history/history-store.js';
import { attachWebSockets, httpServer, listen, siteGuarded, trackResponses } from './http-server.js';
import { createLogger, type Logger, lineLogger, logCommand } from './log/logger.js';
import { createSluiceMetrics, type SluiceMetrics } from './metrics/sluice-metrics.js';
import { ALLOTMENT_ENV, checkpointPathFor, historyPathFor, type Settings, SettingsError } from './settings.js';

export {
  createSluiceYoga,
  type DashboardOptions,
  IN_PROCESS_SECURITY,
  type ObservabilityOptions,
  type SluiceYogaOptions,
  type YogaSecurity,
} from './graphql/yoga.js';

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
  const store = timeAppends(
    await openEventStore(settings.eventStoreUrl, { warn: (message) => logger.warn(message) }),
    metrics.recordAppend,
  );
  // Created with the first checkpoint, after the server answers (see checkpoint-file.ts).
  const checkpointPath = checkpointPathFor(settings);
  const checkpoints = checkpointFileCreatedOnSave(checkpointPath, () =>
    openCheckpointStore(checkpointPath, (message) => logger.warn(message)),
  );
  let sluice: Sluice;
  let stopMetrics = () => {};
  try {
    sluice = await Sluice.open({
      store,
      checkpoints,
      checkpointWorkerFromBytes: settings.checkpointWorkerFromBytes,
      history: historyFile(historyPathFor(settings), (message) => logger.warn(message)),
      warn: (message) => logger.warn(message),
      info: (message) => logger.info(message),
      onCommand: (record) => {
        metrics.recordCommand(record);
        logCommand(logger, record);
      },
    });
    // Before the config file: the decisions its limit edits cause are counted too.
    stopMetrics = metrics.follow(sluice);
    await applyStartupLimits(sluice, settings, logger);
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
  try {
    await listen(http, settings.port, settings.host);
  } catch (error) {
    monitor.stop();
    await sluice.close();
    await store.close();
    checkpoints.close();
    throw error;
  }
  const stopWebSockets = attachWebSockets(http, yoga, {
    sluice,
    tokens,
    site,
    maxPayloadBytes: security.limits.maxBodyBytes,
    maxBufferedBytes: security.connections.maxWebSocketBufferedBytes,
    responses,
  });

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
      await stopWebSockets();
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

/** The history file; one that does not exist yet is created after the server answers (see HistoryToCreate). */
function historyFile(path: string, warn: (message: string) => void): HistoryStore | HistoryToCreate {
  return existsSync(path) ? openHistoryStore(path, warn) : { create: () => openHistoryStore(path, warn) };
}

/**
 * The limits set outside the log, recorded as edits where they differ from it: Dagster's
 * allotment variable, then the dagster.yaml of CONCURRENCY_CONFIG (saying what it does not act on).
 */
async function applyStartupLimits(sluice: Sluice, settings: Settings, logger: Logger): Promise<void> {
  // A config file that is refused leaves the store as it was: it is read before anything is appended.
  const file = settings.concurrencyConfigPath
    ? readConcurrencyConfigFile(await readFile(settings.concurrencyConfigPath, 'utf8'), settings.concurrencyConfigPath)
    : null;
  // Before any edit: the record beside the log says which rules decide from here on.
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
