/**
 * The command path: catch up, decide each command of a group on the live state, append the
 * group with the expected revision of the state decided on, answer each command once the append
 * is durable. A lost race re-decides the whole group on the state that won, which is what keeps
 * two servers from over-admitting.
 */
import { evolve } from '../../projections/evolve.js';
import type { RunRecord, State } from '../../projections/state.js';
import type { Command } from '../domain/commands.js';
import { type DecideContext, decide, knownRun } from '../domain/decide.js';
import { DomainError } from '../domain/errors.js';
import { CURRENT_SCHEMA_VERSION, type DomainEvent, type LoggedEvent } from '../domain/events.js';
import { ConcurrencyError, StoreUnavailableError } from '../eventstore/errors.js';
import type { EventStore, NewEvent, RecordedEvent } from '../eventstore/store.js';
import { CLOCK_ACTOR, type EventClock } from './event-clock.js';
import type { GroupMember } from './group-commit.js';
import { formatRaise, SERVER_ACTOR } from './log-format.js';
import { toLoggedEvent } from './recorded-events.js';
import type { Speculation } from './speculation.js';

/** What one execute() did, for metrics and logs. */
export interface CommandRecord {
  command: string;
  runId: string | null;
  actor: string;
  /** rejected: the domain refused it (bad input, unknown run, transition not allowed); error: anything else. */
  outcome: 'ok' | 'rejected' | 'error';
  /** The refusal's or failure's name, e.g. InvalidInputError, StoreUnavailableError. */
  errorCode?: string;
  /** Events appended. */
  events: number;
  durationMs: number;
}

export interface CommandOutcome {
  /** Events appended by this command (empty when it changed nothing). */
  events: LoggedEvent[];
  /** The run the command was about, for run commands. */
  runId: string | null;
}

/** The store could not take the command after several lost races. */
export class TooMuchContentionError extends StoreUnavailableError {}

/** What the command path works on: the live state, the log, and what may decide a command. */
export interface CommandPathOptions {
  store: EventStore;
  stream: string;
  /** Event times: the clock, never going backwards (see event-clock.ts). */
  eventClock: EventClock;
  /** The time of the last event taken in, null for an empty log. */
  lastLoggedAt: () => string | null;
  /** The format the log was raised to (see LogFormatRaised). */
  logFormat: () => number;
  newRunId: () => string;
  /** How many lost races a group may retry before giving up. */
  maxAttempts: number;
  speculation: Speculation;
  state: () => State;
  /** Revision of the last durable event taken in. */
  durable: () => bigint;
  catchUp: () => Promise<void>;
  /** Takes one stored event in (the group's own, after its append). */
  apply: (recorded: RecordedEvent) => void;
  /**
   * Resolves once the history has caught up with the live state after a start, or has been
   * waited for long enough (then pastRun throws HistoryBehindError).
   */
  awaitHistory: () => Promise<void>;
  /** False while the history catches up after a start. */
  historyCaughtUp: () => boolean;
  /**
   * While the history catches up: a run the live state does not hold, from the history as far as
   * it goes and the log after it (null: no run has the id); undefined when the history must be
   * waited for. A run found is then answered by pastRun at once.
   */
  findPastRun: (runId: string) => Promise<RunRecord | null | undefined>;
  /** A finished run from the history, for a command naming a run the live state no longer has. */
  pastRun: (runId: string) => RunRecord | null;
  /** The live state again as the log has it, after an append that failed. */
  restoreLiveState: () => Promise<void>;
}

