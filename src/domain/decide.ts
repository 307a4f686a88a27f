/**
 * The decider: `decide(command, state, context) → events`. Pure: time and new ids come in
 * through the context, nothing is read or written. Every command that can free or change
 * capacity runs the admission pass and appends its decisions with its own events.
 */
import type { RunRecord, State } from '../../projections/state.js';
import { admissionPass, type CapacityChange } from './admission.js';
import {
  type Command,
  validateEnqueue,
  validateFinalStatus,
  validateGranularity,
  validateLimit,
  validateMaxConcurrentRuns,
  validatePoolName,
  validateRunId,
  validateTagLimits,
} from './commands.js';
import type { ConcurrencyConfig, TagConcurrencyLimit } from './config.js';
import { ALL_RUNS, poolCount, tagKeyCount, tagValueCount } from './constraints.js';
import { RunNotFoundError, TransitionNotAllowedError } from './errors.js';
import type { DomainEvent } from './events.js';
import { type FinalStatus, isFinished, isInProgress, poolsOf, priorityOf } from './run.js';

export interface DecideContext {
  /** ISO-8601 UTC time of the command. */
  now: string;
  /** The id to give a run enqueued without one. */
  newRunId: string;
}

function withPass(state: State, primary: DomainEvent[], change: CapacityChange): DomainEvent[] {
  const { admitted, blocked } = admissionPass(state, change);
  return [
    ...primary,
    ...admitted.map((run): DomainEvent => ({ type: 'RunAdmitted', data: { runId: run.id } })),
    ...blocked.map(({ run, reasons }): DomainEvent => ({ type: 'RunBlocked', data: { runId: run.id, reasons } })),
  ];
}

function existingRun(state: State, runId: string): RunRecord {
  const run = state.runs.get(validateRunId(runId));
  if (!run) throw new RunNotFoundError(runId);
  return run;
}

/** A run as it would be right after RunEnqueued, for the pass to consider. */
function draftRun(state: State, data: Extract<DomainEvent, { type: 'RunEnqueued' }>['data'], now: string): RunRecord {
  return {
    id: data.runId,
    jobName: data.jobName,
    status: 'QUEUED',
    tags: data.tags,
    steps: data.steps,
    pools: poolsOf(data.steps),
    priority: data.priority,
    seq: state.runIds.length,
    maxConcurrentSteps: data.maxConcurrentSteps,
    leaseSeconds: data.leaseSeconds,
    enqueuedAt: now,
    admittedAt: null,
    startedAt: null,
    cancelRequestedAt: null,
    finishedAt: null,
    finishReason: null,
    blockedBy: [],
    waits: [],
    decisions: [],
  };
}

function finish(state: State, run: RunRecord, status: FinalStatus, reason: string | null): DomainEvent[] {
  const primary: DomainEvent[] = [{ type: 'RunFinished', data: { runId: run.id, status, reason } }];
  return isInProgress(run.status) ? withPass(state, primary, { freed: [run] }) : primary;
}

/** Count keys whose limits differ between two lists of tag limits. */
function editedTagKeys(before: readonly TagConcurrencyLimit[], after: readonly TagConcurrencyLimit[]): Set<string> {
  const id = (l: TagConcurrencyLimit) => JSON.stringify([l.key, l.value, l.applyLimitPerUniqueValue, l.limit]);
  const beforeIds = new Set(before.map(id));
  const afterIds = new Set(after.map(id));
  const keys = new Set<string>();
  for (const l of [...before.filter((l) => !afterIds.has(id(l))), ...after.filter((l) => !beforeIds.has(id(l)))]) {
    keys.add(l.value !== null && !l.applyLimitPerUniqueValue ? tagValueCount(l.key, l.value) : tagKeyCount(l.key));
  }
  return keys;
}

function editConfig(
  state: State,
  primary: DomainEvent,
  config: ConcurrencyConfig,
  editedKeys: Set<string>,
): DomainEvent[] {
  return withPass(state, [primary], { config, editedKeys });
}

