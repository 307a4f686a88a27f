/**
 * Limit edits as a person reads them: what changed, from what, to what. Pure: the caller
 * folds the log's limit edits in order and asks for each one's description against the
 * settings in force just before it.
 */
import type { RunMonitoring } from '../../projections/state.js';
import { type ConcurrencyConfig, defaultConcurrencyConfig, type TagConcurrencyLimit } from './config.js';
import type { DomainEvent } from './events.js';

/** The event types that edit a limit or a monitoring setting. */
export const LIMIT_EDIT_TYPES = new Set<string>([
  'MaxConcurrentRunsSet',
  'TagConcurrencyLimitsSet',
  'PoolGranularitySet',
  'DefaultPoolLimitSet',
  'PoolLimitSet',
  'PoolLimitDeleted',
  'RunMonitoringSet',
  'RootStepHoldSet',
]);

/** The settings limit edits change, as they stand after some prefix of the log. */
export interface LimitSettings {
  /** The pool limits are the settings' own map, which applyLimitEdit updates in place. */
  config: ConcurrencyConfig & { poolLimits: Map<string, number> };
  monitoring: RunMonitoring;
}

export function initialLimitSettings(): LimitSettings {
  return {
    config: { ...defaultConcurrencyConfig(), poolLimits: new Map() },
    monitoring: { startTimeoutSeconds: 180, cancelTimeoutSeconds: 180, maxRuntimeSeconds: null },
  };
}

const runs = (n: number) => (n === -1 ? 'no limit' : String(n));
const orNone = (n: number | null | undefined) => (n === null || n === undefined ? 'none' : String(n));
const seconds = (n: number | null) => (n === null ? 'none' : `${n} s`);

function tagLimit(l: TagConcurrencyLimit): string {
  const what = l.applyLimitPerUniqueValue ? `${l.key}=(each value)` : l.value === null ? l.key : `${l.key}=${l.value}`;
  return `${what}: ${l.limit}`;
}

const tagLimits = (list: readonly TagConcurrencyLimit[]) =>
  list.length === 0 ? 'none' : list.map(tagLimit).join(', ');

/** The pool an edit is about, or null for edits of every pool or of run limits. */
export function poolOfEdit(event: DomainEvent): string | null {
  return event.type === 'PoolLimitSet' || event.type === 'PoolLimitDeleted' ? event.data.pool : null;
}

/** What the edit changed, in words, with the values before and after. Null for other events. */
export function describeLimitEdit(event: DomainEvent, before: LimitSettings): string | null {
  const c = before.config;
  switch (event.type) {
    case 'MaxConcurrentRunsSet':
      return `max concurrent runs: ${runs(c.maxConcurrentRuns)} → ${runs(event.data.limit)}`;
    case 'TagConcurrencyLimitsSet':
      return `tag limits: ${tagLimits(c.tagConcurrencyLimits)} → ${tagLimits(event.data.limits)}`;
    case 'PoolGranularitySet':
      return `pool granularity: ${c.poolGranularity} → ${event.data.granularity}`;
    case 'DefaultPoolLimitSet':
      return `default pool limit: ${orNone(c.defaultPoolLimit)} → ${orNone(event.data.limit)}`;
    case 'PoolLimitSet':
      return `pool ${event.data.pool} limit: ${orNone(c.poolLimits.get(event.data.pool))} → ${event.data.limit}`;
    case 'PoolLimitDeleted':
      return `pool ${event.data.pool} limit: ${orNone(c.poolLimits.get(event.data.pool))} → none (default limit ${orNone(c.defaultPoolLimit)} applies)`;
    case 'RunMonitoringSet': {
      const m = before.monitoring;
      const after = { ...event.data, maxRuntimeSeconds: event.data.maxRuntimeSeconds ?? null };
      const parts: string[] = [];
      if (m.startTimeoutSeconds !== after.startTimeoutSeconds) {
        parts.push(`start timeout ${seconds(m.startTimeoutSeconds)} → ${seconds(after.startTimeoutSeconds)}`);
      }
      if (m.cancelTimeoutSeconds !== after.cancelTimeoutSeconds) {
        parts.push(`cancel timeout ${seconds(m.cancelTimeoutSeconds)} → ${seconds(after.cancelTimeoutSeconds)}`);
      }
      if (m.maxRuntimeSeconds !== after.maxRuntimeSeconds) {
        parts.push(`default max runtime ${seconds(m.maxRuntimeSeconds)} → ${seconds(after.maxRuntimeSeconds)}`);
      }
      return `run monitoring: ${parts.join(', ') || 'unchanged'}`;
    }
    case 'RootStepHoldSet': {
      const h = c.rootStepHold;
      const after = event.data;
      const parts: string[] = [];
      const onOff = (on: boolean) => (on ? 'on' : 'off');
      if (h.enabled !== after.enabled) parts.push(`${onOff(h.enabled)} → ${onOff(after.enabled)}`);
      if (h.runBuffer !== after.runBuffer) parts.push(`run buffer ${h.runBuffer} → ${after.runBuffer}`);
      if (h.startedRunAllotmentSeconds !== after.startedRunAllotmentSeconds) {
        parts.push(
          `started-run allotment ${seconds(h.startedRunAllotmentSeconds)} → ${seconds(after.startedRunAllotmentSeconds)}`,
        );
      }
      return `root-step hold: ${parts.join(', ') || 'unchanged'}`;
    }
    default:
      return null;
  }
}

/**
 * Folds a limit edit into the settings, in place (other events leave them as they are): the
 * caller folds the log from its start, and copying the pool limits per edit would make a log of
 * many pool edits cost their square.
 */
export function applyLimitEdit(settings: LimitSettings, event: DomainEvent): void {
  const config = settings.config;
  switch (event.type) {
    case 'MaxConcurrentRunsSet':
      config.maxConcurrentRuns = event.data.limit;
      break;
    case 'TagConcurrencyLimitsSet':
      config.tagConcurrencyLimits = event.data.limits;
      break;
    case 'PoolGranularitySet':
      config.poolGranularity = event.data.granularity;
      break;
    case 'DefaultPoolLimitSet':
      config.defaultPoolLimit = event.data.limit;
      break;
    case 'PoolLimitSet':
      config.poolLimits.set(event.data.pool, event.data.limit);
      break;
    case 'PoolLimitDeleted':
      config.poolLimits.delete(event.data.pool);
      break;
    case 'RootStepHoldSet':
      config.rootStepHold = { ...event.data };
      break;
    case 'RunMonitoringSet':
      settings.monitoring = {
        startTimeoutSeconds: event.data.startTimeoutSeconds,
        cancelTimeoutSeconds: event.data.cancelTimeoutSeconds,
        maxRuntimeSeconds: event.data.maxRuntimeSeconds ?? null,
      };
      break;
  }
}
