/**
 * The record of the rules a deployment's log is written under (domain/rules), kept in a stream
 * beside the log (`<stream>-rules`) so that recording it moves no position of the log. A server
 * appends RulesVersionRecorded once, when it first opens a log not yet written under its rules
 * (a log that records none is first read to find what wrote it); every past state is then read
 * under the rules of its position. New rules come with a new log format (RULES_LOG_FORMAT), and
 * the log's format is raised before the record, so no older server decides past it.
 */
import { CURRENT_SCHEMA_VERSION, type EventData, parseEvent } from '../domain/events.js';
import {
  CURRENT_RULES,
  changesBetween,
  ROOT_STEP_HOLD_RULES,
  rulesOfUnrecordedLog,
  UNRECORDED_RULES,
  writtenUnderRootStepHold,
} from '../domain/rules.js';
import { ConcurrencyError } from '../eventstore/errors.js';
import type { Sluice } from './sluice.js';

/** Who the record names as having recorded the rules. */
export const RULES_ACTOR = 'sluice:rules';

/** The stream that records the rules of a deployment's stream. */
export const rulesStream = (stream: string): string => `${stream}-rules`;

type Recorded = EventData<'RulesVersionRecorded'>;

/** The log's record of its rules: which rules hold at each position. */
export class RulesRecord {
  constructor(readonly records: readonly Recorded[]) {}

  /** The rules the event at `revision` was decided under (UNRECORDED_RULES: today's, none recorded). */
  rulesAt(revision: bigint): number {
    let rules = UNRECORDED_RULES;
    for (const record of this.records) {
      if (revision >= BigInt(record.from)) {
        rules = record.rules;
        continue;
      }
      if (rules === UNRECORDED_RULES) rules = record.previous ?? record.rules;
      break;
    }
    return rules;
  }
}

const PAGE = 5_000;

/**
 * Reads the record of the log's rules and, when the log is not yet written under this server's,
 * appends what changed and from which position. Returns whether it appended; sets
 * `sluice.rulesRecord` either way.
 */
export async function recordRulesVersion(sluice: Sluice): Promise<boolean> {
  const stream = rulesStream(sluice.stream);
  for (let attempt = 0; ; attempt++) {
    const records = (await sluice.store.readStream(stream)).map(
      (e) => parseEvent(e.type, e.schemaVersion, e.data, `${stream} position ${e.revision}`).data as Recorded,
    );
    const latest = records.at(-1);
    if (latest && latest.rules >= CURRENT_RULES) {
      sluice.rulesRecord = new RulesRecord(records);
      return false;
    }
    await sluice.catchUp();
    const previous = latest ? latest.rules : sluice.state.revision < 0n ? null : await rulesOfLog(sluice);
    // Servers with older rules wrote this log: raise its format first, so that they stop at that
    // position rather than go on deciding under rules it no longer follows. (A new log has no
    // older writer to stop; its positions start with its first command.)
    if (previous !== null && previous < CURRENT_RULES) await sluice.raiseLogFormat();
    const revision = sluice.state.revision;
    const data: Recorded = {
      rules: CURRENT_RULES,
      previous,
      from: String(revision + 1n),
      changes: previous === null ? [] : changesBetween(previous, CURRENT_RULES),
    };
    const event = {
      type: 'RulesVersionRecorded',
      schemaVersion: CURRENT_SCHEMA_VERSION,
      data,
      actor: RULES_ACTOR,
      // Never before the log's last event, whatever the clock says (event times never go back).
      at: [sluice.now().toISOString(), sluice.state.lastEventAt ?? ''].sort().at(-1) as string,
    };
    try {
      await sluice.store.append(stream, [event], latest ? BigInt(records.length - 1) : 'no_stream');
      sluice.rulesRecord = new RulesRecord([...records, data]);
      return true;
    } catch (error) {
      // Another server recorded them first: read its record again.
      if (!(error instanceof ConcurrencyError) || attempt >= 5) throw error;
    }
  }
}

/** The rules a log that records none was written under, read a page at a time (once, at the upgrade). */
async function rulesOfLog(sluice: Sluice): Promise<number> {
  for (let from = 0n; ; from += BigInt(PAGE)) {
    const page = await sluice.store.readStream(sluice.stream, { fromRevision: from, maxCount: PAGE });
    if (page.some(writtenUnderRootStepHold)) return ROOT_STEP_HOLD_RULES;
    if (page.length < PAGE) return rulesOfUnrecordedLog([]);
  }
}
