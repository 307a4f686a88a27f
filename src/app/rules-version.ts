/**
 * Recording the rules a log is written under (domain/rules), once, when a server opens a log
 * written under older rules or none: the RulesVersionRecorded it appends names what changed and
 * from which position. A log that records none is first read to find what wrote it.
 */
import {
  CURRENT_RULES,
  ROOT_STEP_HOLD_RULES,
  rulesOfUnrecordedLog,
  UNRECORDED_RULES,
  writtenUnderRootStepHold,
} from '../domain/rules.js';
import type { Sluice } from './sluice.js';

/** Who the log names as having recorded the rules. */
export const RULES_ACTOR = 'sluice:rules';

const PAGE = 5_000;

/** Appends RulesVersionRecorded when the log is not yet written under this server's rules; true if it did. */
export async function recordRulesVersion(sluice: Sluice): Promise<boolean> {
  await sluice.catchUp();
  if (sluice.state.rules >= CURRENT_RULES) return false;
  const found =
    sluice.state.rules === UNRECORDED_RULES && sluice.state.revision >= 0n ? await rulesOfLog(sluice) : null;
  const outcome = await sluice.execute({ type: 'RecordRules', found }, RULES_ACTOR);
  return outcome.events.length > 0;
}

/** The rules a log that records none was written under, read a page at a time (once, at the upgrade). */
async function rulesOfLog(sluice: Sluice): Promise<number> {
  for (let from = 0n; ; from += BigInt(PAGE)) {
    const page = await sluice.store.readStream(sluice.stream, { fromRevision: from, maxCount: PAGE });
    if (page.some(writtenUnderRootStepHold)) return ROOT_STEP_HOLD_RULES;
    if (page.length < PAGE) return rulesOfUnrecordedLog([]);
  }
}
