/**
 * Commands are imperatives; each is validated here, whatever door it came in by (GraphQL,
 * CLI, config file), so every input path gets the same clear, field-naming errors.
 */
import { z } from 'zod';
import { LIMITS, type PoolGranularity, type RootStepHold, type TagConcurrencyLimit } from './config.js';
import { ignoredMaxRuntimeTags } from './dagster-tags.js';
import { InvalidInputError } from './errors.js';
import {
  type FinalStatus,
  type IgnoredTag,
  MAX_PRIORITY,
  PRIORITY_TAG,
  readPriorityTag,
  type Step,
  type Tag,
} from './run.js';

export interface EnqueueRunInput {
  runId?: string | null;
  jobName: string;
  tags?: Array<{ key: string; value: string }> | null;
  steps?: Array<{
    key: string;
    pool?: string | null;
    priority?: number | null;
    dependsOn?: string[] | null;
  }> | null;
  priority?: number | null;
  maxConcurrentSteps?: number | null;
  leaseSeconds?: number | null;
}

export interface TagConcurrencyLimitInput {
  key: string;
  value?: string | null;
  applyLimitPerUniqueValue?: boolean | null;
  limit: number;
}

export type Command =
  | { type: 'EnqueueRun'; input: EnqueueRunInput }
  | { type: 'MarkRunStarted'; runId: string }
  | { type: 'MarkRunFinished'; runId: string; status: string }
  | { type: 'TerminateRun'; runId: string; force?: boolean | null }
  | { type: 'SetMaxConcurrentRuns'; limit: number }
  | { type: 'SetTagConcurrencyLimits'; limits: TagConcurrencyLimitInput[] }
  | { type: 'SetPoolGranularity'; granularity: string }
  | { type: 'SetDefaultPoolLimit'; limit: number | null }
  | { type: 'SetPoolLimit'; pool: string; limit: number }
  | { type: 'DeletePoolLimit'; pool: string }
  /** With a pool, a step the run does not declare is added to it (an admitted run only). */
  | { type: 'ClaimStepSlot'; runId: string; stepKey: string; pool?: string | null }
  | { type: 'ReleaseStepSlot'; runId: string; stepKey: string }
  /** An admin frees one step's slot and claim, or all of the run's (no stepKey), without ending the run. */
  | { type: 'FreeStepSlots'; runId: string; stepKey?: string | null }
  | { type: 'Heartbeat'; runId: string }
  /** Ends every in-progress run whose deadline has passed at the context's `now`. */
  | { type: 'ExpireDeadlines' }
  | {
      type: 'SetRunMonitoring';
      startTimeoutSeconds: number;
      cancelTimeoutSeconds: number;
      /** 0 or null: no default max runtime. */
      maxRuntimeSeconds?: number | null;
    }
  /** Several limit edits at once: one append, one admission pass. */
  | { type: 'ChangeConcurrencyConfig'; change: ConfigChangeInput };

export interface ConfigChangeInput {
  maxConcurrentRuns?: number | null;
  tagConcurrencyLimits?: TagConcurrencyLimitInput[] | null;
  poolGranularity?: string | null;
  defaultPoolLimit?: number | null;
  poolLimits?: Array<{ pool: string; limit?: number | null }> | null;
  /** The OP-granularity run hold's settings; absent fields stay as they are. */
  rootStepHold?: RootStepHoldInput | null;
}

export interface RootStepHoldInput {
  enabled?: boolean | null;
  runBuffer?: number | null;
  startedRunAllotmentSeconds?: number | null;
}

/** Validated limit edits; absent fields stay as they are. A pool limit of null removes it. */
export interface ConfigEdits {
  maxConcurrentRuns?: number;
  tagConcurrencyLimits?: TagConcurrencyLimit[];
  poolGranularity?: PoolGranularity;
  defaultPoolLimit?: number | null;
  poolLimits?: Array<{ pool: string; limit: number | null }>;
  rootStepHold?: Partial<RootStepHold>;
}

const name = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .min(1, `${what} must not be empty`)
    .max(LIMITS.maxNameLength, `${what} must be at most ${LIMITS.maxNameLength} characters`)
    .refine((s) => !s.includes('\u0000'), `${what} must not contain NUL characters`);

// Built once: a zod schema costs tens of microseconds to build, more than checking a value.
const runIdSchema = name('run id');
const poolNameSchema = name('pool name');
const stepKeySchema = name('step key');

const limitValue = z
  .number()
  .int(`must be an integer from 0 to ${LIMITS.maxLimit}`)
  .min(0, `must be an integer from 0 to ${LIMITS.maxLimit}`)
  .max(LIMITS.maxLimit, `must be an integer from 0 to ${LIMITS.maxLimit}`);

