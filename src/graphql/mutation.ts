/** Mutations: each runs one domain command and answers with the contract's result union. */
import { poolView } from '../../projections/pools.js';
import type { RunRecord } from '../../projections/state.js';
import type { Command } from '../domain/commands.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from '../domain/errors.js';
import { builder, type GraphQLContext } from './builder.js';
import { storeErrorsExplicit } from './errors.js';
import { EnqueueRunInput, TagConcurrencyLimitInput } from './inputs.js';
import { ConfigPayloadType, PoolGranularityEnum, PoolPayloadType, RunPayloadType, RunStatusEnum } from './types.js';

export const RunResult = builder.errorUnion('RunResult', {
  types: [RunPayloadType, InvalidInputError, RunNotFoundError, TransitionNotAllowedError],
});
const PoolResult = builder.errorUnion('PoolResult', {
  types: [PoolPayloadType, InvalidInputError, RunNotFoundError, TransitionNotAllowedError],
});
export const ConfigResult = builder.errorUnion('ConfigResult', {
  types: [ConfigPayloadType, InvalidInputError, TransitionNotAllowedError],
});

async function execute(ctx: GraphQLContext, command: Command) {
  return storeErrorsExplicit(() => ctx.sluice.execute(command, ctx.actor));
}

export async function runCommand(ctx: GraphQLContext, command: Command): Promise<{ run: RunRecord }> {
  const outcome = await execute(ctx, command);
  const run = outcome.runId === null ? null : await ctx.sluice.run(outcome.runId);
  if (!run) throw new Error(`run ${outcome.runId} missing after ${command.type}`);
  return { run };
}

async function poolCommand(ctx: GraphQLContext, command: Command & { pool: string }) {
  await execute(ctx, command);
  return { pool: poolView(ctx.sluice.state, command.pool) };
}

export async function configCommand(ctx: GraphQLContext, command: Command) {
  await execute(ctx, command);
  return { config: ctx.sluice.state.config };
}

builder.mutationType({
  fields: (t) => ({
    enqueueRun: t.field({
      type: RunResult,
      args: { input: t.arg({ type: EnqueueRunInput, required: true }) },
      resolve: (_root, { input }, ctx) => runCommand(ctx, { type: 'EnqueueRun', input }),
    }),
    terminateRun: t.field({
      type: RunResult,
      description:
        'QUEUED: straight to CANCELED. STARTING or STARTED: to CANCELING, still holding its capacity, until markRunFinished(CANCELED) or the cancel timeout; force: CANCELED at once, capacity freed.',
      args: { runId: t.arg.id({ required: true }), force: t.arg.boolean() },
      resolve: (_root, { runId, force }, ctx) => runCommand(ctx, { type: 'TerminateRun', runId: String(runId), force }),
    }),
    markRunStarted: t.field({
      type: RunResult,
      args: { runId: t.arg.id({ required: true }) },
      resolve: (_root, { runId }, ctx) => runCommand(ctx, { type: 'MarkRunStarted', runId: String(runId) }),
    }),
    markRunFinished: t.field({
      type: RunResult,
      description: 'status: SUCCESS, FAILURE or CANCELED.',
      args: { runId: t.arg.id({ required: true }), status: t.arg({ type: RunStatusEnum, required: true }) },
      resolve: (_root, { runId, status }, ctx) =>
        runCommand(ctx, { type: 'MarkRunFinished', runId: String(runId), status }),
    }),
    setPoolLimit: t.field({
      type: PoolResult,
      args: { pool: t.arg.string({ required: true }), limit: t.arg.int({ required: true }) },
      resolve: (_root, { pool, limit }, ctx) => poolCommand(ctx, { type: 'SetPoolLimit', pool, limit }),
    }),
    deletePoolLimit: t.field({
      type: PoolResult,
      args: { pool: t.arg.string({ required: true }) },
      resolve: (_root, { pool }, ctx) => poolCommand(ctx, { type: 'DeletePoolLimit', pool }),
    }),
    setMaxConcurrentRuns: t.field({
      type: ConfigResult,
      args: { limit: t.arg.int({ required: true }) },
      resolve: (_root, { limit }, ctx) => configCommand(ctx, { type: 'SetMaxConcurrentRuns', limit }),
    }),
    setTagConcurrencyLimits: t.field({
      type: ConfigResult,
      description: 'Replaces the whole list.',
      args: { limits: t.arg({ type: [TagConcurrencyLimitInput], required: true }) },
      resolve: (_root, { limits }, ctx) => configCommand(ctx, { type: 'SetTagConcurrencyLimits', limits }),
    }),
    setPoolGranularity: t.field({
      type: ConfigResult,
      args: { granularity: t.arg({ type: PoolGranularityEnum, required: true }) },
      resolve: (_root, { granularity }, ctx) => configCommand(ctx, { type: 'SetPoolGranularity', granularity }),
    }),
    setDefaultPoolLimit: t.field({
      type: ConfigResult,
      description: 'null clears it.',
      args: { limit: t.arg.int() },
      resolve: (_root, { limit }, ctx) => configCommand(ctx, { type: 'SetDefaultPoolLimit', limit: limit ?? null }),
    }),
  }),
});
