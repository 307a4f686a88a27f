/**
 * Every fact Sluice records, each with a zod schema that validates it when read back.
 * Events are facts in the past tense; `schemaVersion` lets a later reader upcast old shapes.
 */
import { z } from 'zod';

const name = z.string().min(1).max(255);
const limit = z.number().int().min(0).max(1_000_000);

const tag = z.object({ key: name, value: name });
const step = z.object({ key: name, pool: name.nullable(), priority: z.number().int() });

export const constraintSchema = z.object({
  kind: z.enum(['MAX_CONCURRENT_RUNS', 'TAG_LIMIT', 'POOL_LIMIT', 'RUN_STEP_LIMIT']),
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
  }),
  /** Decision: the run moved from QUEUED to STARTING. */
  RunAdmitted: z.object({ runId: name }),
  /** Decision: the set of limits holding a queued run changed (first hold included). */
  RunBlocked: z.object({ runId: name, reasons: z.array(constraintSchema).min(1) }),
  RunStarted: z.object({ runId: name }),
  RunCancellationRequested: z.object({ runId: name }),
  RunFinished: z.object({
    runId: name,
    status: z.enum(['SUCCESS', 'FAILURE', 'CANCELED']),
    /** Why the run ended when Sluice ended it (a timeout, a forced cancel); null otherwise. */
    reason: z.string().nullable(),
  }),
  MaxConcurrentRunsSet: z.object({ limit: z.number().int().min(-1).max(1_000_000) }),
  TagConcurrencyLimitsSet: z.object({ limits: z.array(tagLimit) }),
  PoolGranularitySet: z.object({ granularity: z.enum(['OP', 'RUN']) }),
  DefaultPoolLimitSet: z.object({ limit: limit.nullable() }),
  PoolLimitSet: z.object({ pool: name, limit }),
  PoolLimitDeleted: z.object({ pool: name }),
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
  RunMonitoringSet: z.object({
    startTimeoutSeconds: z.number().int().min(1),
    cancelTimeoutSeconds: z.number().int().min(1),
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

export class UnreadableEventError extends Error {
  override readonly name = 'UnreadableEventError';
}

/** Validates a stored event's data against its schema; throws naming the position. */
export function parseEvent(type: string, schemaVersion: number, data: unknown, where: string): DomainEvent {
  if (!Object.hasOwn(eventSchemas, type)) {
    throw new UnreadableEventError(`${where}: unknown event type ${JSON.stringify(type)}`);
  }
  if (schemaVersion !== CURRENT_SCHEMA_VERSION) {
    throw new UnreadableEventError(
      `${where}: ${type} has schema version ${schemaVersion}, this server reads version ${CURRENT_SCHEMA_VERSION}`,
    );
  }
  const schema = eventSchemas[type as EventType];
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') || '(root)';
    throw new UnreadableEventError(`${where}: ${type} is invalid at ${path}: ${issue?.message}`);
  }
  return { type, data: parsed.data } as DomainEvent;
}
