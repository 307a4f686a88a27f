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

/** Wall and monotonic clocks drift apart by at most this fraction of the time between readings (NTP slews at 500 ppm). */
const DRIFT_ALLOWED = 0.001;

export interface Stamp {
  at: string;
  /** The clock was found behind the log (recorded once until it catches up). */
  stepBack: DomainEvent | null;
  /** The clock jumped ahead of the monotonic clock since the last recorded command. */
  stepForward: DomainEvent | null;
}

export class EventClock {
  /** True while this server's clock is behind the log and the step is already recorded. */
  private behind = false;
  /** Wall and monotonic readings of the last command appended, to see the wall clock jump. */
  private last: { wall: number; mono: number } | null = null;
  private pending: { wall: number; mono: number } | null = null;

  /**
   * `monotonic`: a clock no step moves (performance.now); null when the wall clock is a test's
   * own (injected), which has no monotonic counterpart: then forward steps are not looked for.
   */
  constructor(
    private readonly clock: () => Date,
    private readonly monotonic: (() => number) | null = null,
  ) {}

  /** The time to stamp a command with, given the last time in the log, and the steps to record. */
  stamp(lastLoggedAt: string | null): Stamp {
    const clock = this.clock();
    const wall = clock.getTime();
    let stepForward: DomainEvent | null = null;
    if (this.monotonic) {
      const mono = this.monotonic();
      if (this.last) {
        const elapsed = mono - this.last.mono;
        const ahead = Math.round(wall - (this.last.wall + elapsed));
        if (ahead > STEP_RECORDED_ABOVE_MS + elapsed * DRIFT_ALLOWED) {
          stepForward = { type: 'ClockSteppedForward', data: { clockAt: clock.toISOString(), byMs: ahead } };
        }
      }
      this.pending = { wall, mono };
    }
    const last = lastLoggedAt === null ? Number.NaN : Date.parse(lastLoggedAt);
    if (Number.isNaN(last) || wall >= last) {
      this.behind = false;
      return { at: clock.toISOString(), stepBack: null, stepForward };
    }
    const byMs = last - wall;
    const at = new Date(last).toISOString();
    if (this.behind || byMs <= STEP_RECORDED_ABOVE_MS) return { at, stepBack: null, stepForward };
    return {
      at,
      stepBack: { type: 'ClockSteppedBack', data: { clockAt: clock.toISOString(), loggedAt: at, byMs } },
      stepForward,
    };
  }

  /** The stamped command was appended: its steps are recorded, and its readings are the new reference. */
  recorded(stamp: Stamp): void {
    if (stamp.stepBack) this.behind = true;
    if (this.pending) this.last = this.pending;
  }
}
