/** The insight section: where waiting time went in a window, read from the history's wait ledger. */
import { GraphQLError } from 'graphql';
import type { WaitReportData, WaitShareData } from '../history/wait-report.js';
import { builder } from './builder.js';
import { storeErrorsExplicit } from './errors.js';
import { ConstraintKindEnum } from './types.js';

export const WaitShareType = builder.objectRef<WaitShareData>('WaitShare').implement({
  description: "One limit's share of the waiting in a window: a limit, without the counts of any one moment.",
  fields: (t) => ({
    kind: t.expose('kind', { type: ConstraintKindEnum }),
    key: t.exposeString('key', { nullable: true }),
    value: t.exposeString('value', { nullable: true }),
    pool: t.exposeString('pool', { nullable: true }),
    heldSeconds: t.exposeFloat('heldSeconds', {
      description: 'Run-seconds of waiting in the window during which this limit was among those holding the run.',
    }),
    soleSeconds: t.exposeFloat('soleSeconds', {
      description:
        'Run-seconds during which this limit alone held the run: what raising it alone would have freed at once.',
    }),
    runs: t.exposeInt('runs', { description: 'Runs it held at least once in the window.' }),
  }),
});

const WaitReportType = builder.objectRef<WaitReportData>('WaitReport').implement({
  description: 'Waiting in a window of time, from the record.',
  fields: (t) => ({
    from: t.expose('from', { type: 'DateTime' }),
    to: t.expose('to', { type: 'DateTime' }),
    runs: t.exposeInt('runs', { description: 'Runs that waited at some moment of the window.' }),
    waitSeconds: t.exposeFloat('waitSeconds', { description: 'Run-seconds spent queued inside the window.' }),
    byLimit: t.field({
      type: [WaitShareType],
      description: 'Largest first.',
      resolve: (r) => r.byLimit,
    }),
  }),
});

function badWindow(message: string, field: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', field } });
}

/** The window's instants in milliseconds; a window that ends before it starts is refused. */
export function windowOf(from: string, to: string): { fromMs: number; toMs: number } {
  const fromMs = Date.parse(from);
  const toMs = Date.parse(to);
  if (!Number.isFinite(fromMs)) throw badWindow('from must be an ISO-8601 instant', 'from');
  if (!Number.isFinite(toMs)) throw badWindow('to must be an ISO-8601 instant', 'to');
  if (toMs <= fromMs) throw badWindow('to must come after from', 'to');
  return { fromMs, toMs };
}

builder.queryField('waitReport', (t) =>
  t.field({
    type: WaitReportType,
    description: "Where the waiting went between two instants: each limit's share, from the record.",
    args: {
      from: t.arg({ type: 'DateTime', required: true }),
      to: t.arg({ type: 'DateTime', required: true }),
    },
    resolve: (_root, { from, to }, ctx) =>
      storeErrorsExplicit(async () => {
        const { fromMs, toMs } = windowOf(from, to);
        const history = await ctx.sluice.readHistory();
        return history.waitReport(fromMs, toMs, ctx.sluice.now().getTime());
      }),
  }),
);