const int32 = (what: string, min: number, max: number) =>
  z
    .number()
    .int(`${what} must be an integer`)
    .min(min, `${what} must be an integer from ${min} to ${max}`)
    .max(max, `${what} must be an integer from ${min} to ${max}`);

const enqueueSchema = z.object({
  runId: name('run id').nullish(),
  jobName: name('job name'),
  tags: z
    .array(
      z.object({
        key: name('tag key'),
        // Dagster accepts any string; Sluice keeps values it can count (see tagsSluiceCounts).
        value: z
          .string()
          .max(LIMITS.maxTagValueLength, `a tag value may be at most ${LIMITS.maxTagValueLength} characters`),
      }),
    )
    .max(LIMITS.maxTagsPerRun, `a run may carry at most ${LIMITS.maxTagsPerRun} tags`)
    .nullish(),
  steps: z
    .array(
      z.object({
        key: name('step key'),
        pool: name('pool name').nullish(),
        priority: int32('step priority', -1_000_000, 1_000_000).nullish(),
        dependsOn: z
          .array(name('step key'))
          .max(LIMITS.maxStepsPerRun, `a step may wait for at most ${LIMITS.maxStepsPerRun} steps`)
          .nullish(),
      }),
    )
    .max(LIMITS.maxStepsPerRun, `a run may declare at most ${LIMITS.maxStepsPerRun} steps`)
    .nullish(),
  priority: int32('priority', -1_000_000, 1_000_000).nullish(),
  maxConcurrentSteps: int32('maxConcurrentSteps', 1, LIMITS.maxLimit).nullish(),
  leaseSeconds: int32('leaseSeconds', 1, 7 * 24 * 3600).nullish(),
});

const tagLimitSchema = z.object({
  key: name('tag key'),
  value: name('tag value').nullish(),
  applyLimitPerUniqueValue: z.boolean().nullish(),
  limit: limitValue,
});

const tagLimitsSchema = z.array(tagLimitSchema).max(LIMITS.maxTagLimits, `at most ${LIMITS.maxTagLimits} tag limits`);

function parse<T>(schema: z.ZodType<T>, input: unknown, prefix: string): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [prefix, ...(issue?.path ?? []).map(String)].filter((p) => p !== '').join('.');
  throw new InvalidInputError(path || null, `${path ? `${path}: ` : ''}${issue?.message ?? 'invalid input'}`);
}

export interface ValidEnqueue {
  runId: string | null;
  jobName: string;
  tags: Tag[];
  steps: Step[];
  priority: number | null;
  maxConcurrentSteps: number | null;
  leaseSeconds: number | null;
  ignoredTags: IgnoredTag[];
}

/**
 * The tags Sluice keeps and counts in tag limits. A value it cannot use as a limit's value
 * (empty, or longer than a name may be) is left out and recorded as ignored.
 */
function tagsSluiceCounts(tags: readonly Tag[], ignored: IgnoredTag[]): Tag[] {
  return tags.filter((tag) => {
    if (tag.value === '') {
      ignored.push({
        key: tag.key,
        reason: 'its value is empty: Sluice keeps no empty tag values, no tag limit counts it',
      });
      return false;
    }
    if (tag.value.length > LIMITS.maxNameLength) {
      ignored.push({
        key: tag.key,
        reason: `its value is ${tag.value.length} characters, over Sluice's ${LIMITS.maxNameLength}: not kept, no tag limit counts it`,
      });
      return false;
    }
    return true;
  });
}

/** Keys a step waits for must be other steps of the same run, with no cycle among them. */
function validateDependencies(steps: readonly Step[]): void {
  const index = new Map(steps.map((s, i) => [s.key, i]));
  steps.forEach((step, i) => {
    const seen = new Set<string>();
    (step.dependsOn ?? []).forEach((key, j) => {
      const field = `input.steps.${i}.dependsOn.${j}`;
      if (key === step.key) throw new InvalidInputError(field, `${field}: step ${step.key} cannot wait for itself`);
      if (!index.has(key)) {
        throw new InvalidInputError(field, `${field}: the run declares no step ${JSON.stringify(key)}`);
      }
      if (seen.has(key)) throw new InvalidInputError(field, `${field}: step ${key} is listed twice`);
      seen.add(key);
    });
  });
  // Depth-first search; a step met again while still on the path closes a cycle.
  const state = new Map<string, 'open' | 'done'>();
  const visit = (key: string, path: string[]): void => {
    if (state.get(key) === 'done') return;
    if (state.get(key) === 'open') {
      const cycle = [...path.slice(path.indexOf(key)), key];
      const i = index.get(path.at(-1) as string) as number;
      const j = (steps[i]?.dependsOn ?? []).indexOf(key);
      const field = `input.steps.${i}.dependsOn.${j}`;
      throw new InvalidInputError(field, `${field}: the steps wait for each other in a cycle: ${cycle.join(' → ')}`);
    }
    state.set(key, 'open');
    const step = steps[index.get(key) as number];
    for (const next of step?.dependsOn ?? []) visit(next, [...path, key]);
    state.set(key, 'done');
  };
  for (const step of steps) visit(step.key, []);
}

