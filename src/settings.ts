/** The settings of DESIGN section 5, read from the environment once, at the edge. */
import { DEFAULT_SECURITY, readSecuritySettings, type SecuritySettings } from './auth/settings.js';

export interface Settings {
  port: number;
  host: string;
  eventStoreUrl: string;
  /** Path of a dagster.yaml-style file, or null. */
  concurrencyConfigPath: string | null;
  /** SQLite file for checkpoints of the projections; null: derived from the store (see checkpointPathFor). */
  checkpointPath?: string | null;
  /** Tokens, sites, limits (issue 13); absent: DEFAULT_SECURITY (open mode, loopback only). */
  security?: SecuritySettings;
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
  security: DEFAULT_SECURITY,
};

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
  try {
    settings.security = readSecuritySettings(env);
  } catch (error) {
    throw new SettingsError((error as Error).message);
  }
  return settings;
}
