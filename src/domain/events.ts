/**
 * Every fact Sluice records, each with a zod schema that validates it when read back.
 * Events are facts in the past tense; `schemaVersion` lets a later reader upcast old shapes.
 */
import { z } from 'zod';

const name = z.string().min(1).max(255);
const limit = z.number().int().min(0).max(1_000_000);

const tag = z.object({ key: name, value: name });
const step = z.object({
  key: name,
  pool: name.nullable(),
  priority: z.number().int(),
  /** Keys of the steps it waits for; absent in logs written before steps could declare them. */
  dependsOn: z.array(name).optional(),
});

/** Why Sluice's run monitoring ended a run, by Dagster's RunFailureReason names where it has one. */
export const monitoringReasons = ['START_TIMEOUT', 'CANCEL_TIMEOUT', 'RUN_TIMEOUT', 'UNEXPECTED_TERMINATION'] as const;
export type MonitoringReason = (typeof monitoringReasons)[number];

export const constraintSchema = z.object({
  kind: z.enum(['MAX_CONCURRENT_RUNS', 'TAG_LIMIT', 'POOL_LIMIT', 'RUN_STEP_LIMIT', 'ROOT_STEP_POOLS']),
  key: z.string().nullable(),
  value: z.string().nullable(),
  pool: z.string().nullable(),
  perUniqueValue: z.boolean(),
  limit: z.number().int(),
  inUse: z.number().int(),
  message: z.string(),
});

const tagLimit = z.object({
  key: name,
  value: name.nullable(),
  applyLimitPerUniqueValue: z.boolean(),
  limit,
});

/** The schema of each event type's data, at its current version. */
export const eventSchemas = {
  RunEnqueued: z.object({
    runId: name,
    jobName: name,
    tags: z.array(tag),
    steps: z.array(step),
    priority: z.number().int(),
    maxConcurrentSteps: z.number().int().min(1).nullable(),
    leaseSeconds: z.number().int().min(1).nullable(),
    /** Tags Sluice read but did not act on, and why (e.g. a dagster/priority that is not an integer). */
    ignoredTags: z.array(z.object({ key: name, reason: z.string() })).optional(),
  }),
  /** Decision: the run moved from QUEUED to STARTING. */
  RunAdmitted: z.object({ runId: name }),
  /**
   * Decision: a queued run waits, with every limit holding it. Recorded when a run first waits
   * (at enqueue). Logs from before LimitStatesChanged also hold one per change of what held a
   * run; they are folded the same way.
   */
  RunBlocked: z.object({ runId: name, reasons: z.array(constraintSchema).min(1) }),
  /**
   * Which limits on a run counter are full, recorded once per counter whose full limits or
   * count-while-full changed in a command. A queued run's reasons at any position are the full
   * limits of its counters then, so waits are derived from these, not recorded per run.
   */
  LimitStatesChanged: z.object({
    counters: z
      .array(
        z.object({
          /** All null: every run. key: runs with the tag key; key and value: with that tag; pool: using the pool. */
          key: name.nullable(),
          value: name.nullable(),
          pool: name.nullable(),
          /** With pool: the pool's root-step counter (slots in use, pending or promised; see RootStepHold). */
          rootSteps: z.boolean().optional(),
          inUse: z.number().int().min(0),
          full: z.array(constraintSchema),
        }),
      )
      .min(1),
  }),
  RunStarted: z.object({ runId: name }),
  RunCancellationRequested: z.object({ runId: name }),
  RunFinished: z.object({
    runId: name,
    status: z.enum(['SUCCESS', 'FAILURE', 'CANCELED']),
    /** Why the run ended when Sluice ended it (a timeout, a forced cancel); null otherwise. */
    reason: z.string().nullable(),
    /** When run monitoring ended the run: which deadline, by name. Absent in older logs. */
    failureReason: z.enum(monitoringReasons).nullable().optional(),
  }),
  MaxConcurrentRunsSet: z.object({ limit: z.number().int().min(-1).max(1_000_000) }),
  TagConcurrencyLimitsSet: z.object({ limits: z.array(tagLimit) }),
  PoolGranularitySet: z.object({ granularity: z.enum(['OP', 'RUN']) }),
  DefaultPoolLimitSet: z.object({ limit: limit.nullable() }),
  PoolLimitSet: z.object({ pool: name, limit }),
  PoolLimitDeleted: z.object({ pool: name }),
  /** The OP-granularity run hold's settings (domain/config RootStepHold). */
  RootStepHoldSet: z.object({
    enabled: z.boolean(),
    runBuffer: limit,
    startedRunAllotmentSeconds: z.number().int().min(0).max(86_400),
  }),
  /**
   * A STARTED run's allotment window passed: its root steps that have not claimed a slot no
   * longer count as holding one (STARTING runs' always do; see RootStepHold).
   */
  RootStepAllotmentEnded: z.object({ runId: name }),
  /** A claim added a step the run did not declare at enqueue; its pool counts for the run from now on. */
  RunStepAdded: z.object({ runId: name, stepKey: name, pool: name }),
  /** Decision: a step of an admitted run holds a slot (of its pool, if it has one). */
  StepSlotGranted: z.object({ runId: name, stepKey: name, pool: name.nullable() }),
  /** Decision: a step's claim waits (first time), or what holds it changed. */
  StepSlotPending: z.object({
    runId: name,
    stepKey: name,
    pool: name.nullable(),
    reasons: z.array(constraintSchema).min(1),
  }),
  /** A step gave its slot back, or its waiting claim was withdrawn (`held` false). */
  StepSlotReleased: z.object({
    runId: name,
    stepKey: name,
    pool: name.nullable(),
    held: z.boolean(),
    /** Why, when Sluice released it (the run ended); null when the worker released it. */
    reason: z.string().nullable(),
  }),
  /** A heartbeat extended the run's lease (recorded at most every third of the lease). */
  RunHeartbeatRecorded: z.object({ runId: name }),
  /**
   * The rules and defaults the deployment's log is written under from position `from` on (see
   * domain/rules). Kept in a stream of its own beside the deployment's, so that recording them
   * moves no position of the log. Recorded by a server that first opens a log written under
   * older rules, or none: answers about positions before `from` keep the `previous` rules.
   */
  RulesVersionRecorded: z.object({
    rules: z.number().int().min(1),
    /** The rules the log was written under before; null for a log that had no events. */
    previous: z.number().int().min(1).nullable(),
    /** The first position of the deployment's log decided under the new rules. */
    from: z.string().regex(/^\d+$/),
    changes: z.array(z.object({ name: z.string().min(1), description: z.string() })),
  }),
  RunMonitoringSet: z.object({
    startTimeoutSeconds: z.number().int().min(1),
    cancelTimeoutSeconds: z.number().int().min(1),
    /** Default max runtime of STARTED runs without a max-runtime tag; null or absent: none. */
    maxRuntimeSeconds: z.number().int().min(1).nullable().optional(),
  }),
  /**
   * The server's wall clock was found behind the log's last event time (an NTP step back, or a
   * clock behind the other servers'): this event and the following ones carry the log's time
   * (`loggedAt`) instead, so times never go backwards, until the clock catches up.
   */
  /**
   * The log holds events of this format from here on. Written, in the same append, before a
   * server's first event of a type newer than the log's format, so an older server stops at this
   * event, naming both formats, before it could read anything it does not understand.
   */
  LogFormatRaised: z.object({ format: z.number().int().min(1) }),
  /**
   * The server's wall clock moved ahead of its monotonic clock by `byMs` since its last command
   * (an NTP step forward): deadlines of runs in progress count that much later, so the step
   * does not end them early.
   */
  ClockSteppedForward: z.object({ clockAt: z.iso.datetime(), byMs: z.number().int().min(1) }),
  ClockSteppedBack: z.object({
    clockAt: z.iso.datetime(),
    loggedAt: z.iso.datetime(),
    byMs: z.number().int().min(0),
  }),
} as const;

