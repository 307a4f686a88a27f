/**
 * Run monitoring, as in Dagster: when an in-progress run has been in one state too long, or
 * its worker stopped sending heartbeats. Deadlines are computed from the state (so from the
 * log): they survive restarts, and one that passed while the server was down fires at start.
 *
 * Heartbeats and the log: a heartbeat is recorded as an event only when the last recorded
 * one (or the admission) is at least a third of the lease old. So a run appends at most about
 * three heartbeat events per lease period however often its worker calls, and a worker that
 * calls at least every two thirds of its lease never expires: the recorded lease always has
 * at least a third of its length left.
 */
import type { RunMonitoring, RunRecord } from '../../projections/state.js';
import { taggedMaxRuntime } from './dagster-tags.js';
import type { MonitoringReason } from './events.js';
import type { FinalStatus } from './run.js';

export interface Deadline {
  runId: string;
  /** Epoch milliseconds. */
  at: number;
  status: FinalStatus;
  reason: string;
  /** Which deadline, by Dagster's RunFailureReason name where it has one. */
  failureReason: MonitoringReason;
}

/**
 * The run's max runtime in seconds and where it comes from, as Dagster's run monitoring reads
 * it: its `dagster/max_runtime` tag, else its `dagster/max_runtime_seconds` tag, else run
 * monitoring's `max_runtime_seconds`, else null. A tag that gives no usable number means none
 * (recorded as ignored at enqueue). Runs of older logs carried only valid tags, equal when both
 * were set, so they read the same as they did.
 */
export function maxRuntimeOf(
  run: Pick<RunRecord, 'tags'>,
  monitoring?: Pick<RunMonitoring, 'maxRuntimeSeconds'>,
): { seconds: number; source: string } | null {
  const tagged = taggedMaxRuntime(run.tags);
  if (tagged.kind === 'seconds') return { seconds: tagged.seconds, source: tagged.tag };
  if (tagged.kind === 'none') return null;
  const fallback = monitoring?.maxRuntimeSeconds ?? null;
  return fallback === null ? null : { seconds: fallback, source: 'run_monitoring.max_runtime_seconds' };
}

/** When the run's lease was last renewed in the log: its admission or its last recorded heartbeat. */
export function leaseRenewedAt(run: RunRecord): number | null {
  if (run.admittedAt === null) return null;
  const admitted = Date.parse(run.admittedAt);
  const renewed = run.lastHeartbeatAt === null ? admitted : Math.max(admitted, Date.parse(run.lastHeartbeatAt));
  return renewed + shiftOf(run);
}

/** How far forward clock steps moved the run's deadlines (see RunRecord.clockShiftMs). */
const shiftOf = (run: Pick<RunRecord, 'clockShiftMs'>): number => run.clockShiftMs ?? 0;

/** The kinds of timeout, each the start of the reason it records on the run's RunFinished. */
const TIMEOUT_REASONS = {
  start_timeout: 'start timeout:',
  cancel_timeout: 'cancel timeout:',
  max_runtime: 'max runtime:',
  lease_expired: 'lease expired:',
} as const;

export type TimeoutKind = keyof typeof TIMEOUT_REASONS;

/** Which timeout a recorded finish reason tells of; null when it is not a timeout's. */
export function timeoutKindOf(reason: string): TimeoutKind | null {
  for (const [kind, prefix] of Object.entries(TIMEOUT_REASONS)) {
    if (reason.startsWith(prefix)) return kind as TimeoutKind;
  }
  return null;
}

/** The kinds of deadline a run can have, in the order they are listed when due together. */
const DEADLINE_KINDS = ['start', 'cancel', 'runtime', 'lease'] as const;
type DeadlineKind = (typeof DEADLINE_KINDS)[number];

