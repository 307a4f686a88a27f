/** The audit section: the state at any past moment, and what a limit change would do. */
import { GraphQLError } from 'graphql';
import { poolViews } from '../../projections/pools.js';
import type { RunRecord, State } from '../../projections/state.js';
import type { ConcurrencyConfig } from '../domain/config.js';
import { InvalidInputError } from '../domain/errors.js';
import { simulateChange } from '../domain/simulate.js';
import { builder } from './builder.js';
import { TagConcurrencyLimitInput } from './inputs.js';
import { ConfigResult, configCommand } from './mutation.js';
import { viewsOfState } from './pool-claims.js';
import { positionArg } from './query.js';
import { pastRuns, runWithHolds } from './run-views.js';
import { ConcurrencyConfigType, PoolGranularityEnum, PoolType, RunType } from './types.js';

const PoolLimitInput = builder.inputType('PoolLimitInput', {
  fields: (t) => ({
    pool: t.string({ required: true }),
    limit: t.int({ description: "null removes the pool's own limit." }),
  }),
});

const RootStepHoldInput = builder.inputType('RootStepHoldInput', {
  description: 'The OP-granularity run hold; absent fields stay as they are.',
  fields: (t) => ({
    enabled: t.boolean(),
    runBuffer: t.int(),
    startedRunAllotmentSeconds: t.int(),
  }),
});

export const ConfigChangeInput = builder.inputType('ConfigChangeInput', {
  fields: (t) => ({
    maxConcurrentRuns: t.int(),
    tagConcurrencyLimits: t.field({ type: [TagConcurrencyLimitInput] }),
    poolGranularity: t.field({ type: PoolGranularityEnum }),
    defaultPoolLimit: t.int(),
    poolLimits: t.field({ type: [PoolLimitInput] }),
    rootStepHold: t.field({ type: RootStepHoldInput }),
  }),
});

interface QueueSnapshot {
  position: bigint;
  at: string;
  state: State;
}

const QueueSnapshotType = builder.objectRef<QueueSnapshot>('QueueSnapshot').implement({
  fields: (t) => ({
    position: t.string({
      description: 'The log position this snapshot is as of (-1: before the first event).',
      resolve: (s) => s.position.toString(),
    }),
    at: t.expose('at', { type: 'DateTime' }),
    config: t.field({ type: ConcurrencyConfigType, resolve: (s) => s.state.config }),
    queue: t.field({
      type: [RunType],
      description: 'QUEUED runs in admission order, each with what was recorded as holding it then.',
      resolve: (s) =>
        pastRuns(
          s.state,
          [...s.state.queue.inOrder()].map((id) => s.state.runs.get(id) as RunRecord),
        ),
    }),
    inProgress: t.field({
      type: [RunType],
      resolve: (s) =>
        pastRuns(
          s.state,
          [...s.state.inProgress].map((id) => s.state.runs.get(id) as RunRecord).sort((a, b) => a.seq - b.seq),
        ),
    }),
    pools: t.field({ type: [PoolType], resolve: (s) => viewsOfState(poolViews(s.state), s.state) }),
  }),
});

interface SimulationView {
  config: ConcurrencyConfig;
  wouldAdmit: RunRecord[];
  stillQueued: RunRecord[];
}

const SimulationType = builder.objectRef<SimulationView>('Simulation').implement({
  fields: (t) => ({
    config: t.expose('config', { type: ConcurrencyConfigType, description: 'The config the change would give.' }),
    wouldAdmit: t.expose('wouldAdmit', {
      type: [RunType],
      description: 'Runs that would be admitted at once if the change were made now.',
    }),
    stillQueued: t.expose('stillQueued', {
      type: [RunType],
      description: 'Runs that would still wait, each with what would hold it.',
    }),
  }),
});

function badInput(message: string, field?: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', ...(field ? { field } : {}) } });
}

builder.queryFields((t) => ({
  snapshot: t.field({
    type: QueueSnapshotType,
    description: 'The state as it was after the event at position, or at the instant at.',
    args: { position: t.arg.string({ validate: positionArg }), at: t.arg({ type: 'DateTime' }) },
    resolve: async (_root, { position, at }, ctx) => {
      const sluice = ctx.sluice;
      if (position != null && at != null) throw badInput('give position or at, not both');
      await sluice.catchUp();
      let revision = sluice.state.revision;
      if (position != null) {
        revision = BigInt(position);
        if (revision > sluice.state.revision) {
          throw badInput(
            `position ${position} is not in the log yet (the last is ${sluice.state.revision})`,
            'position',
          );
        }
      } else if (at != null) {
        revision = await sluice.revisionAt(new Date(at));
      }
      const state = await sluice.stateAt(revision);
      return { position: revision, at: at ?? state.lastEventAt ?? sluice.now().toISOString(), state };
    },
  }),
  simulate: t.field({
    type: SimulationType,
    description: 'What a config change would do now; appends nothing.',
    args: { change: t.arg({ type: ConfigChangeInput, required: true }) },
    resolve: async (_root, { change }, ctx) => {
      await ctx.sluice.catchUp();
      try {
        const now = ctx.sluice.now().toISOString();
        const result = simulateChange(ctx.sluice.state, change, { now, newRunId: 'simulation' });
        return {
          config: result.config,
          wouldAdmit: result.wouldAdmit.map((run) => runWithHolds(run, [])),
          stillQueued: result.stillQueued.map(({ run, holds }) => runWithHolds(run, holds)),
        };
      } catch (error) {
        if (error instanceof InvalidInputError) throw badInput(error.message, error.field ?? undefined);
        throw error;
      }
    },
  }),
}));

builder.mutationFields((t) => ({
  changeConcurrencyConfig: t.field({
    type: ConfigResult,
    description:
      'Several limit edits as one: one append, one admission pass. simulate(change) answers what this would do.',
    args: { change: t.arg({ type: ConfigChangeInput, required: true }) },
    resolve: (_root, { change }, ctx) => configCommand(ctx, { type: 'ChangeConcurrencyConfig', change }),
  }),
}));
