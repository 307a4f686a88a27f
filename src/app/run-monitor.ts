/**
 * Fires run deadlines (start, cancel and max-runtime timeouts, lease expiry) and the end of
 * started runs' root-step allotment windows when they come.
 * The deadlines live in the projections; this only keeps one timer set to the earliest and,
 * when it goes off, sends the ExpireDeadlines command, which decides from the log what
 * expired. Several servers may race to expire the same run: the loser re-decides and finds
 * nothing left to do.
 */
import { type TimeoutKind, timeoutKindOf } from '../domain/deadlines.js';
import { nextWakeUp } from '../domain/decide.js';
import type { Sluice } from './sluice.js';

export const MONITOR_ACTOR = 'run-monitor';
/** Timers past ~24.8 days overflow; re-check at least this often. */
const MAX_DELAY_MS = 60 * 60 * 1000;
/** After a failed expiry (store down), wait this long before trying again. */
const RETRY_MS = 1000;

/** A run this monitor ended because a deadline passed. */
export interface FiredTimeout {
  runId: string;
  kind: TimeoutKind;
  status: 'SUCCESS' | 'FAILURE' | 'CANCELED';
  reason: string;
  /** Log position of the RunFinished that records it. */
  position: bigint;
}

export interface RunMonitorHandle {
  /** Re-reads the earliest deadline; call after the state changed. */
  reschedule(): void;
  stop(): void;
}

export function startRunMonitor(
  sluice: Sluice,
  onError: (error: unknown) => void = console.error,
  onTimeout: (timeout: FiredTimeout) => void = () => {},
): RunMonitorHandle {
  let timer: NodeJS.Timeout | null = null;
  let timerAt = Number.POSITIVE_INFINITY;
  let stopped = false;
  let firing = false;
  /** Set after a failure: no attempt before this time, or a down store would be retried in a tight loop. */
  let retryAt = Number.NEGATIVE_INFINITY;

  const fire = async () => {
    timer = null;
    timerAt = Number.POSITIVE_INFINITY;
    if (stopped || firing) return;
    firing = true;
    try {
      const outcome = await sluice.execute({ type: 'ExpireDeadlines' }, MONITOR_ACTOR);
      retryAt = Number.NEGATIVE_INFINITY;
      for (const event of outcome.events) {
        if (event.type !== 'RunFinished' || event.data.reason === null) continue;
        const kind = timeoutKindOf(event.data.reason);
        if (kind === null) continue;
        const { runId, status, reason } = event.data;
        onTimeout({ runId, kind, status, reason, position: event.revision });
      }
    } catch (error) {
      onError(error);
      // The store may be down for a moment: try again shortly rather than never.
      retryAt = sluice.now().getTime() + RETRY_MS;
    } finally {
      firing = false;
    }
    reschedule();
  };

  const setTimer = (wanted: number) => {
    const at = Math.max(wanted, retryAt);
    if (timer !== null && at >= timerAt) return;
    if (timer !== null) clearTimeout(timer);
    const delay = Math.min(Math.max(at - sluice.now().getTime() + 5, 0), MAX_DELAY_MS);
    timerAt = at;
    timer = setTimeout(() => void fire(), delay);
    timer.unref();
  };

  const reschedule = () => {
    if (stopped) return;
    const next = nextWakeUp(sluice.state);
    if (next === null) return;
    setTimer(next);
  };

  const unsubscribe = sluice.onEvent(() => reschedule());
  reschedule();
  return {
    reschedule,
    stop() {
      stopped = true;
      unsubscribe();
      if (timer !== null) clearTimeout(timer);
    },
  };
}
