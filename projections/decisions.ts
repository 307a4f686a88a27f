/**
 * Decisions as clients see them, built from the events that record them. A queued run's later
 * holds are not events of their own: they are derived from limit states (see src/history) and
 * shown as BLOCKED decisions at the position of the record that changed them.
 */
import type { Constraint } from '../src/domain/constraints.js';
import type { LoggedEvent } from '../src/domain/events.js';
import { describeReasons } from './evolve.js';
import type { Decision } from './state.js';

export function blockedDecision(runId: string, position: bigint, at: string, reasons: Constraint[]): Decision {
  return {
    position,
    at,
    kind: 'BLOCKED',
    runId,
    stepKey: null,
    pool: null,
    reasons,
    message: `run ${runId} waits: ${describeReasons(reasons)}`,
  };
}

/** The decision an event records, or null for events that are not decisions. */
export function decisionOf(event: LoggedEvent): Decision | null {
  const base = { position: event.revision, at: event.at };
  switch (event.type) {
    case 'RunAdmitted':
      return {
        ...base,
        kind: 'ADMITTED',
        runId: event.data.runId,
        stepKey: null,
        pool: null,
        reasons: [],
        message: `run ${event.data.runId} admitted: every limit that applies to it has room`,
      };
    case 'RunBlocked':
      return blockedDecision(event.data.runId, event.revision, event.at, event.data.reasons);
    case 'StepSlotGranted': {
      const { runId, stepKey, pool } = event.data;
      return {
        ...base,
        kind: 'SLOT_GRANTED',
        runId,
        stepKey,
        pool,
        reasons: [],
        message: `step ${stepKey} of run ${runId} holds a slot${pool === null ? '' : ` of pool ${pool}`}`,
      };
    }
    case 'StepSlotPending': {
      const { runId, stepKey, pool, reasons } = event.data;
      return {
        ...base,
        kind: 'SLOT_PENDING',
        runId,
        stepKey,
        pool,
        reasons,
        message: `step ${stepKey} of run ${runId} waits: ${describeReasons(reasons)}`,
      };
    }
    default:
      return null;
  }
}
