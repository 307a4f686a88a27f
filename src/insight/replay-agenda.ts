/**
 * What a replay drives the decider with, read from a window of the log: each recorded command
 * that came from outside (an arrival, a worker's start, heartbeat, claim, release or finish, an
 * operator's edit or cancel), timed the way the replay needs it:
 *
 * - arrivals, limit edits and cancels of queued runs at their recorded instant;
 * - what a worker did with an admitted run at the same delay after the run's admission, so a
 *   run admitted later in the replay runs for as long as it did (its recorded length);
 * - a step's release at the same delay after its slot was granted (its recorded hold time);
 * - timeouts at the same delay after admission, as Sluice's monitor recorded them.
 *
 * Decisions (admissions, holds, grants, limit states) are not read: the replay makes its own.
 */
import { MONITOR_ACTOR } from '../app/run-monitor.js';
import type { Command, ConfigChangeInput, EnqueueRunInput } from '../domain/commands.js';
import { timeoutKindOf } from '../domain/deadlines.js';
import type { LoggedEvent } from '../domain/events.js';

/** A command at a recorded instant, or at a delay after an instant the replay decides. */
export type AgendaItem =
  | { when: 'at'; atMs: number; order: bigint; command: Command }
  | { when: 'afterAdmission'; runId: string; delayMs: number; order: bigint; command: Command; recordedMs: number }
  | {
      when: 'afterGrant';
      runId: string;
      stepKey: string;
      delayMs: number;
      order: bigint;
      command: Command;
      recordedMs: number;
    };

const CONFIG_EVENTS = new Set([
  'MaxConcurrentRunsSet',
  'TagConcurrencyLimitsSet',
  'PoolGranularitySet',
  'DefaultPoolLimitSet',
  'PoolLimitSet',
  'PoolLimitDeleted',
  'RootStepHoldSet',
]);

/** A recorded limit edit as the part of a config change it made. */
function changeOf(event: LoggedEvent, into: ConfigChangeInput): void {
  switch (event.type) {
    case 'MaxConcurrentRunsSet':
      into.maxConcurrentRuns = event.data.limit;
      break;
    case 'TagConcurrencyLimitsSet':
      into.tagConcurrencyLimits = event.data.limits.map((l) => ({
        key: l.key,
        value: l.value,
        limit: l.limit,
        applyLimitPerUniqueValue: l.applyLimitPerUniqueValue,
      }));
      break;
    case 'PoolGranularitySet':
      into.poolGranularity = event.data.granularity;
      break;
    case 'DefaultPoolLimitSet':
      into.defaultPoolLimit = event.data.limit;
      break;
    // Two edits of one pool (two commands at one instant, read as one change): the later one
    // stands, as it did; listing the pool twice would make the change invalid.
    case 'PoolLimitSet':
      into.poolLimits = [
        ...(into.poolLimits ?? []).filter((p) => p.pool !== event.data.pool),
        { pool: event.data.pool, limit: event.data.limit },
      ];
      break;
    case 'PoolLimitDeleted':
      into.poolLimits = [
        ...(into.poolLimits ?? []).filter((p) => p.pool !== event.data.pool),
        { pool: event.data.pool, limit: null },
      ];
      break;
    case 'RootStepHoldSet':
      into.rootStepHold = { ...event.data };
      break;
    default:
      break;
  }
}

/** What the starting state tells the agenda about runs and claims already there. */
export interface AgendaStart {
  /** When each run in progress was admitted (epoch ms). */
  admittedAt: ReadonlyMap<string, number>;
  /** Runs queued. */
  queued: ReadonlySet<string>;
  /** Claims granted or waiting, by `runId\0stepKey`, with when granted (null: waiting). */
  claims: ReadonlyMap<string, number | null>;
}

