/**
 * `sluice verify`: reads a whole log, page by page, and checks from the record alone what must
 * always hold. The store's own promises (positions strictly increasing, revisions without gaps,
 * positions without gaps where the store hands them out so, times that never go backwards, every
 * event of a known type and schema) are checked here; the admission and slot rules by LogModel,
 * written apart from the decider.
 */
import { parseEvent, UnreadableEventError } from '../domain/events.js';
import { CorruptEventError } from '../eventstore/errors.js';
import type { EventStore, RecordedEvent } from '../eventstore/store.js';
import { type BreachRule, LogModel } from './model.js';

export interface VerifyOptions {
  /** Positions are handed out without gaps (SQLite's); other stores may skip after a rollback. */
  gaplessPositions: boolean;
  /** How long past a run's deadline the log may go on without ending it; default 60 s. */
  graceSeconds?: number;
  /** Events per read; default 1000. */
  pageSize?: number;
}

export type VerifyRule = BreachRule | 'positions' | 'revisions' | 'times' | 'schema';

export interface VerifyReport {
  ok: boolean;
  events: number;
  firstPosition: bigint | null;
  lastPosition: bigint | null;
  lastAt: string | null;
  streams: number;
  eventTypes: Record<string, number>;
  runs: { enqueued: number; admitted: number; finished: number; queued: number; inProgress: number };
  slotsGranted: number;
  peakInProgress: number;
  /** Runs in progress at the end that only their worker can end (no lease, no max runtime). */
  workerOnlyRuns: number;
  /** The first rule broken, at which position. */
  breach: { position: bigint | null; rule: VerifyRule; message: string } | null;
}

/** Reads the store from its first event to its last and checks every rule; stops at the first breach. */
export async function verifyLog(store: EventStore, options: VerifyOptions): Promise<VerifyReport> {
  const model = new LogModel();
  const pageSize = options.pageSize ?? 1000;
  const eventTypes: Record<string, number> = {};
  const lastRevision = new Map<string, bigint>();
  let events = 0;
  let firstPosition: bigint | null = null;
  let lastPosition: bigint | null = null;
  let lastAt: string | null = null;
  let lastTime = Number.NEGATIVE_INFINITY;
  let breach: VerifyReport['breach'] = null;

  const check = (event: RecordedEvent): VerifyReport['breach'] => {
    const at = (rule: VerifyRule, message: string) => ({ position: event.position, rule, message });
    if (lastPosition !== null) {
      if (event.position <= lastPosition) {
        return at('positions', `position ${event.position} follows position ${lastPosition}: positions must increase`);
      }
      if (options.gaplessPositions && event.position !== lastPosition + 1n) {
        return at('positions', `position ${event.position} follows position ${lastPosition}: a gap in the log`);
      }
    }
    const expected = (lastRevision.get(event.stream) ?? -1n) + 1n;
    if (event.revision !== expected) {
      return at('revisions', `stream ${event.stream} has revision ${event.revision} where ${expected} was due`);
    }
    const time = Date.parse(event.at);
    if (Number.isNaN(time)) return at('times', `event time ${JSON.stringify(event.at)} is not a time`);
    if (time < lastTime) {
      return at('times', `event time ${event.at} is before the previous event's ${lastAt}: event times went backwards`);
    }
    let parsed: ReturnType<typeof parseEvent>;
    try {
      parsed = parseEvent(event.type, event.schemaVersion, event.data, `position ${event.position}`);
    } catch (error) {
      if (error instanceof UnreadableEventError) return at('schema', error.message);
      throw error;
    }
    const broken = model.apply(parsed, time);
    return broken ? at(broken.rule, broken.message) : null;
  };

  let after: bigint | undefined;
  outer: for (;;) {
    let page: RecordedEvent[];
    try {
      page = await store.readAll({ afterPosition: after, maxCount: pageSize });
    } catch (error) {
      if (!(error instanceof CorruptEventError)) throw error;
      breach = { position: lastPosition, rule: 'schema', message: `the event after this position: ${error.message}` };
      break;
    }
    for (const event of page) {
      breach = check(event);
      if (breach) break outer;
      events++;
      firstPosition ??= event.position;
      lastPosition = event.position;
      lastRevision.set(event.stream, event.revision);
      lastAt = event.at;
      lastTime = Date.parse(event.at);
      eventTypes[event.type] = (eventTypes[event.type] ?? 0) + 1;
    }
    if (page.length < pageSize) break;
    after = page[page.length - 1]?.position;
  }
  if (!breach && lastAt !== null) {
    const ending = model.atEnd(lastTime, options.graceSeconds ?? 60);
    if (ending) breach = { position: lastPosition, rule: ending.rule, message: ending.message };
  }
  const counts = model.counts();
  return {
    ok: breach === null,
    events,
    firstPosition,
    lastPosition,
    lastAt,
    streams: lastRevision.size,
    eventTypes,
    runs: {
      enqueued: model.tally.enqueued,
      admitted: model.tally.admitted,
      finished: model.tally.finished,
      queued: counts.queued,
      inProgress: counts.inProgress,
    },
    slotsGranted: model.tally.granted,
    peakInProgress: model.tally.peakInProgress,
    workerOnlyRuns: model.workerOnlyRuns().length,
    breach,
  };
}

/** The report as lines for a person. */
export function describeReport(description: string, report: VerifyReport): string {
  const lines = [
    `${description}: ${report.events} events` +
      (report.lastPosition === null ? '' : `, positions ${report.firstPosition}..${report.lastPosition}`) +
      (report.lastAt === null ? '' : `, last at ${report.lastAt}`),
    `runs: ${report.runs.enqueued} enqueued, ${report.runs.admitted} admitted, ${report.runs.finished} finished; ${report.runs.queued} queued and ${report.runs.inProgress} in progress at the end (peak ${report.peakInProgress})`,
    `step slots granted: ${report.slotsGranted}`,
  ];
  if (report.workerOnlyRuns > 0) {
    lines.push(
      `note: ${report.workerOnlyRuns} runs in progress have no lease and no max runtime: only their worker ends them`,
    );
  }
  if (report.breach) {
    const where = report.breach.position === null ? 'at the start' : `at position ${report.breach.position}`;
    lines.push(`FAILED ${where} (${report.breach.rule}): ${report.breach.message}`);
  } else {
    lines.push(
      'OK: no run admitted over a limit, no slot over its pool, every run ended at most once, every in-progress run has a way to end, positions and times in order, every event known',
    );
  }
  return lines.join('\n');
}