/**
 * An enqueue input rebuilt from a RunEnqueued (a replay of the log): validated and normalized
 * when it was first decided (kept tags, steps with pool and priority, the priority resolved), so
 * it is taken as it is. Tags that were ignored then are not reported again.
 */
export function recordedEnqueue(input: EnqueueRunInput): ValidEnqueue {
  return {
    runId: input.runId ?? null,
    jobName: input.jobName,
    tags: input.tags ?? [],
    steps: (input.steps ?? []) as Step[],
    priority: input.priority ?? null,
    maxConcurrentSteps: input.maxConcurrentSteps ?? null,
    leaseSeconds: input.leaseSeconds ?? null,
    ignoredTags: [],
  };
}

export function validateEnqueue(input: EnqueueRunInput): ValidEnqueue {
  const valid = parse(enqueueSchema, input, 'input');
  const given = valid.tags ?? [];
  const seenTags = new Set<string>();
  given.forEach((tag, i) => {
    if (seenTags.has(tag.key)) {
      throw new InvalidInputError(`input.tags.${i}.key`, `input.tags.${i}.key: tag ${tag.key} appears twice`);
    }
    seenTags.add(tag.key);
  });
  const ignoredTags: IgnoredTag[] = [];
  const tags = tagsSluiceCounts(given, ignoredTags);
  const priorityTag = tags.find((t) => t.key === PRIORITY_TAG);
  const tagPriority = readPriorityTag(tags);
  if (priorityTag && tagPriority && !tagPriority.integer) {
    // Dagster reads a priority it cannot parse as 0 and carries on; so does Sluice, and says so.
    const applies = valid.priority == null ? 'it counts as priority 0' : "the input's priority applies";
    ignoredTags.push({
      key: PRIORITY_TAG,
      reason: `${JSON.stringify(priorityTag.value)} is not an integer: ${applies}`,
    });
  } else if (priorityTag && tagPriority && !(Math.abs(tagPriority.value) <= MAX_PRIORITY)) {
    // Dagster takes any integer; Sluice's priorities stay within ±MAX_PRIORITY, so the order is kept at the ends.
    const applies =
      valid.priority == null
        ? `it counts as ${Math.sign(tagPriority.value) * MAX_PRIORITY}`
        : "the input's priority applies";
    ignoredTags.push({
      key: PRIORITY_TAG,
      reason: `${JSON.stringify(priorityTag.value)} is beyond -${MAX_PRIORITY}..${MAX_PRIORITY}: ${applies}`,
    });
  }
  ignoredTags.push(...ignoredMaxRuntimeTags(tags));
  // dependsOn is stored only when given, so runs without it record what they always did.
  const steps: Step[] = (valid.steps ?? []).map((s) => ({
    key: s.key,
    pool: s.pool ?? null,
    priority: s.priority ?? 0,
    ...(s.dependsOn != null && s.dependsOn.length > 0 ? { dependsOn: s.dependsOn } : {}),
  }));
  const seenSteps = new Set<string>();
  steps.forEach((step, i) => {
    if (seenSteps.has(step.key)) {
      throw new InvalidInputError(`input.steps.${i}.key`, `input.steps.${i}.key: step ${step.key} is declared twice`);
    }
    seenSteps.add(step.key);
  });
  validateDependencies(steps);
  return {
    runId: valid.runId ?? null,
    jobName: valid.jobName,
    tags,
    steps,
    priority: valid.priority ?? null,
    maxConcurrentSteps: valid.maxConcurrentSteps ?? null,
    leaseSeconds: valid.leaseSeconds ?? null,
    ignoredTags,
  };
}

export function validateRunId(runId: unknown, field = 'runId'): string {
  return parse(runIdSchema, runId, field);
}

export function validateFinalStatus(status: unknown): FinalStatus {
  if (status === 'SUCCESS' || status === 'FAILURE' || status === 'CANCELED') return status;
  throw new InvalidInputError(
    'status',
    `status: a run finishes as SUCCESS, FAILURE or CANCELED, not ${JSON.stringify(status)}`,
  );
}

const maxRunsMessage = `must be -1 (no limit) or an integer from 0 to ${LIMITS.maxLimit}`;
const maxConcurrentRunsSchema = z
  .number()
  .int(maxRunsMessage)
  .min(-1, maxRunsMessage)
  .max(LIMITS.maxLimit, maxRunsMessage);

export function validateMaxConcurrentRuns(limit: unknown, field = 'limit'): number {
  return parse(maxConcurrentRunsSchema, limit, field);
}

