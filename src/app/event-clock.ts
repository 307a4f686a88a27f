/**
 * Event times from the wall clock, never going backwards. An NTP step back (or a server whose
 * clock is behind the others') would otherwise give an event an earlier time than the one
 * before it, and answers about a past instant (`snapshot(at:)`, waits) would see runs that
 * arrived after it. So a command is stamped with the later of the clock and the log's last
 * time, and a clock found clearly behind the log is recorded once (ClockSteppedBack) until it
 * catches up.
 */
import type { DomainEvent } from '../domain/events.js';

/** Below this, a clock behind the log is the ordinary skew between servers: clamped, not recorded. */
export const STEP_RECORDED_ABOVE_MS = 1000;

/** The actor of ClockSteppedBack events. */
export const CLOCK_ACTOR = 'clock';

export class EventClock {
  /** True while this server's clock is behind the log and the step is already recorded. */
  private behind = false;

  constructor(private readonly clock: () => Date) {}

  /**
   * The time to stamp a command with, given the last time in the log, and the event recording a
   * step back when the clock is found behind the log for the first time.
   */
  stamp(lastLoggedAt: string | null): { at: string; stepBack: DomainEvent | null } {
    const clock = this.clock();
    const last = lastLoggedAt === null ? Number.NaN : Date.parse(lastLoggedAt);
    if (Number.isNaN(last) || clock.getTime() >= last) {
      this.behind = false;
      return { at: clock.toISOString(), stepBack: null };
    }
    const byMs = last - clock.getTime();
    const at = new Date(last).toISOString();
    if (this.behind || byMs <= STEP_RECORDED_ABOVE_MS) return { at, stepBack: null };
    return { at, stepBack: { type: 'ClockSteppedBack', data: { clockAt: clock.toISOString(), loggedAt: at, byMs } } };
  }

  /** The step back was appended: not recorded again until the clock has caught up with the log. */
  recorded(): void {
    this.behind = true;
  }
}
