/**
 * Applies a dagster.yaml's limits as limit-edit events, only where they differ from the log:
 * the decider appends nothing for a value already in force, so restarting with the same file
 * records nothing new.
 */

import type { RunMonitoring } from '../../projections/state.js';
import type { ConfigFileSettings } from '../dagster-yaml.js';
import type { Command } from '../domain/commands.js';
import type { Sluice } from './sluice.js';

export function configCommands(settings: ConfigFileSettings, current: RunMonitoring): Command[] {
  const commands: Command[] = [];
  const monitoring = settings.runMonitoring;
  if (
    monitoring.startTimeoutSeconds !== undefined ||
    monitoring.cancelTimeoutSeconds !== undefined ||
    monitoring.maxRuntimeSeconds !== undefined
  ) {
    commands.push({
      type: 'SetRunMonitoring',
      startTimeoutSeconds: monitoring.startTimeoutSeconds ?? current.startTimeoutSeconds,
      cancelTimeoutSeconds: monitoring.cancelTimeoutSeconds ?? current.cancelTimeoutSeconds,
      maxRuntimeSeconds:
        monitoring.maxRuntimeSeconds === undefined ? current.maxRuntimeSeconds : monitoring.maxRuntimeSeconds,
    });
  }
  if (settings.poolGranularity !== undefined) {
    commands.push({ type: 'SetPoolGranularity', granularity: settings.poolGranularity });
  }
  if (settings.defaultPoolLimit !== undefined) {
    commands.push({ type: 'SetDefaultPoolLimit', limit: settings.defaultPoolLimit });
  }
  if (settings.tagConcurrencyLimits !== undefined) {
    commands.push({ type: 'SetTagConcurrencyLimits', limits: settings.tagConcurrencyLimits });
  }
  if (settings.maxConcurrentRuns !== undefined) {
    commands.push({ type: 'SetMaxConcurrentRuns', limit: settings.maxConcurrentRuns });
  }
  if (settings.blockOpConcurrencyLimitedRuns !== undefined || settings.opGranularityRunBuffer !== undefined) {
    commands.push({
      type: 'ChangeConcurrencyConfig',
      change: {
        rootStepHold: { enabled: settings.blockOpConcurrencyLimitedRuns, runBuffer: settings.opGranularityRunBuffer },
      },
    });
  }
  return commands;
}

/** Returns how many events the file's values appended. */
export async function applyConfigFile(sluice: Sluice, settings: ConfigFileSettings, source: string): Promise<number> {
  let appended = 0;
  for (const command of configCommands(settings, sluice.state.monitoring)) {
    const outcome = await sluice.execute(command, `config-file:${source}`);
    appended += outcome.events.length;
  }
  return appended;
}