export type EventType = keyof typeof eventSchemas;
export type EventData<T extends EventType> = z.infer<(typeof eventSchemas)[T]>;

/** An event as the domain produces it: a type and its data. */
export type DomainEvent = {
  [T in EventType]: { type: T; data: EventData<T> };
}[EventType];

/** An event as read back from the log, with what the store and the command added. */
export type LoggedEvent = DomainEvent & {
  /** Revision in the deployment stream: the log position clients see. */
  revision: bigint;
  at: string;
  actor: string;
};

export const CURRENT_SCHEMA_VERSION = 1;

/**
 * The log format this Sluice writes and reads up to. Format 1: every event type of the first
 * release; later formats add types (EVENT_FORMAT_SINCE). A changed shape of an existing type
 * bumps that type's schema version instead, which older servers refuse by name.
 */
export const LOG_FORMAT = 2;

/** The format that introduced each event type newer than format 1. */
export const EVENT_FORMAT_SINCE: Partial<Record<EventType, number>> = {
  LogFormatRaised: 2,
  ClockSteppedBack: 2,
  ClockSteppedForward: 2,
};

export const formatOfEvent = (type: EventType): number => EVENT_FORMAT_SINCE[type] ?? 1;

export class UnreadableEventError extends Error {
  override readonly name = 'UnreadableEventError';
}

/** The log was written by a newer Sluice than this one: refused, never read half-understood. */
export class NewerLogFormatError extends UnreadableEventError {}

/** Where an event sits in the store, named only when an error needs it (not per event a replay reads). */
export interface EventPlace {
  stream: string;
  revision: bigint;
}

const describePlace = (where: string | EventPlace): string =>
  typeof where === 'string' ? where : `event at position ${where.revision} of stream ${where.stream}`;

/** Validates a stored event's data against its schema; throws naming the position. */
export function parseEvent(
  type: string,
  schemaVersion: number,
  data: unknown,
  where: string | EventPlace,
  readsUpTo: number = LOG_FORMAT,
): DomainEvent {
  if (!Object.hasOwn(eventSchemas, type)) {
    throw new UnreadableEventError(
      `${describePlace(where)}: unknown event type ${JSON.stringify(type)} (this Sluice reads log format ${readsUpTo}; was the log written by a newer one?)`,
    );
  }
  if (schemaVersion !== CURRENT_SCHEMA_VERSION) {
    throw new UnreadableEventError(
      `${describePlace(where)}: ${type} has schema version ${schemaVersion}, this server reads version ${CURRENT_SCHEMA_VERSION}`,
    );
  }
  const schema = eventSchemas[type as EventType];
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') || '(root)';
    throw new UnreadableEventError(`${describePlace(where)}: ${type} is invalid at ${path}: ${issue?.message}`);
  }
  if (type === 'LogFormatRaised' && (parsed.data as { format: number }).format > readsUpTo) {
    const format = (parsed.data as { format: number }).format;
    throw new NewerLogFormatError(
      `${describePlace(where)}: the log was raised to format ${format} by a newer Sluice; this Sluice reads log formats up to ${readsUpTo}: upgrade it to serve this log`,
    );
  }
  return { type, data: parsed.data } as DomainEvent;
}
