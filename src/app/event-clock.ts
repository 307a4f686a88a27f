/**
 * Event times from the wall clock, never going backwards, and never stopping. An NTP step back
 * (or a server whose clock is behind the others') would otherwise give an event an earlier time
 * than the one before it, and answers about a past instant (`snapshot(at:)`, waits) would see
 * runs that arrived after it. Clamping to the log's last time alone would stop time instead:
 * every run in progress would then be kept past its timeout by the size of the step. So after a
 * step back the event clock runs on from where it was, measured by the monotonic clock, slowed
 * by SLEW_RATE until the wall clock meets it (as NTP slews rather than steps): a timeout in
 * progress ends at most 1% late, never late by the step. A step forward moves event time with
 * the wall clock and is recorded (ClockSteppedForward), and the fold moves the deadlines of runs
 * in progress by as much, so a step neither ends every STARTING run at once nor early.
 */
import type { DomainEvent } from '../domain/events.js';

/** Below this, a clock behind the log is the ordinary skew between servers: clamped, not recorded. */
export const STEP_RECORDED_ABOVE_MS = 1000;

/** The actor of ClockSteppedBack events. */
export const CLOCK_ACTOR = 'clock';

/** Wall and monotonic clocks drift apart by at most this fraction of the time between readings (NTP slews at 500 ppm). */
const DRIFT_ALLOWED = 0.001;

/**
 * While the wall clock is behind event time, event time advances at this fraction of real time:
 * a step back of an hour is absorbed over 100 hours, and durations measured meanwhile run 1% long.
 */
export const SLEW_RATE = 0.99;

export interface Stamp {
  at: string;
  /** The clock was found behind the log (recorded once until it catches up). */
  stepBack: DomainEvent | null;
  /** The clock jumped ahead of the monotonic clock since the last recorded command. */
  stepForward: DomainEvent | null;
}

interface Reading {
  atMs: number;
  wallMs: number;
  mono: number | null;
  /** How far the wall clock jumped ahead of the time elapsed since the last recorded stamp. */
  forwardMs: number;
}

export class EventClock {
  /** True while this server's clock is behind the log and the step is already recorded. */
  private behind = false;
  /** Event time and monotonic reading of the last stamp appended: where event time runs on from. */
  private last: { atMs: number; mono: number } | null = null;
  private pending: { atMs: number; mono: number } | null = null;

  /**
   * `monotonic`: a clock no step moves (performance.now); null when the wall clock is a test's
   * own (injected) without a monotonic counterpart: then event time is the wall clock clamped to
   * the log, and forward steps are not looked for.
   */
  constructor(
    private readonly clock: () => Date,
    private readonly monotonic: (() => number) | null = null,
  ) {}

  /** Event time now, without stamping anything: what deadlines and `now` in answers are measured against. */
  now(lastLoggedAt: string | null): Date {
    return new Date(this.read(lastLoggedAt).atMs);
  }

  /** The time to stamp a command with, given the last time in the log, and the steps to record. */
  stamp(lastLoggedAt: string | null): Stamp {
    const { atMs, wallMs, mono, forwardMs } = this.read(lastLoggedAt);
    this.pending = mono === null ? null : { atMs, mono };
    const at = new Date(atMs).toISOString();
    const clockAt = new Date(wallMs).toISOString();
    const stepForward: DomainEvent | null =
      forwardMs > 0 ? { type: 'ClockSteppedForward', data: { clockAt, byMs: forwardMs } } : null;
    const byMs = Math.round(atMs - wallMs);
    if (byMs <= 0) {
      this.behind = false;
      return { at, stepBack: null, stepForward };
    }
    if (this.behind || byMs <= STEP_RECORDED_ABOVE_MS) return { at, stepBack: null, stepForward };
    return { at, stepBack: { type: 'ClockSteppedBack', data: { clockAt, loggedAt: at, byMs } }, stepForward };
  }

  /** The stamped command was appended: its steps are recorded, and its readings are the new reference. */
  recorded(stamp: Stamp): void {
    if (stamp.stepBack) this.behind = true;
    if (this.pending) this.last = this.pending;
  }

  private read(lastLoggedAt: string | null): Reading {
    const wallMs = this.clock().getTime();
    const mono = this.monotonic ? this.monotonic() : null;
    let atMs = wallMs;
    let forwardMs = 0;
    if (mono !== null && this.last) {
      const elapsed = Math.max(0, mono - this.last.mono);
      const slewed = this.last.atMs + elapsed * SLEW_RATE;
      if (wallMs < slewed) atMs = slewed;
      else {
        const ahead = wallMs - (this.last.atMs + elapsed);
        if (ahead > STEP_RECORDED_ABOVE_MS + elapsed * DRIFT_ALLOWED) forwardMs = Math.round(ahead);
      }
    }
    const loggedMs = lastLoggedAt === null ? Number.NaN : Date.parse(lastLoggedAt);
    if (!Number.isNaN(loggedMs) && loggedMs > atMs) atMs = loggedMs;
    // Whole milliseconds: event times are ISO strings with millisecond precision.
    return { atMs: Math.floor(atMs), wallMs, mono, forwardMs };
  }
}