/** @param events the recorded events after the replay's starting state, in log order */
export function agendaOf(events: readonly LoggedEvent[], start: AgendaStart): AgendaItem[] {
  const items: AgendaItem[] = [];
  const admitted = new Map(start.admittedAt);
  const granted = new Map<string, number>();
  for (const [claim, at] of start.claims) if (at !== null) granted.set(claim, at);
  const activeClaims = new Set(start.claims.keys());
  const addedSteps = new Map<string, string>();
  const queued = new Set(start.queued);
  let pendingChange: { change: ConfigChangeInput; atMs: number; order: bigint; last: bigint } | null = null;
  const flushChange = () => {
    if (!pendingChange) return;
    items.push({
      when: 'at',
      atMs: pendingChange.atMs,
      order: pendingChange.order,
      command: { type: 'ChangeConcurrencyConfig', change: pendingChange.change },
    });
    pendingChange = null;
  };
  // Events of one append share their instant: each instant is parsed once.
  let lastAt = '';
  let atMs = Number.NaN;
  /** A command about an admitted run, at the current event's instant (atMs). */
  const afterAdmission = (event: LoggedEvent, runId: string, command: Command) => {
    const since = admitted.get(runId);
    if (since === undefined) items.push({ when: 'at', atMs, order: event.revision, command });
    else
      items.push({
        when: 'afterAdmission',
        runId,
        delayMs: atMs - since,
        order: event.revision,
        command,
        recordedMs: atMs,
      });
  };

  for (const event of events) {
    if (event.at !== lastAt) {
      lastAt = event.at;
      atMs = Date.parse(lastAt);
    }
    if (CONFIG_EVENTS.has(event.type)) {
      // The edits of one command are contiguous and share an instant: one change, one pass.
      if (!pendingChange || pendingChange.atMs !== atMs || pendingChange.last + 1n !== event.revision) {
        flushChange();
        pendingChange = { change: {}, atMs, order: event.revision, last: event.revision };
      }
      changeOf(event, pendingChange.change);
      pendingChange.last = event.revision;
      continue;
    }
    flushChange();
    switch (event.type) {
      case 'RunEnqueued': {
        const { runId, jobName, tags, steps, priority, maxConcurrentSteps, leaseSeconds } = event.data;
        const input: EnqueueRunInput = { runId, jobName, tags, steps, priority, maxConcurrentSteps, leaseSeconds };
        queued.add(runId);
        items.push({ when: 'at', atMs, order: event.revision, command: { type: 'EnqueueRun', input } });
        break;
      }
      case 'RunAdmitted':
        queued.delete(event.data.runId);
        admitted.set(event.data.runId, atMs);
        break;
      case 'RunStarted':
        afterAdmission(event, event.data.runId, { type: 'MarkRunStarted', runId: event.data.runId });
        break;
      case 'RunHeartbeatRecorded':
        afterAdmission(event, event.data.runId, { type: 'Heartbeat', runId: event.data.runId });
        break;
      case 'RunCancellationRequested':
        afterAdmission(event, event.data.runId, { type: 'TerminateRun', runId: event.data.runId, force: false });
        break;
      case 'RootStepAllotmentEnded':
        // Recorded by the monitor's wake-up, or by the start itself (no allotment window).
        if (event.actor === MONITOR_ACTOR) afterAdmission(event, event.data.runId, { type: 'ExpireDeadlines' });
        break;
      case 'RunFinished': {
        const { runId, status, reason } = event.data;
        if (queued.has(runId)) {
          // Canceled while queued: at the same instant, whether or not the replay admitted it.
          queued.delete(runId);
          items.push({
            when: 'at',
            atMs,
            order: event.revision,
            command: { type: 'TerminateRun', runId, force: true },
          });
        } else if (reason === 'terminated with force') {
          afterAdmission(event, runId, { type: 'TerminateRun', runId, force: true });
        } else if (reason !== null && timeoutKindOf(reason) !== null) {
          // The monitor's wake-up expires every run due; a command about the run only that run
          // (a heartbeat: it ends the run when a deadline has passed, as every command does).
          const command: Command =
            event.actor === MONITOR_ACTOR ? { type: 'ExpireDeadlines' } : { type: 'Heartbeat', runId };
          afterAdmission(event, runId, command);
        } else {
          afterAdmission(event, runId, { type: 'MarkRunFinished', runId, status });
        }
        // Nothing after its end is timed from its admission: the map keeps only runs in progress.
        admitted.delete(runId);
        break;
      }
      case 'RunStepAdded':
        addedSteps.set(`${event.data.runId}\u0000${event.data.stepKey}`, event.data.pool);
        break;
      case 'StepSlotPending':
      case 'StepSlotGranted': {
        const { runId, stepKey } = event.data;
        const claim = `${runId}\u0000${stepKey}`;
        if (event.type === 'StepSlotGranted') granted.set(claim, atMs);
        if (activeClaims.has(claim)) break;
        activeClaims.add(claim);
        const pool = addedSteps.get(claim);
        afterAdmission(event, runId, { type: 'ClaimStepSlot', runId, stepKey, ...(pool ? { pool } : {}) });
        break;
      }
      case 'StepSlotReleased': {
        const { runId, stepKey, held, reason } = event.data;
        const claim = `${runId}\u0000${stepKey}`;
        activeClaims.delete(claim);
        const since = granted.get(claim);
        granted.delete(claim);
        if (reason === 'slot freed by an admin' || reason === 'waiting claim withdrawn by an admin') {
          afterAdmission(event, runId, { type: 'FreeStepSlots', runId, stepKey });
        } else if (reason !== null) {
          // Released because the run ended or is being canceled: the replay releases it the same way.
        } else if (held && since !== undefined) {
          items.push({
            when: 'afterGrant',
            runId,
            stepKey,
            delayMs: atMs - since,
            order: event.revision,
            command: { type: 'ReleaseStepSlot', runId, stepKey },
            recordedMs: atMs,
          });
        } else {
          afterAdmission(event, runId, { type: 'ReleaseStepSlot', runId, stepKey });
        }
        break;
      }
      case 'RunMonitoringSet':
        items.push({
          when: 'at',
          atMs,
          order: event.revision,
          command: { type: 'SetRunMonitoring', ...event.data },
        });
        break;
      default:
        break;
    }
  }
  flushChange();
  return items;
}
