/**
 * The versions of Sluice's admission rules and defaults. A log records the version it is written
 * under (RulesVersionRecorded): a server that brings new rules or defaults records, when it first
 * opens a log written without them, what changed and from which position the new rules apply.
 * Before that position the old rules hold for every answer about the past (what held a queued
 * run, what a pool counted), so an upgrade never rewrites an answer already given.
 */
export interface RulesChange {
  /** A stable name, e.g. ROOT_STEP_HOLD. */
  name: string;
  /** What changed, for a person reading the log. */
  description: string;
}

export interface RulesVersion {
  version: number;
  /**
   * The log format servers with these rules write: new rules come with a new format, so that a
   * server with older rules stops at the raise (LogFormatRaised) instead of deciding on under them.
   */
  logFormat: number;
  /** What this version changed from the one before it. */
  changes: RulesChange[];
}

/** Every version, oldest first. A release that changes a rule or a default adds one, with a new log format. */
export const RULES_VERSIONS: readonly RulesVersion[] = [
  {
    version: 1,
    logFormat: 1,
    changes: [
      {
        name: 'RUN_TAG_POOL_LIMITS',
        description:
          'max concurrent runs, tag limits (per value too), pool limits at RUN and OP granularity, step slots',
      },
    ],
  },
  {
    version: 2,
    logFormat: 2,
    changes: [
      {
        name: 'ROOT_STEP_HOLD',
        description:
          "the OP-granularity root-step hold (Dagster's block_op_concurrency_limited_runs), on by default: a run whose root steps all face full pools stays queued, and admitted runs' unclaimed root steps count as promised slots",
      },
    ],
  },
];

/** The rules this server decides by. */
export const CURRENT_RULES = RULES_VERSIONS[RULES_VERSIONS.length - 1]?.version ?? 1;

/** The first version with the root-step hold: before it, no run was held for its root steps. */
export const ROOT_STEP_HOLD_RULES = 2;

/** Rules not recorded yet: the live state of a log being read before its version is known. */
export const UNRECORDED_RULES = 0;

/** What changed between two versions (exclusive of `from`, inclusive of `to`). */
export function changesBetween(from: number, to: number): RulesChange[] {
  return RULES_VERSIONS.filter((v) => v.version > from && v.version <= to).flatMap((v) => v.changes);
}

/** Whether answers under these rules count root-step holds and promised slots (unrecorded: today's rules). */
export function hasRootStepHold(rules: number): boolean {
  return rules === UNRECORDED_RULES || rules >= ROOT_STEP_HOLD_RULES;
}

/**
 * Whether an event could only have been written under the root-step hold: only a server with
 * it writes its settings, ends allotments, or records a root-step counter (it does with the
 * first wait of every run whose root steps are all in pools). A log with none of these never
 * had such a counter full, so no answer it gave named one.
 */
export function writtenUnderRootStepHold(event: { type: string; data: unknown }): boolean {
  if (event.type === 'RootStepHoldSet' || event.type === 'RootStepAllotmentEnded') return true;
  return (
    (event.type === 'RunBlocked' || event.type === 'LimitStatesChanged' || event.type === 'StepSlotPending') &&
    /"ROOT_STEP_POOLS"|"rootSteps":true/.test(JSON.stringify(event.data))
  );
}

/** The rules a log that records none was written under, from its events (see writtenUnderRootStepHold). */
export function rulesOfUnrecordedLog(events: Iterable<{ type: string; data: unknown }>): number {
  for (const event of events) if (writtenUnderRootStepHold(event)) return ROOT_STEP_HOLD_RULES;
  return 1;
}
