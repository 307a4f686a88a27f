/**
 * The log format this server writes. It is the domain's LOG_FORMAT, except in tests that pose
 * as a newer Sluice (SLUICE_TEST_LOG_FORMAT, honoured only under NODE_ENV=test) to show what an
 * older server does with a newer log.
 */
import { type DomainEvent, formatOfEvent, LOG_FORMAT } from '../domain/events.js';

function testFormat(): number | null {
  if (process.env.NODE_ENV !== 'test') return null;
  const value = Number(process.env.SLUICE_TEST_LOG_FORMAT);
  return Number.isInteger(value) && value > LOG_FORMAT ? value : null;
}

export const SERVER_LOG_FORMAT = testFormat() ?? LOG_FORMAT;

/** The actor of LogFormatRaised events. */
export const SERVER_ACTOR = 'sluice';

/**
 * The LogFormatRaised to append before `events`, when they need a newer format than the log's
 * (or this server poses as a newer Sluice and has not said so in this log yet).
 */
export function formatRaise(logFormat: number, events: readonly DomainEvent[]): DomainEvent | null {
  const needed = Math.max(1, ...events.map((e) => formatOfEvent(e.type)));
  const posing = SERVER_LOG_FORMAT > LOG_FORMAT;
  if (needed <= logFormat && !(posing && logFormat < SERVER_LOG_FORMAT)) return null;
  return { type: 'LogFormatRaised', data: { format: SERVER_LOG_FORMAT } };
}