/** When a deadline of one kind falls for the run (epoch ms), or null when it has none of that kind. */
function deadlineAt(run: RunRecord, monitoring: RunMonitoring, kind: DeadlineKind): number | null {
  switch (kind) {
    case 'start':
      if (run.status !== 'STARTING' || run.admittedAt === null) return null;
      return Date.parse(run.admittedAt) + shiftOf(run) + monitoring.startTimeoutSeconds * 1000;
    case 'cancel':
      if (run.status !== 'CANCELING' || run.cancelRequestedAt === null) return null;
      return Date.parse(run.cancelRequestedAt) + shiftOf(run) + monitoring.cancelTimeoutSeconds * 1000;
    case 'runtime': {
      if (run.status !== 'STARTED' || run.startedAt === null) return null;
      const maxRuntime = maxRuntimeOf(run, monitoring);
      return maxRuntime === null ? null : Date.parse(run.startedAt) + shiftOf(run) + maxRuntime.seconds * 1000;
    }
    case 'lease': {
      const renewed = leaseRenewedAt(run);
      return run.leaseSeconds === null || renewed === null ? null : renewed + run.leaseSeconds * 1000;
    }
  }
}

/** The deadline of one kind falling at `at`, with what it records when it ends the run. */
function deadlineOf(run: RunRecord, monitoring: RunMonitoring, kind: DeadlineKind, at: number): Deadline {
  const runId = run.id;
  switch (kind) {
    case 'start': {
      const limit = monitoring.startTimeoutSeconds;
      const reason = `${TIMEOUT_REASONS.start_timeout} STARTING for more than ${limit} s`;
      return { runId, at, status: 'FAILURE', reason, failureReason: 'START_TIMEOUT' };
    }
    case 'cancel': {
      const limit = monitoring.cancelTimeoutSeconds;
      const reason = `${TIMEOUT_REASONS.cancel_timeout} CANCELING for more than ${limit} s`;
      return { runId, at, status: 'CANCELED', reason, failureReason: 'CANCEL_TIMEOUT' };
    }
    case 'runtime': {
      const { seconds, source } = maxRuntimeOf(run, monitoring) as { seconds: number; source: string };
      const reason = `${TIMEOUT_REASONS.max_runtime} running for more than ${seconds} s (${source})`;
      return { runId, at, status: 'FAILURE', reason, failureReason: 'RUN_TIMEOUT' };
    }
    case 'lease': {
      const reason = `${TIMEOUT_REASONS.lease_expired} no heartbeat for ${run.leaseSeconds} s`;
      return { runId, at, status: 'FAILURE', reason, failureReason: 'UNEXPECTED_TERMINATION' };
    }
  }
}

/** Every deadline of an in-progress run, earliest first. */
export function deadlinesOf(run: RunRecord, monitoring: RunMonitoring): Deadline[] {
  const deadlines: Deadline[] = [];
  for (const kind of DEADLINE_KINDS) {
    const at = deadlineAt(run, monitoring, kind);
    if (at !== null) deadlines.push(deadlineOf(run, monitoring, kind, at));
  }
  return deadlines.sort((a, b) => a.at - b.at);
}

/**
 * The run's earliest deadline if it has passed at `now`, else null: deadlinesOf's first when it
 * is due, without describing the deadlines that are not (every command about a run asks).
 */
export function passedDeadline(run: RunRecord, monitoring: RunMonitoring, now: number): Deadline | null {
  let first: DeadlineKind | null = null;
  let firstAt = Number.POSITIVE_INFINITY;
  for (const kind of DEADLINE_KINDS) {
    const at = deadlineAt(run, monitoring, kind);
    if (at !== null && at < firstAt) {
      first = kind;
      firstAt = at;
    }
  }
  return first !== null && firstAt <= now ? deadlineOf(run, monitoring, first, firstAt) : null;
}

/**
 * When a STARTED run's unclaimed root steps stop counting as holding their slots (RootStepHold's
 * allotment window), or null when nothing of the run is promised any more.
 */
export function allotmentEndOf(run: RunRecord, startedRunAllotmentSeconds: number): number | null {
  if (run.status !== 'STARTED' || run.startedAt === null || run.promisedSteps.size === 0) return null;
  return Date.parse(run.startedAt) + shiftOf(run) + startedRunAllotmentSeconds * 1000;
}

/** Whether a heartbeat at `now` should be recorded (see the rule above). */
export function heartbeatIsDue(run: RunRecord, now: number): boolean {
  const renewed = leaseRenewedAt(run);
  if (run.leaseSeconds === null || renewed === null) return false;
  return now - renewed >= (run.leaseSeconds * 1000) / 3;
}
