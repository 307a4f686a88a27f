/** Queries: reads of the projections, after catching up with the log. */
import { z } from 'zod';
import { poolView, poolViews } from '../../projections/pools.js';
import type { RunRecord } from '../../projections/state.js';
import { knownRun } from '../domain/decide.js';
import { totalName } from '../history/history-store.js';
import { builder } from './builder.js';
import {
  ConcurrencyConfigType,
  DecisionConnectionType,
  PoolType,
  RunConnectionType,
  RunStatusEnum,
  RunType,
} from './types.js';

export const positionArg = z.string().regex(/^\d{1,19}$/, 'must be a position or cursor returned by this API');
/** Like positionArg, plus -1 (before the first event), as `snapshot` reports an empty log's position. */
export const logPositionArg = z.string().regex(/^(-1|\d{1,19})$/, 'must be -1 or a position returned by this API');
export const pageSize = z.number().int().min(0, 'must be from 0 to 1000').max(1000, 'must be from 0 to 1000');

function page<T>(
  items: Iterable<T>,
  first: number,
  cursorOf: (item: T) => string,
  totalCount: () => number | Promise<number>,
) {
  const edges: Array<{ cursor: string; node: T }> = [];
  let hasNextPage = false;
  for (const node of items) {
    if (edges.length === first) {
      hasNextPage = true;
      break;
    }
    edges.push({ cursor: cursorOf(node), node });
  }
  return { edges, pageInfo: { hasNextPage, endCursor: edges.at(-1)?.cursor ?? null }, totalCount };
}

builder.queryType({
  fields: (t) => ({
    run: t.field({
      type: RunType,
      nullable: true,
      args: { id: t.arg.id({ required: true }) },
      resolve: (_root, { id }, ctx) => ctx.sluice.run(String(id)),
    }),
    runs: t.field({
      type: RunConnectionType,
      description: 'Runs in enqueue order. The cursor is stable: new runs only ever come after it.',
      args: {
        statuses: t.arg({ type: [RunStatusEnum] }),
        first: t.arg.int({ validate: pageSize }),
        after: t.arg.string({ validate: positionArg }),
      },
      resolve: async (_root, { statuses, first, after }, ctx) => {
        const history = await ctx.sluice.readHistory();
        const size = first ?? 100;
        const past = history.runs(statuses ?? null, after == null ? -1 : Number(after), size + 1);
        // Live runs answer from the live state, which also knows their claims.
        const runs = past.map((run) => knownRun(ctx.sluice.state, run.id, {}) ?? run);
        // Totals kept by status: a few rows read, whatever the history holds.
        const total = () =>
          statuses == null
            ? history.total(totalName.runs(null))
            : [...new Set(statuses)].reduce((sum, status) => sum + history.total(totalName.runs(status)), 0);
        return page(runs, size, (run) => String(run.seq), total);
      },
    }),
    queue: t.field({
      type: [RunType],
      description: 'QUEUED runs in the order in which they are considered for admission.',
      resolve: async (_root, _args, ctx) => {
        await ctx.sluice.catchUp();
        const state = ctx.sluice.state;
        return [...state.queue.inOrder()].map((id) => state.runs.get(id) as RunRecord);
      },
    }),
    pools: t.field({
      type: [PoolType],
      resolve: async (_root, _args, ctx) => {
        await ctx.sluice.catchUp();
        return poolViews(ctx.sluice.state);
      },
    }),
    pool: t.field({
      type: PoolType,
      nullable: true,
      description: 'A pool named by a limit or by a run; null for a name Sluice has never seen.',
      args: { name: t.arg.string({ required: true }) },
      resolve: async (_root, { name }, ctx) => {
        await ctx.sluice.catchUp();
        const state = ctx.sluice.state;
        return state.knownPools.has(name) ? poolView(state, name) : null;
      },
    }),
    concurrencyConfig: t.field({
      type: ConcurrencyConfigType,
      resolve: async (_root, _args, ctx) => {
        await ctx.sluice.catchUp();
        return ctx.sluice.state.config;
      },
    }),
    decisions: t.field({
      type: DecisionConnectionType,
      description: 'Decisions in log order; cursors are log positions, so pages stay stable as new ones arrive.',
      args: {
        runId: t.arg.id(),
        pool: t.arg.string({ description: "Decisions about the pool: its steps' slots, its limit, runs using it." }),
        first: t.arg.int({ validate: pageSize }),
        after: t.arg.string({ validate: positionArg }),
      },
      resolve: async (_root, { runId, pool, first, after }, ctx) => {
        const history = await ctx.sluice.readHistory();
        const size = first ?? 100;
        const decisions = history.decisions({
          runId: runId == null ? null : String(runId),
          pool,
          after: after == null ? null : BigInt(after),
          limit: size + 1,
        });
        // A run's decisions cost what its own record holds (some are derived from limit states);
        // all decisions, or a pool's, are totals kept as the history is written.
        const total = () =>
          runId == null
            ? history.total(totalName.decisions(pool ?? null))
            : history.decisions({ runId: String(runId), pool, limit: Number.MAX_SAFE_INTEGER }).length;
        return page(decisions, size, (d) => d.position.toString(), total);
      },
    }),
  }),
});
