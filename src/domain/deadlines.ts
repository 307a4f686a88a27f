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

/** Every deadline of an in-progress run, earliest first. */
export function deadlinesOf(run: RunRecord, monitoring: RunMonitoring): Deadline[] {
  const deadlines: Deadline[] = [];
  const add = (at: number, status: FinalStatus, reason: string, failureReason: MonitoringReason) =>
    deadlines.push({ runId: run.id, at, status, reason, failureReason });
  if (run.status === 'STARTING' && run.admittedAt !== null) {
    const limit = monitoring.startTimeoutSeconds;
    add(
      Date.parse(run.admittedAt) + shiftOf(run) + limit * 1000,
      'FAILURE',
      `${TIMEOUT_REASONS.start_timeout} STARTING for more than ${limit} s`,
      'START_TIMEOUT',
    );
  }
  if (run.status === 'CANCELING' && run.cancelRequestedAt !== null) {
    const limit = monitoring.cancelTimeoutSeconds;
    add(
      Date.parse(run.cancelRequestedAt) + shiftOf(run) + limit * 1000,
      'CANCELED',
      `${TIMEOUT_REASONS.cancel_timeout} CANCELING for more than ${limit} s`,
      'CANCEL_TIMEOUT',
    );
  }
  const maxRuntime = maxRuntimeOf(run, monitoring);
  if (run.status === 'STARTED' && run.startedAt !== null && maxRuntime !== null) {
    add(
      Date.parse(run.startedAt) + shiftOf(run) + maxRuntime.seconds * 1000,
      'FAILURE',
      `${TIMEOUT_REASONS.max_runtime} running for more than ${maxRuntime.seconds} s (${maxRuntime.source})`,
      'RUN_TIMEOUT',
    );
  }
  const renewed = leaseRenewedAt(run);
  if (run.leaseSeconds !== null && renewed !== null) {
    add(
      renewed + run.leaseSeconds * 1000,
      'FAILURE',
      `${TIMEOUT_REASONS.lease_expired} no heartbeat for ${run.leaseSeconds} s`,
      'UNEXPECTED_TERMINATION',
    );
  }
  return deadlines.sort((a, b) => a.at - b.at);
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
