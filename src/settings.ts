/** The settings of DESIGN section 5, read from the environment once, at the edge. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Settings {
  port: number;
  host: string;
  eventStoreUrl: string;
  /** Path of a dagster.yaml-style file, or null. */
  concurrencyConfigPath: string | null;
  /** SQLite file for checkpoints of the projections; null: derived from the store (see checkpointPathFor). */
  checkpointPath?: string | null;
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
  return settings;
}
