/** The log as the application layer reads it: the deployment's stream, and a stored event as a domain event. */
import { createHash } from 'node:crypto';
import { type LoggedEvent, parseEvent } from '../domain/events.js';
import type { RecordedEvent } from '../eventstore/store.js';
import { SERVER_LOG_FORMAT } from './log-format.js';

export const DEPLOYMENT_STREAM = 'sluice-deployment';

export function toLoggedEvent(recorded: RecordedEvent): LoggedEvent {
  const event = parseEvent(recorded.type, recorded.schemaVersion, recorded.data, recorded, SERVER_LOG_FORMAT);
  // Built field by field: an object spread here was the largest single cost of a replay.
  return {
    type: event.type,
    data: event.data,
    revision: recorded.revision,
    at: recorded.at,
    actor: recorded.actor,
  } as LoggedEvent;
}

/** Identifies an event's content, so a checkpoint can tell whether the log still holds it. */
export function eventHash(recorded: RecordedEvent): string {
  const content = [
    recorded.revision.toString(),
    recorded.type,
    recorded.schemaVersion,
    recorded.data,
    recorded.actor,
    recorded.at,
  ];
  return createHash('sha256').update(JSON.stringify(content)).digest('hex');
}