/** Decides and appends one group of commands, answering each (see Sluice.execute). */
export async function commitGroup(path: CommandPathOptions, group: GroupMember[]): Promise<void> {
  const { store, stream, eventClock, newRunId, speculation } = path;
  for (let attempt = 1; attempt <= path.maxAttempts; attempt++) {
    // Every command is decided on a state that includes everything acknowledged before it.
    await path.catchUp();
    // A command naming a run the live state does not hold may name one that finished long ago.
    // Right after a start, while the history catches up, the history as far as it goes and the
    // runs enqueued after it tell at once whether the id is a run (Dagster's enqueues name new
    // ids); only a finished run whose record neither the history nor a short read of the log
    // gives waits for the history.
    if (!path.historyCaughtUp()) {
      let waitForHistory = false;
      for (const member of group) {
        const runId = pastRunId(path, member.command);
        if (runId !== null && (await path.findPastRun(runId)) === undefined) waitForHistory = true;
      }
      if (waitForHistory) await path.awaitHistory();
      await path.catchUp();
    }
    const stamp = eventClock.stamp(path.lastLoggedAt());
    const { at: now, stepBack, stepForward } = stamp;
    const base = path.durable();
    const newEvents: NewEvent[] = [];
    const outcomes: Array<{ error: unknown } | { start: number; count: number; runId: string | null }> = [];
    const ahead = [stepForward, stepBack].filter((e) => e !== null);
    const raise = formatRaise(path.logFormat(), ahead);
    speculation.start();
    const state = path.state();
    try {
      // The log's own facts (a raised format, a clock step) go ahead of the commands'.
      for (const event of raise ? [raise, ...ahead] : ahead) {
        const actor = event.type === 'LogFormatRaised' ? SERVER_ACTOR : CLOCK_ACTOR;
        evolve(state, { ...event, revision: state.revision + 1n, at: now, actor } as LoggedEvent);
        newEvents.push({ ...event, schemaVersion: CURRENT_SCHEMA_VERSION, actor, at: now });
      }
      for (const member of group) {
        let context: DecideContext;
        let events: DomainEvent[];
        try {
          context = { now, newRunId: newRunId(), pastRun: pastRunFor(path, member.command) };
          events = decide(member.command, state, context);
        } catch (error) {
          outcomes.push({ error });
          continue;
        }
        outcomes.push({
          start: newEvents.length,
          count: events.length,
          runId: runIdOf(member.command, events, context),
        });
        for (const event of events) {
          // Folded now, so the next command of the group sees it; durable only after the append.
          evolve(state, {
            ...event,
            revision: state.revision + 1n,
            at: now,
            actor: member.actor,
          } as LoggedEvent);
          newEvents.push({
            type: event.type,
            schemaVersion: CURRENT_SCHEMA_VERSION,
            data: event.data,
            actor: member.actor,
            at: now,
          });
        }
      }
    } catch (error) {
      // A fold that throws is a bug; the live state goes back to the log's.
      await speculation.abandon(path.restoreLiveState);
      throw error;
    }
    let recorded: RecordedEvent[] = [];
    if (newEvents.length === 0) speculation.end();
    if (newEvents.length > 0) {
      try {
        recorded = (await store.append(stream, newEvents, base < 0n ? 'no_stream' : base)).events;
      } catch (error) {
        await speculation.abandon(path.restoreLiveState);
        if (error instanceof ConcurrencyError) {
          // Retrying at once can lock in step behind a writer that keeps winning (it queues
          // for the store's lock while the loser is still catching up); a short random pause
          // after the first loss breaks the rhythm.
          if (attempt > 1) await new Promise((done) => setTimeout(done, Math.random() * Math.min(2 ** attempt, 50)));
          continue;
        }
        throw error;
      }
      // The append won: no other event came between the base and these, so they are the ones
      // already folded in.
      eventClock.recorded(stamp);
      speculation.end();
      for (const event of recorded) path.apply(event);
    }
    group.forEach((member, i) => {
      const outcome = outcomes[i] as (typeof outcomes)[number];
      if ('error' in outcome) member.reject(outcome.error);
      else
        member.resolve({
          events: recorded.slice(outcome.start, outcome.start + outcome.count).map(toLoggedEvent),
          runId: outcome.runId,
        });
    });
    return;
  }
  throw new TooMuchContentionError(
    `the command lost the race for the log ${path.maxAttempts} times in a row; nothing was recorded, try again`,
  );
}

/** The run a command names, when the live state does not hold it (it may be a past run). */
function pastRunId(path: CommandPathOptions, command: Command): string | null {
  const runId =
    command.type === 'EnqueueRun'
      ? (command.input as { runId?: unknown }).runId
      : 'runId' in command
        ? command.runId
        : null;
  if (typeof runId !== 'string' || knownRun(path.state(), runId, {})) return null;
  return runId;
}

/** The finished run a command names when the live state no longer has it. */
function pastRunFor(path: CommandPathOptions, command: Command): RunRecord | null {
  const runId = pastRunId(path, command);
  return runId === null ? null : path.pastRun(runId);
}

function runIdOf(command: Command, events: readonly DomainEvent[], context: DecideContext): string | null {
  if (command.type === 'EnqueueRun') {
    const enqueued = events.find((e) => e.type === 'RunEnqueued');
    if (enqueued) return enqueued.data.runId;
    return command.input.runId ?? context.newRunId;
  }
  return 'runId' in command ? command.runId : null;
}

/** Runs a command and reports what it did (metrics, logs); a report that throws never changes the answer. */
export function reported(
  report: (record: CommandRecord) => void,
  command: Command,
  actor: string,
  run: () => Promise<CommandOutcome>,
): Promise<CommandOutcome> {
  const started = performance.now();
  const record = (fields: Pick<CommandRecord, 'runId' | 'outcome' | 'errorCode' | 'events'>) => {
    try {
      report({ command: command.type, actor, durationMs: performance.now() - started, ...fields });
    } catch {
      // Metrics and logs must never change a command's answer.
    }
  };
  return run().then(
    (outcome) => {
      record({ runId: outcome.runId, outcome: 'ok', events: outcome.events.length });
      return outcome;
    },
    (error: unknown) => {
      const runId =
        command.type === 'EnqueueRun' ? (command.input.runId ?? null) : 'runId' in command ? command.runId : null;
      const outcome = error instanceof DomainError ? 'rejected' : 'error';
      record({ runId, outcome, errorCode: (error as Error)?.name ?? 'Error', events: 0 });
      throw error;
    },
  );
}
