/** Object types: runs, decisions, limits, pools, as the contract names them. */
import type { ObjectRef } from '@pothos/core';
import type { PoolView } from '../../projections/pools.js';
import type { Decision, RunRecord, WaitInterval } from '../../projections/state.js';
import { currentHolds } from '../domain/admission.js';
import type { ConcurrencyConfig, RootStepHold, TagConcurrencyLimit } from '../domain/config.js';
import type { Constraint } from '../domain/constraints.js';
import type { IgnoredTag, Step, Tag } from '../domain/run.js';
import { type BuilderTypes, builder } from './builder.js';
import { inTurns } from './in-turns.js';
import { asOfOverride, holdsOverride } from './run-views.js';

export const RunStatusEnum = builder.enumType('RunStatus', {
  values: ['QUEUED', 'STARTING', 'STARTED', 'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED'] as const,
});

export const PoolGranularityEnum = builder.enumType('PoolGranularity', { values: ['OP', 'RUN'] as const });

export const ConstraintKindEnum = builder.enumType('ConstraintKind', {
  description: 'Which kind of limit holds a run or a step back.',
  values: {
    MAX_CONCURRENT_RUNS: {},
    TAG_LIMIT: {},
    POOL_LIMIT: {},
    RUN_STEP_LIMIT: {},
    ROOT_STEP_POOLS: {
      description:
        'At OP granularity: every root step of the run is in a pool with no free slot (slots in use, steps pending and root steps promised to admitted runs, at or over the limit plus the run buffer). One per pool, with its count.',
    },
  } as const,
});

export const RunFailureReasonEnum = builder.enumType('RunFailureReason', {
  description:
    "Which run-monitoring deadline ended a run. START_TIMEOUT is Dagster's RunFailureReason of the same name; Dagster has no name for the others.",
  values: {
    START_TIMEOUT: { description: 'STARTING for longer than run_monitoring.start_timeout_seconds: FAILURE.' },
    CANCEL_TIMEOUT: { description: 'CANCELING for longer than run_monitoring.cancel_timeout_seconds: CANCELED.' },
    RUN_TIMEOUT: {
      description:
        'STARTED for longer than its dagster/max_runtime tag (else its dagster/max_runtime_seconds tag, as Dagster reads them), else run_monitoring.max_runtime_seconds: FAILURE.',
    },
    UNEXPECTED_TERMINATION: {
      description:
        "No heartbeat for leaseSeconds: the worker is taken for dead (Dagster's name for a run worker that died).",
    },
  } as const,
});

export const IgnoredTagType = builder.objectRef<IgnoredTag>('IgnoredTag').implement({
  description: 'A tag Sluice read and did not act on.',
  fields: (t) => ({ key: t.exposeString('key'), reason: t.exposeString('reason') }),
});

export const DecisionKindEnum = builder.enumType('DecisionKind', {
  values: ['ADMITTED', 'BLOCKED', 'SLOT_GRANTED', 'SLOT_PENDING'] as const,
});

export const TagType = builder.objectRef<Tag>('Tag').implement({
  fields: (t) => ({ key: t.exposeString('key'), value: t.exposeString('value') }),
});

export const ConstraintType = builder.objectRef<Constraint>('Constraint').implement({
  description: 'One limit, as it bound a run or a step at the moment of a decision.',
  fields: (t) => ({
    kind: t.expose('kind', { type: ConstraintKindEnum }),
    key: t.exposeString('key', { nullable: true, description: 'Tag key, for TAG_LIMIT.' }),
    value: t.exposeString('value', {
      nullable: true,
      description: 'Tag value, for TAG_LIMIT with a value or with a limit per unique value.',
    }),
    pool: t.exposeString('pool', { nullable: true, description: 'Pool name, for POOL_LIMIT.' }),
    perUniqueValue: t.exposeBoolean('perUniqueValue', {
      description: 'For TAG_LIMIT: the limit counts each value of the key separately.',
    }),
    limit: t.exposeInt('limit'),
    inUse: t.exposeInt('inUse'),
    message: t.exposeString('message', {
      description: "A sentence a person can read, e.g. 'pool database: 1 of 1 slots in use'.",
    }),
  }),
});

export const DecisionType = builder.objectRef<Decision>('Decision').implement({
  fields: (t) => ({
    position: t.string({
      description: 'Opaque, strictly increasing log position of the event that records the decision.',
      resolve: (d) => d.position.toString(),
    }),
    at: t.expose('at', { type: 'DateTime' }),
    kind: t.expose('kind', { type: DecisionKindEnum }),
    runId: t.exposeID('runId'),
    stepKey: t.exposeString('stepKey', { nullable: true }),
    pool: t.exposeString('pool', { nullable: true }),
    reasons: t.expose('reasons', {
      type: [ConstraintType],
      description:
        'What holds the run or step back (BLOCKED, SLOT_PENDING); may be empty for ADMITTED and SLOT_GRANTED.',
    }),
    message: t.exposeString('message'),
  }),
});

