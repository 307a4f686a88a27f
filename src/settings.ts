/** The settings of DESIGN section 5, read from the environment once, at the edge. */

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LevelWithSilent } from 'pino';
import { DEFAULT_SECURITY, readSecuritySettings, type SecuritySettings } from './auth/settings.js';
import { LIMITS } from './domain/config.js';
import { LOG_LEVELS } from './log/logger.js';

export interface Settings {
  port: number;
  host: string;
  eventStoreUrl: string;
  /** Path of a dagster.yaml-style file, or null. */
  concurrencyConfigPath: string | null;
  /** SQLite file for checkpoints of the projections; null: derived from the store (see checkpointPathFor). */
  checkpointPath?: string | null;
  /**
   * From a checkpoint this long (characters) on, a worker thread writes the checkpoints, holding a
   * second copy of the live state; default 1 MiB (see Checkpointing).
   */
  checkpointWorkerFromBytes?: number;
  /** SQLite file of the history read model; null: derived from the store (see historyPathFor). */
  historyPath?: string | null;
  /** pino level: fatal, error, warn, info (default), debug, trace or silent. */
  logLevel?: LevelWithSilent;
  /** Requests slower than this many milliseconds log a warning; 0: none. Default 1000. */
  slowRequestMs?: number;
  /** From DAGSTER_OP_CONCURRENCY_KEYS_ALLOTTED_FOR_STARTED_RUN_SECONDS; applied at start like the config file. */
  startedRunAllotmentSeconds?: number;
  /** Tokens, sites, limits; absent: DEFAULT_SECURITY (open mode, loopback only). */
  security?: SecuritySettings;
  /** Folder of the built dashboard; null: dist/web of this package (see builtDashboardDir). */
  dashboardDir?: string | null;
}

export class SettingsError extends Error {
  override readonly name = 'SettingsError';
}

export const DEFAULT_SETTINGS: Settings = {
  port: 4000,
  host: '127.0.0.1',
  eventStoreUrl: 'sqlite:data/events.db',
  concurrencyConfigPath: null,
  checkpointPath: null,
  historyPath: null,
  logLevel: 'info',
  slowRequestMs: 1000,
  security: DEFAULT_SECURITY,
};

/** dist/web of the package this module belongs to, run from the sources (tsx) or from dist/. */
export function builtDashboardDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, 'dist', 'web');
}

/** Checkpoints sit beside a SQLite log; an in-memory log keeps them in memory too. */
export function checkpointPathFor(settings: Settings): string {
  if (settings.checkpointPath) return settings.checkpointPath;
  if (settings.eventStoreUrl === 'sqlite::memory:') return ':memory:';
  if (settings.eventStoreUrl.startsWith('sqlite:')) {
    return settings.eventStoreUrl.slice('sqlite:'.length).replace(/(\.db)?$/, '.checkpoints.db');
  }
  return 'data/checkpoints.db';
}

/**
 * The history read model sits beside a SQLite log; for a shared store each server keeps its own
 * copy on local disk (rebuilt from the log when missing), so reads of the past never cross the network.
 */
export function historyPathFor(settings: Settings): string {
  if (settings.historyPath) return settings.historyPath;
  if (settings.eventStoreUrl === 'sqlite::memory:') return ':memory:';
  if (settings.eventStoreUrl.startsWith('sqlite:')) {
    return settings.eventStoreUrl.slice('sqlite:'.length).replace(/(\.db)?$/, '.history.db');
  }
  // One file per store and server (by port: stable across restarts, distinct between servers on one
  // machine), so each server rebuilds and follows its own copy and no two logs ever meet in one file.
  const id = createHash('sha256').update(settings.eventStoreUrl).digest('hex').slice(0, 12);
  return `data/history-${id}-${settings.port}.db`;
}

/**
 * Dagster's own variable for how long a STARTED run's unclaimed root steps still count as holding
 * their slots (RootStepHold): read under the same name, so a deployment's setting carries over.
 */
export const ALLOTMENT_ENV = 'DAGSTER_OP_CONCURRENCY_KEYS_ALLOTTED_FOR_STARTED_RUN_SECONDS';

export function readSettings(env: Record<string, string | undefined> = process.env): Settings {
  const settings = { ...DEFAULT_SETTINGS };
  if (env.PORT !== undefined && env.PORT !== '') {
    const port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new SettingsError(`PORT must be an integer from 0 to 65535, got ${JSON.stringify(env.PORT)}`);
    }
    settings.port = port;
  }
  if (env.HOST) settings.host = env.HOST;
  if (env.EVENT_STORE_URL) settings.eventStoreUrl = env.EVENT_STORE_URL;
  if (env.CONCURRENCY_CONFIG) settings.concurrencyConfigPath = env.CONCURRENCY_CONFIG;
  if (env.CHECKPOINT_PATH) settings.checkpointPath = env.CHECKPOINT_PATH;
  if (env.HISTORY_PATH) settings.historyPath = env.HISTORY_PATH;
  if (env.CHECKPOINT_WORKER_FROM_BYTES !== undefined && env.CHECKPOINT_WORKER_FROM_BYTES !== '') {
    const bytes = Number(env.CHECKPOINT_WORKER_FROM_BYTES);
    if (!Number.isInteger(bytes) || bytes < 0) {
      throw new SettingsError(
        `CHECKPOINT_WORKER_FROM_BYTES must be a whole number of bytes (0: always a worker thread), got ${JSON.stringify(env.CHECKPOINT_WORKER_FROM_BYTES)}`,
      );
    }
    settings.checkpointWorkerFromBytes = bytes;
  }
  if (env.LOG_LEVEL) {
    const level = env.LOG_LEVEL.trim().toLowerCase();
    if (!(LOG_LEVELS as readonly string[]).includes(level)) {
      throw new SettingsError(
        `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(env.LOG_LEVEL)}`,
      );
    }
    settings.logLevel = level as LevelWithSilent;
  }
  if (env.SLOW_REQUEST_MS !== undefined && env.SLOW_REQUEST_MS !== '') {
    const ms = Number(env.SLOW_REQUEST_MS);
    if (!Number.isInteger(ms) || ms < 0) {
      throw new SettingsError(
        `SLOW_REQUEST_MS must be a whole number of milliseconds (0: no warnings), got ${JSON.stringify(env.SLOW_REQUEST_MS)}`,
      );
    }
    settings.slowRequestMs = ms;
  }
  const allotment = env[ALLOTMENT_ENV];
  if (allotment !== undefined && allotment !== '') {
    const seconds = Number(allotment);
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > LIMITS.maxAllotmentSeconds) {
      throw new SettingsError(
        `${ALLOTMENT_ENV} must be a whole number of seconds from 0 to ${LIMITS.maxAllotmentSeconds}, got ${JSON.stringify(allotment)}`,
      );
    }
    settings.startedRunAllotmentSeconds = seconds;
  }
  try {
    settings.security = readSecuritySettings(env);
  } catch (error) {
    throw new SettingsError((error as Error).message);
  }
  return settings;
}
