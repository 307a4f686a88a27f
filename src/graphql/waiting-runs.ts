/**
 * The runs behind a wait report's figures, page by page: the runs a limit held in a window (or
 * held alone), or a job's runs that waited in it, each with its wait inside the window, longest
 * first. What the dashboard's Insights page links each limit and each job to.
 */
import { GraphQLError } from 'graphql';
import { z } from 'zod';
import { cursorOf, parseCursor, type WaitingRunData } from '../history/waiting-runs.js';
import { builder } from './builder.js';
import { storeErrorsExplicit } from './errors.js';
import { windowOf } from './insight.js';
import { pageSize } from './query.js';
import { ConstraintKindEnum, connection } from './types.js';

const WaitingRunType = builder.objectRef<WaitingRunData>('WaitingRun').implement({
  description: 'A run behind a figure of a wait report, with its wait inside the window.',
  fields: (t) => ({
    runId: t.exposeID('runId'),
    jobName: t.exposeString('jobName'),
    waitSeconds: t.float({
      description:
        "Seconds of the run's waiting inside the window counted in the figure: held by the limit (alone, when asked), or in all for a job.",
      resolve: (r) => r.waitMs / 1000,
    }),
  }),
});

const WaitingRunConnectionType = connection('WaitingRun', WaitingRunType, 'runs');

const WaitLimitInput = builder.inputType('WaitLimitInput', {
  description: 'A limit as a wait report names it (the kind, key, value, pool and perUniqueValue of a WaitShare).',
  fields: (t) => ({
    kind: t.field({ type: ConstraintKindEnum, required: true }),
    key: t.string(),
    value: t.string(),
    pool: t.string(),
    perUniqueValue: t.boolean({ defaultValue: false }),
  }),
});

const cursorArg = z
  .string()
  .max(1100)
  .refine((c) => parseCursor(c) !== null, 'must be a cursor returned by this API');

function bad(message: string, field: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', field } });
}

builder.queryField('waitingRuns', (t) =>
  t.field({
    type: WaitingRunConnectionType,
    description:
      "The runs behind a figure of waitReport(from, to), longest wait inside the window first (equal waits by run id): with `limit`, the runs it held (with `alone`, only while it alone held them: soleSeconds); with `jobName`, the job's runs that waited. Give one of the two. Cursors name a place in this order.",
    args: {
      from: t.arg({ type: 'DateTime', required: true }),
      to: t.arg({ type: 'DateTime', required: true }),
      limit: t.arg({ type: WaitLimitInput }),
      alone: t.arg.boolean({ defaultValue: false }),
      jobName: t.arg.string(),
      first: t.arg.int({ validate: pageSize }),
      after: t.arg.string({ validate: cursorArg }),
    },
    resolve: (_root, { from, to, limit, alone, jobName, first, after }, ctx) =>
      storeErrorsExplicit(async () => {
        const { fromMs, toMs } = windowOf(from, to);
        if ((limit == null) === (jobName == null)) throw bad('give either limit or jobName', 'limit');
        if (alone && limit == null) throw bad('alone is about a limit: give limit with it', 'alone');
        const of =
          limit != null
            ? {
                limit: {
                  kind: limit.kind,
                  key: limit.key ?? null,
                  value: limit.value ?? null,
                  pool: limit.pool ?? null,
                  perUniqueValue: limit.perUniqueValue ?? false,
                },
                alone: alone ?? false,
              }
            : { jobName: jobName as string };
        const size = first ?? 100;
        const history = await ctx.sluice.readHistory();
        const page = history.waitingRuns(
          fromMs,
          toMs,
          of,
          { first: size, after: after == null ? null : parseCursor(after) },
          ctx.sluice.now().getTime(),
        );
        const edges = page.runs.map((node) => ({ cursor: cursorOf(node), node }));
        return {
          edges,
          pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null },
          totalCount: () => page.totalCount,
        };
      }),
  }),
);