export const WaitIntervalType = builder.objectRef<WaitInterval>('WaitInterval').implement({
  description: 'One stretch of time a run spent held back, and why.',
  fields: (t) => ({
    from: t.expose('from', { type: 'DateTime' }),
    to: t.expose('to', { type: 'DateTime', nullable: true, description: 'null while the run is still waiting.' }),
    reasons: t.expose('reasons', { type: [ConstraintType] }),
  }),
});

export const StepType = builder.objectRef<Step>('Step').implement({
  fields: (t) => ({
    key: t.exposeString('key'),
    pool: t.exposeString('pool', { nullable: true }),
    priority: t.exposeInt('priority', {
      description: "Added to the run's priority when steps wait for the same pool.",
    }),
  }),
});

export const RunType = builder.objectRef<RunRecord>('Run').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    jobName: t.exposeString('jobName'),
    status: t.expose('status', { type: RunStatusEnum }),
    tags: t.expose('tags', { type: [TagType] }),
    steps: t.expose('steps', { type: [StepType], description: 'The steps given at enqueue, in order.' }),
    pools: t.exposeStringList('pools', { description: "Distinct pools of the run's steps." }),
    priority: t.exposeInt('priority'),
    maxConcurrentSteps: t.exposeInt('maxConcurrentSteps', { nullable: true }),
    enqueuedAt: t.expose('enqueuedAt', { type: 'DateTime' }),
    admittedAt: t.expose('admittedAt', { type: 'DateTime', nullable: true }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true }),
    cancelRequestedAt: t.expose('cancelRequestedAt', { type: 'DateTime', nullable: true }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    leaseSeconds: t.exposeInt('leaseSeconds', { nullable: true }),
    lastHeartbeatAt: t.expose('lastHeartbeatAt', {
      type: 'DateTime',
      nullable: true,
      description: 'The last heartbeat recorded in the log (recorded at most every third of the lease).',
    }),
    finishReason: t.exposeString('finishReason', {
      nullable: true,
      description: 'Why Sluice ended the run (a timeout, a forced cancel), when it did.',
    }),
    failureReason: t.field({
      type: RunFailureReasonEnum,
      nullable: true,
      description: 'When run monitoring ended the run: which deadline, beside finishReason in words.',
      resolve: (run) => run.failureReason ?? null,
    }),
    ignoredTags: t.field({
      type: [IgnoredTagType],
      description: 'Tags Sluice read and did not act on, and why (e.g. a dagster/priority that is not an integer).',
      resolve: (run) => run.ignoredTags ?? [],
    }),
    blockedBy: t.field({
      type: [ConstraintType],
      description: 'What holds this run back right now; empty unless it is QUEUED and held.',
      resolve: (run, _args, ctx) => holdsOverride(run) ?? currentHolds(ctx.sluice.state, run),
    }),
    waits: t.field({
      type: [WaitIntervalType],
      description: 'Every stretch this run spent held back, oldest first.',
      resolve: async (run, _args, ctx) => {
        const history = await ctx.sluice.readHistory();
        return inTurns(() => history.waitsOf(run.id, asOfOverride(run)));
      },
    }),
    decisions: t.field({
      type: [DecisionType],
      description: 'Every decision about this run, oldest first.',
      resolve: async (run, _args, ctx) => {
        const history = await ctx.sluice.readHistory();
        return inTurns(() =>
          history.decisions({ runId: run.id, asOf: asOfOverride(run), limit: Number.MAX_SAFE_INTEGER }),
        );
      },
    }),
  }),
});

export const TagConcurrencyLimitType = builder.objectRef<TagConcurrencyLimit>('TagConcurrencyLimit').implement({
  fields: (t) => ({
    key: t.exposeString('key'),
    value: t.exposeString('value', {
      nullable: true,
      description: 'null: the limit counts every run that has the key, whatever its value.',
    }),
    applyLimitPerUniqueValue: t.exposeBoolean('applyLimitPerUniqueValue'),
    limit: t.exposeInt('limit'),
  }),
});

