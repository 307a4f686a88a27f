/** The slots section: step slot claims, releases and heartbeats. */
import { claimKey, type StepClaim } from '../../projections/state.js';
import type { Command } from '../domain/commands.js';
import { type Deadline, deadlinesOf } from '../domain/deadlines.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from '../domain/errors.js';
import { isFinished, isInProgress } from '../domain/run.js';
import { claimQueuePosition, currentClaimHolds, suggestedRetrySeconds } from '../domain/slots.js';
import { builder, type GraphQLContext } from './builder.js';
import { storeErrorsExplicit } from './errors.js';
import { RunResult, runCommand } from './mutation.js';
import { ConstraintType, RunStatusEnum, RunType } from './types.js';

export const StepSlotClaimType = builder.objectRef<StepClaim>('StepSlotClaim').implement({
  fields: (t) => ({
    runId: t.exposeID('runId'),
    stepKey: t.exposeString('stepKey'),
    pool: t.exposeString('pool', { nullable: true }),
    granted: t.boolean({ resolve: (claim) => claim.status === 'GRANTED' }),
    released: t.boolean({ resolve: (claim) => claim.status === 'RELEASED' }),
    reasons: t.field({
      type: [ConstraintType],
      description: 'What holds the step back while it is not granted.',
      resolve: (claim, _args, ctx) => currentClaimHolds(ctx.sluice.state, claim),
    }),
    queuePosition: t.int({
      nullable: true,
      description:
        "While waiting: the claim's place among the claims waiting for its pool (1: served next when a slot frees); null when granted or released.",
      resolve: (claim, _args, ctx) => claimQueuePosition(ctx.sluice.state, claim),
    }),
    retryAfterSeconds: t.float({
      nullable: true,
      description:
        'While waiting: how long a client that polls should wait before claiming again (a repeated claim is idempotent: it answers the claim as it stands and records nothing); null when granted or released. dequeueDecisions tells of the grant without polling.',
      resolve: (claim, _args, ctx) => suggestedRetrySeconds(claimQueuePosition(ctx.sluice.state, claim)),
    }),
  }),
});

const StepSlotPayloadType = builder.objectRef<{ claim: StepClaim }>('StepSlotPayload').implement({
  isTypeOf: (value) => typeof value === 'object' && value !== null && 'claim' in value,
  fields: (t) => ({ claim: t.expose('claim', { type: StepSlotClaimType }) }),
});

const StepSlotResult = builder.errorUnion('StepSlotResult', {
  types: [StepSlotPayloadType, InvalidInputError, RunNotFoundError, TransitionNotAllowedError],
});

async function slotCommand(ctx: GraphQLContext, command: Command & { runId: string; stepKey: string }) {
  await storeErrorsExplicit(() => ctx.sluice.execute(command, ctx.actor));
  const run = await ctx.sluice.run(command.runId);
  let claim = ctx.sluice.state.claims.get(claimKey(command.runId, command.stepKey));
  // A finished run released every claim at its end, and the live state has forgotten them.
  if (!claim && run && isFinished(run.status) && command.type === 'ReleaseStepSlot') {
    const step = run.steps.find((s) => s.key === command.stepKey);
    claim = {
      runId: run.id,
      stepKey: command.stepKey,
      pool: step?.pool ?? null,
      priority: run.priority + (step?.priority ?? 0),
      seq: -1,
      status: 'RELEASED',
      reasons: [],
    };
  }
  // The run hit a deadline as the claim came in: it ended instead (see decide's expiredNow).
  if (!claim && run && isFinished(run.status)) {
    return new TransitionNotAllowedError(
      `run ${run.id} ended as ${run.status} (${run.finishReason}): no slot to claim`,
    );
  }
  if (!claim) throw new Error(`claim ${command.stepKey} of run ${command.runId} missing after ${command.type}`);
  return { claim };
}

builder.mutationFields((t) => ({
  claimStepSlot: t.field({
    type: StepSlotResult,
    description:
      'Ask for a slot for one step of an admitted run; granted now, or queued in its pool until a slot frees. With pool, a step the run did not declare is added to it in that pool (refused at RUN granularity for a pool the run does not already use).',
    args: {
      runId: t.arg.id({ required: true }),
      stepKey: t.arg.string({ required: true }),
      pool: t.arg.string({
        description: "The step's pool: adds the step when the run does not declare it; must match when it does.",
      }),
    },
    resolve: (_root, { runId, stepKey, pool }, ctx) =>
      slotCommand(ctx, { type: 'ClaimStepSlot', runId: String(runId), stepKey, pool }),
  }),
  releaseStepSlot: t.field({
    type: StepSlotResult,
    args: { runId: t.arg.id({ required: true }), stepKey: t.arg.string({ required: true }) },
    resolve: (_root, { runId, stepKey }, ctx) =>
      slotCommand(ctx, { type: 'ReleaseStepSlot', runId: String(runId), stepKey }),
  }),
  freeStepSlots: t.field({
    type: RunResult,
    description:
      "Frees the slots of a run's step (or of all its steps) without ending the run; freed slots are granted at once.",
    args: { runId: t.arg.id({ required: true }), stepKey: t.arg.string() },
    resolve: (_root, { runId, stepKey }, ctx) =>
      runCommand(ctx, { type: 'FreeStepSlots', runId: String(runId), stepKey: stepKey ?? null }),
  }),
  heartbeat: t.field({
    type: RunResult,
    description: "Keeps the run's and its steps' leases alive.",
    args: { runId: t.arg.id({ required: true }) },
    resolve: (_root, { runId }, ctx) => runCommand(ctx, { type: 'Heartbeat', runId: String(runId) }),
  }),
}));

builder.objectField(RunType, 'stepClaims', (t) =>
  t.field({
    type: [StepSlotClaimType],
    description:
      "The run's step claims as they stand now, in step order: granted, waiting (with what holds them) or released.",
    resolve: (run, _args, ctx) =>
      run.steps.flatMap((step) => ctx.sluice.state.claims.get(claimKey(run.id, step.key)) ?? []),
  }),
);

const RunDeadlineType = builder.objectRef<Deadline>('RunDeadline').implement({
  description: 'When run monitoring will end an in-progress run, and how, unless something happens first.',
  fields: (t) => ({
    at: t.field({ type: 'DateTime', resolve: (d) => new Date(d.at).toISOString() }),
    status: t.expose('status', { type: RunStatusEnum }),
    reason: t.exposeString('reason'),
  }),
});

builder.objectField(RunType, 'deadline', (t) =>
  t.field({
    type: RunDeadlineType,
    nullable: true,
    description: 'The earliest start, cancel, max-runtime or lease deadline of an in-progress run; null otherwise.',
    resolve: (run, _args, ctx) =>
      isInProgress(run.status) ? (deadlinesOf(run, ctx.sluice.state.monitoring)[0] ?? null) : null,
  }),
);