export function decide(command: Command, state: State, context: DecideContext): DomainEvent[] {
  const config = state.config;
  switch (command.type) {
    case 'EnqueueRun': {
      const input = validateEnqueue(command.input);
      const runId = input.runId ?? context.newRunId;
      // Enqueueing an id twice is a retry, not a second run.
      if (state.runs.has(runId)) return [];
      const data = {
        runId,
        jobName: input.jobName,
        tags: input.tags,
        steps: input.steps,
        priority: priorityOf(input.priority, input.tags),
        maxConcurrentSteps: input.maxConcurrentSteps,
        leaseSeconds: input.leaseSeconds,
      };
      return withPass(state, [{ type: 'RunEnqueued', data }], { enqueued: draftRun(state, data, context.now) });
    }
    case 'MarkRunStarted': {
      const run = existingRun(state, command.runId);
      if (run.status === 'STARTED') return [];
      if (run.status !== 'STARTING') {
        throw new TransitionNotAllowedError(
          `run ${run.id} is ${run.status}: only an admitted (STARTING) run can be marked started`,
        );
      }
      return [{ type: 'RunStarted', data: { runId: run.id } }];
    }
    case 'MarkRunFinished': {
      const status = validateFinalStatus(command.status);
      const run = existingRun(state, command.runId);
      if (isFinished(run.status)) {
        if (run.status === status) return [];
        throw new TransitionNotAllowedError(`run ${run.id} already finished as ${run.status}`);
      }
      if (run.status === 'QUEUED') {
        throw new TransitionNotAllowedError(
          `run ${run.id} is QUEUED: it has not been admitted, so it cannot finish; terminate it instead`,
        );
      }
      return finish(state, run, status, null);
    }
    case 'TerminateRun': {
      const run = existingRun(state, command.runId);
      const force = command.force ?? false;
      if (isFinished(run.status)) {
        throw new TransitionNotAllowedError(`run ${run.id} already finished as ${run.status}: nothing to terminate`);
      }
      if (run.status === 'QUEUED') return finish(state, run, 'CANCELED', 'terminated while queued');
      if (force) return finish(state, run, 'CANCELED', 'terminated with force');
      if (run.status === 'CANCELING') return [];
      return [{ type: 'RunCancellationRequested', data: { runId: run.id } }];
    }
    case 'SetMaxConcurrentRuns': {
      const limit = validateMaxConcurrentRuns(command.limit);
      if (limit === config.maxConcurrentRuns) return [];
      return editConfig(
        state,
        { type: 'MaxConcurrentRunsSet', data: { limit } },
        { ...config, maxConcurrentRuns: limit },
        new Set([ALL_RUNS]),
      );
    }
    case 'SetTagConcurrencyLimits': {
      const limits = validateTagLimits(command.limits);
      const edited = editedTagKeys(config.tagConcurrencyLimits, limits);
      if (edited.size === 0 && limits.length === config.tagConcurrencyLimits.length) return [];
      return editConfig(
        state,
        { type: 'TagConcurrencyLimitsSet', data: { limits } },
        { ...config, tagConcurrencyLimits: limits },
        edited,
      );
    }
    case 'SetPoolGranularity': {
      const granularity = validateGranularity(command.granularity);
      if (granularity === config.poolGranularity) return [];
      return editConfig(
        state,
        { type: 'PoolGranularitySet', data: { granularity } },
        { ...config, poolGranularity: granularity },
        new Set([ALL_RUNS]),
      );
    }
    case 'SetDefaultPoolLimit': {
      const limit = command.limit === null ? null : validateLimit(command.limit);
      if (limit === config.defaultPoolLimit) return [];
      return editConfig(
        state,
        { type: 'DefaultPoolLimitSet', data: { limit } },
        { ...config, defaultPoolLimit: limit },
        new Set([ALL_RUNS]),
      );
    }
    case 'SetPoolLimit': {
      const pool = validatePoolName(command.pool);
      const limit = validateLimit(command.limit);
      if (config.poolLimits.get(pool) === limit) return [];
      const poolLimits = new Map(config.poolLimits).set(pool, limit);
      return editConfig(
        state,
        { type: 'PoolLimitSet', data: { pool, limit } },
        { ...config, poolLimits },
        new Set([poolCount(pool)]),
      );
    }
    case 'DeletePoolLimit': {
      const pool = validatePoolName(command.pool);
      if (!config.poolLimits.has(pool)) return [];
      const poolLimits = new Map(config.poolLimits);
      poolLimits.delete(pool);
      return editConfig(
        state,
        { type: 'PoolLimitDeleted', data: { pool } },
        { ...config, poolLimits },
        new Set([poolCount(pool)]),
      );
    }
  }
}