const RootStepHoldType = builder.objectRef<RootStepHold>('RootStepHold').implement({
  description:
    "Dagster's OP-granularity run hold: a queued run all of whose root steps are in pools with no free slot stays queued.",
  fields: (t) => ({
    enabled: t.exposeBoolean('enabled', { description: 'false: runs are admitted regardless.' }),
    runBuffer: t.exposeInt('runBuffer', {
      description: "How many slots over a pool's limit root steps may be promised before runs are held.",
    }),
    startedRunAllotmentSeconds: t.exposeInt('startedRunAllotmentSeconds', {
      description:
        "How long a STARTED run's unclaimed root steps still count as holding their slots (STARTING runs' always do).",
    }),
  }),
});

export const ConcurrencyConfigType = builder.objectRef<ConcurrencyConfig>('ConcurrencyConfig').implement({
  fields: (t) => ({
    maxConcurrentRuns: t.exposeInt('maxConcurrentRuns', { description: '-1: no limit.' }),
    tagConcurrencyLimits: t.expose('tagConcurrencyLimits', { type: [TagConcurrencyLimitType] }),
    poolGranularity: t.expose('poolGranularity', { type: PoolGranularityEnum }),
    defaultPoolLimit: t.exposeInt('defaultPoolLimit', {
      nullable: true,
      description: 'null: a pool with no limit of its own is unlimited.',
    }),
    rootStepHold: t.expose('rootStepHold', { type: RootStepHoldType }),
  }),
});

export const PoolType = builder.objectRef<PoolView>('Pool').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    limit: t.exposeInt('limit', {
      nullable: true,
      description: 'The limit in force: its own, else the default; null when unlimited.',
    }),
    explicitLimit: t.exposeInt('explicitLimit', {
      nullable: true,
      description: 'The limit set for this pool itself, if any.',
    }),
    inUse: t.exposeInt('inUse', {
      description: 'Slots claimed by steps (OP granularity) or runs in progress holding the pool (RUN granularity).',
    }),
    pending: t.exposeInt('pending', { description: 'Steps or runs waiting for this pool.' }),
    activeRunIds: t.exposeIDList('activeRunIds'),
    promised: t.exposeInt('promised', {
      description:
        'OP granularity: root steps of admitted runs that have not claimed yet, counted as holding a slot when deciding whether to hold runs whose root steps all use full pools (0 at RUN granularity).',
    }),
  }),
});

export const PageInfoType = builder
  .objectRef<{ hasNextPage: boolean; endCursor: string | null }>('PageInfo')
  .implement({
    fields: (t) => ({
      hasNextPage: t.exposeBoolean('hasNextPage'),
      endCursor: t.exposeString('endCursor', { nullable: true }),
    }),
  });

/** A connection type; `plural` names its nodes in the description of totalCount (e.g. 'runs'). */
export function connection<T>(name: string, node: ObjectRef<BuilderTypes, T>, plural: string) {
  const edge = builder.objectRef<{ cursor: string; node: T }>(`${name}Edge`).implement({
    fields: (t) => ({ cursor: t.exposeString('cursor'), node: t.expose('node', { type: node }) }),
  });
  return builder
    .objectRef<{
      edges: Array<{ cursor: string; node: T }>;
      pageInfo: { hasNextPage: boolean; endCursor: string | null };
      /** How many match the filters whatever the page; asked only when selected. */
      totalCount: () => number | Promise<number>;
    }>(`${name}Connection`)
    .implement({
      fields: (t) => ({
        edges: t.expose('edges', { type: [edge] }),
        pageInfo: t.expose('pageInfo', { type: PageInfoType }),
        totalCount: t.int({
          description: `How many ${plural} match the query's filters, whatever the page.`,
          resolve: (c) => c.totalCount(),
        }),
      }),
    });
}

export const RunConnectionType = connection('Run', RunType, 'runs');
export const DecisionConnectionType = connection('Decision', DecisionType, 'decisions');

export const RunPayloadType = builder.objectRef<{ run: RunRecord }>('RunPayload').implement({
  isTypeOf: (value) => typeof value === 'object' && value !== null && 'run' in value,
  fields: (t) => ({ run: t.expose('run', { type: RunType }) }),
});

export const PoolPayloadType = builder.objectRef<{ pool: PoolView }>('PoolPayload').implement({
  isTypeOf: (value) => typeof value === 'object' && value !== null && 'pool' in value,
  fields: (t) => ({ pool: t.expose('pool', { type: PoolType }) }),
});

export const ConfigPayloadType = builder.objectRef<{ config: ConcurrencyConfig }>('ConfigPayload').implement({
  isTypeOf: (value) => typeof value === 'object' && value !== null && 'config' in value,
  fields: (t) => ({ config: t.expose('config', { type: ConcurrencyConfigType }) }),
});
