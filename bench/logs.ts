/**
 * Long logs for the scale sections, written straight into an SQLite event store through its
 * `append` (the store's own format, large transactions), far faster than one command at a time.
 * What is written directly is plain history every Sluice folds the same way: runs enqueued,
 * admitted, started and finished one after another, or runs enqueued while no run may start.
 * Decisions that depend on the rules (what holds each queued run) are left to real commands.
 */
import Database from 'better-sqlite3';
import { DEPLOYMENT_STREAM } from '../src/app/sluice.js';
import { CURRENT_SCHEMA_VERSION, type DomainEvent } from '../src/domain/events.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import type { EventStore, NewEvent } from '../src/eventstore/store.js';

const CHUNK = 10_000;
export const TEAMS = 8;
const START = Date.parse('2024-01-01T00:00:00.000Z');

export const teamOf = (i: number) => `team-${i % TEAMS}`;

/** Appends events after whatever the stream holds, in chunks of one transaction each. */
export async function appendAll(store: EventStore, events: Iterable<DomainEvent>, actor = 'bench'): Promise<number> {
  let expected = await store.streamRevision(DEPLOYMENT_STREAM);
  let chunk: NewEvent[] = [];
  let written = 0;
  const flush = async () => {
    if (chunk.length === 0) return;
    const result = await store.append(DEPLOYMENT_STREAM, chunk, expected < 0n ? 'no_stream' : expected);
    expected = result.nextExpectedRevision;
    written += chunk.length;
    chunk = [];
  };
  for (const event of events) {
    // The time of writing, as for the events of one command: after whatever the log holds.
    chunk.push({
      type: event.type,
      schemaVersion: CURRENT_SCHEMA_VERSION,
      data: event.data,
      actor,
      at: new Date().toISOString(),
    });
    if (chunk.length >= CHUNK) await flush();
  }
  await flush();
  return written;
}

function enqueued(runId: string, team: string): DomainEvent {
  return {
    type: 'RunEnqueued',
    data: {
      runId,
      jobName: 'job',
      tags: [{ key: 'team', value: team }],
      steps: [],
      priority: 0,
      maxConcurrentSteps: null,
      leaseSeconds: null,
    },
  };
}

/** `runs` runs, each enqueued, admitted, started and finished before the next is enqueued. */
export function* finishedRuns(runs: number, prefix = 'done'): Generator<DomainEvent> {
  for (let i = 0; i < runs; i++) {
    const runId = `${prefix}-${i}`;
    yield enqueued(runId, teamOf(i));
    yield { type: 'RunAdmitted', data: { runId } };
    yield { type: 'RunStarted', data: { runId } };
    yield { type: 'RunFinished', data: { runId, status: i % 7 === 0 ? 'FAILURE' : 'SUCCESS', reason: null } };
  }
}

/** Runs enqueued and nothing else: valid only while maxConcurrentRuns is 0. */
export function* queuedRuns(runs: number, prefix = 'queued'): Generator<DomainEvent> {
  for (let i = 0; i < runs; i++) yield enqueued(`${prefix}-${i}`, teamOf(i));
}

/**
 * Writes a log of `runs` finished runs to a new SQLite file; answers the number of events.
 * The store creates the file and its table; the rows then go straight into that table in large
 * transactions without fsync (a fixture, not a command), several times faster than `append`.
 */
export async function writeHistory(path: string, runs: number): Promise<number> {
  await openSqliteStore({ path }).close();
  const db = new Database(path);
  try {
    db.pragma('synchronous = OFF');
    const insert = db.prepare(
      `INSERT INTO events (stream, revision, type, schema_version, data, actor, at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    let revision = 0;
    const write = db.transaction((events: DomainEvent[]) => {
      for (const e of events) {
        const at = new Date(START + revision).toISOString();
        insert.run(DEPLOYMENT_STREAM, revision++, e.type, CURRENT_SCHEMA_VERSION, JSON.stringify(e.data), 'bench', at);
      }
    });
    let chunk: DomainEvent[] = [];
    for (const event of finishedRuns(runs)) {
      chunk.push(event);
      if (chunk.length >= 50_000) {
        write(chunk);
        chunk = [];
      }
    }
    write(chunk);
    return revision;
  } finally {
    db.close();
  }
}