export function validateLimit(limit: unknown, field = 'limit'): number {
  return parse(limitValue, limit, field);
}

export function validatePoolName(pool: unknown, field = 'pool'): string {
  return parse(poolNameSchema, pool, field);
}

export function validateGranularity(granularity: unknown, field = 'granularity'): PoolGranularity {
  if (granularity === 'OP' || granularity === 'RUN') return granularity;
  throw new InvalidInputError(field, `${field}: must be OP or RUN, not ${JSON.stringify(granularity)}`);
}

export function validateTagLimits(limits: unknown, field = 'limits'): TagConcurrencyLimit[] {
  const valid = parse(tagLimitsSchema, limits, field);
  const seen = new Set<string>();
  return valid.map((l, i) => {
    const perUnique = l.applyLimitPerUniqueValue ?? false;
    if (perUnique && l.value != null) {
      throw new InvalidInputError(
        `${field}.${i}.value`,
        `${field}.${i}.value: a limit per unique value applies to every value of ${l.key}; leave value empty`,
      );
    }
    const identity = JSON.stringify([l.key, l.value ?? null, perUnique]);
    if (seen.has(identity)) {
      throw new InvalidInputError(`${field}.${i}`, `${field}.${i}: the same tag limit is listed twice`);
    }
    seen.add(identity);
    return { key: l.key, value: l.value ?? null, applyLimitPerUniqueValue: perUnique, limit: l.limit };
  });
}

export function validateStepKey(stepKey: unknown): string {
  return parse(stepKeySchema, stepKey, 'stepKey');
}

const timeoutSchema = int32('timeout', 1, 7 * 24 * 3600);

export function validateTimeout(seconds: unknown, field: string): number {
  return parse(timeoutSchema, seconds, field);
}

const maxRuntimeSchema = int32('max runtime', 0, 365 * 24 * 3600);

/** A default max runtime in seconds; 0 means none, as in Dagster, and reads as null. */
export function validateMaxRuntime(seconds: unknown, field: string): number | null {
  if (seconds === null || seconds === undefined) return null;
  const valid = parse(maxRuntimeSchema, seconds, field);
  return valid === 0 ? null : valid;
}

const allotmentSchema = int32('allotment', 0, LIMITS.maxAllotmentSeconds);

export function validateRootStepHold(input: RootStepHoldInput, field = 'rootStepHold'): Partial<RootStepHold> {
  const hold: Partial<RootStepHold> = {};
  if (input.enabled != null) {
    if (typeof input.enabled !== 'boolean') {
      throw new InvalidInputError(`${field}.enabled`, `${field}.enabled: must be true or false`);
    }
    hold.enabled = input.enabled;
  }
  if (input.runBuffer != null) hold.runBuffer = validateLimit(input.runBuffer, `${field}.runBuffer`);
  if (input.startedRunAllotmentSeconds != null) {
    hold.startedRunAllotmentSeconds = parse(
      allotmentSchema,
      input.startedRunAllotmentSeconds,
      `${field}.startedRunAllotmentSeconds`,
    );
  }
  return hold;
}

export function validateConfigChange(change: ConfigChangeInput): ConfigEdits {
  const edits: ConfigEdits = {};
  if (change.maxConcurrentRuns != null) {
    edits.maxConcurrentRuns = validateMaxConcurrentRuns(change.maxConcurrentRuns, 'change.maxConcurrentRuns');
  }
  if (change.tagConcurrencyLimits != null) {
    edits.tagConcurrencyLimits = validateTagLimits(change.tagConcurrencyLimits, 'change.tagConcurrencyLimits');
  }
  if (change.poolGranularity != null) {
    edits.poolGranularity = validateGranularity(change.poolGranularity, 'change.poolGranularity');
  }
  if (change.defaultPoolLimit !== undefined) {
    edits.defaultPoolLimit =
      change.defaultPoolLimit === null ? null : validateLimit(change.defaultPoolLimit, 'change.defaultPoolLimit');
  }
  if (change.poolLimits != null) {
    const seen = new Set<string>();
    edits.poolLimits = change.poolLimits.map((entry, i) => {
      const pool = validatePoolName(entry.pool, `change.poolLimits.${i}.pool`);
      if (seen.has(pool)) {
        throw new InvalidInputError(
          `change.poolLimits.${i}.pool`,
          `change.poolLimits.${i}.pool: pool ${pool} is listed twice`,
        );
      }
      seen.add(pool);
      const limit = entry.limit == null ? null : validateLimit(entry.limit, `change.poolLimits.${i}.limit`);
      return { pool, limit };
    });
  }
  if (change.rootStepHold != null)
    edits.rootStepHold = validateRootStepHold(change.rootStepHold, 'change.rootStepHold');
  return edits;
}
