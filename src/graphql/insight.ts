/**
 * The insight section: where waiting time went in a window (the history's wait ledger), and what
 * it would have been under other limits (a replay of the window through the decider).
 */
import { GraphQLError } from 'graphql';
import { ReplayTooLargeError, type WhatIf, whatIf } from '../app/what-if.js';
import { validateConfigChange } from '../domain/commands.js';
import { InvalidInputError } from '../domain/errors.js';
import { type JobWaitData, shareKey } from '../history/wait-by-job.js';
import type { WaitReportData, WaitShareData } from '../history/wait-report.js';
import { ConfigChangeInput } from './audit.js';
import { builder } from './builder.js';
import { storeErrorsExplicit } from './errors.js';
import { ConstraintKindEnum } from './types.js';

/** A share as a wait report lists it: with its window, so that the runs behind it can be found. */
type ListedShare = WaitShareData & { window?: { fromMs: number; toMs: number } };

/** The runs each limit held longest, read once per request and window however many shares ask. */
const heldLongestByRequest = new WeakMap<object, Map<string, Promise<Map<string, string[]>>>>();

export const WaitShareType = builder.objectRef<ListedShare>('WaitShare').implement({
  description: "One limit's share of the waiting in a window: a limit, without the counts of any one moment.",
  fields: (t) => ({
    kind: t.expose('kind', { type: ConstraintKindEnum }),
    key: t.exposeString('key', { nullable: true }),
    value: t.exposeString('value', { nullable: true }),
    pool: t.exposeString('pool', { nullable: true }),
    perUniqueValue: t.exposeBoolean('perUniqueValue', {
      description: 'For TAG_LIMIT: a limit on each value of the key, told apart from a limit on that value alone.',
    }),
    heldSeconds: t.exposeFloat('heldSeconds', {
      description: 'Run-seconds of waiting in the window during which this limit was among those holding the run.',
    }),
    soleSeconds: t.exposeFloat('soleSeconds', {
      description:
        'Run-seconds during which this limit alone held the run: what raising it alone would have freed at once.',
    }),
    runs: t.exposeInt('runs', { description: 'Runs it held at least once in the window.' }),
    longestRunIds: t.stringList({
      nullable: true,
      description:
        "In a wait report, the ids of the (at most 5) runs this limit held longest in the window, longest first; null in a replay's shares (replayed runs are not runs of the record).",
      resolve: (share, _args, ctx) => {
        const window = share.window;
        if (!window) return null;
        return storeErrorsExplicit(async () => {
          let byWindow = heldLongestByRequest.get(ctx);
          if (!byWindow) {
            byWindow = new Map();
            heldLongestByRequest.set(ctx, byWindow);
          }
          const key = `${window.fromMs}|${window.toMs}`;
          let longest = byWindow.get(key);
          if (!longest) {
            longest = ctx.sluice
              .readHistory()
              .then((history) => history.runsHeldLongest(window.fromMs, window.toMs, ctx.sluice.now().getTime()));
            byWindow.set(key, longest);
          }
          return (await longest).get(shareKey(share)) ?? [];
        });
      },
    }),
  }),
});

const JobWaitType = builder.objectRef<JobWaitData>('JobWait').implement({
  description: "One job's waiting in a window: its runs' waits there, each clipped to the window.",
  fields: (t) => ({
    jobName: t.exposeString('jobName'),
    runs: t.exposeInt('runs', { description: "The job's runs that waited at some moment of the window." }),
    waitSeconds: t.exposeFloat('waitSeconds', {
      description: "Run-seconds the job's runs spent queued inside the window.",
    }),
    p50Seconds: t.exposeFloat('p50Seconds', {
      description: "Median of the job's runs' waits inside the window (nearest rank).",
    }),
    p95Seconds: t.exposeFloat('p95Seconds', {
      description: "95th percentile of the job's runs' waits inside the window (nearest rank).",
    }),
    longestRunIds: t.exposeStringList('longestRunIds', {
      description: 'The ids of the (at most 5) runs of the job that waited longest in the window, longest first.',
    }),
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
      resolve: (r) => {
        const window = { fromMs: Date.parse(r.from), toMs: Date.parse(r.to) };
        return r.byLimit.map((share) => ({ ...share, window }));
      },
    }),
    byJob: t.field({
      type: [JobWaitType],
      description:
        "Per job, most waiting first, with the p50 and p95 of its runs' waits. Reads one row per run that waited in the window.",
      resolve: (r, _args, ctx) =>
        storeErrorsExplicit(async () => {
          const history = await ctx.sluice.readHistory();
          return history.waitByJob(Date.parse(r.from), Date.parse(r.to), ctx.sluice.now().getTime());
        }),
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

const ReplayWhatIfType = builder.objectRef<WhatIf>('ReplayWhatIf').implement({
  description: "The window's recorded arrivals and run lengths replayed under other limits.",
  fields: (t) => ({
    actualWaitSeconds: t.float({
      description: 'Run-seconds queued as it really happened.',
      resolve: (w) => w.actual.waitSeconds,
    }),
    replayedWaitSeconds: t.float({
      description: 'Run-seconds queued had the change been in force over the window.',
      resolve: (w) => w.replayed.waitSeconds,
    }),
    runs: t.int({
      description: 'Runs that waited at some moment of the window in the replay.',
      resolve: (w) => w.replayed.runs,
    }),
    actualRuns: t.int({
      description: 'Runs that waited at some moment of the window as it really happened.',
      resolve: (w) => w.actual.runs,
    }),
    byLimit: t.field({
      type: [WaitShareType],
      description: 'How the replayed waiting would have been shared among limits.',
      resolve: (w) => w.replayed.byLimit,
    }),
    actualByLimit: t.field({
      type: [WaitShareType],
      description: 'How the waiting was shared among limits as it really happened (waitReport of the window).',
      resolve: (w) => w.actual.byLimit,
    }),
    assumptions: t.stringList({
      description: 'What the replay assumes (run lengths as recorded, arrivals as recorded, ...), in words.',
      resolve: (w) => [...w.assumptions],
    }),
  }),
});

builder.queryField('replayWhatIf', (t) =>
  t.field({
    type: ReplayWhatIfType,
    description:
      'What waiting would have been between two instants had `change` been in force (nothing is appended). The window ends at now at the latest.',
    args: {
      from: t.arg({ type: 'DateTime', required: true }),
      to: t.arg({ type: 'DateTime', required: true }),
      change: t.arg({ type: ConfigChangeInput, required: true }),
    },
    resolve: (_root, { from, to, change }, ctx) =>
      storeErrorsExplicit(async () => {
        const { fromMs, toMs } = windowOf(from, to);
        try {
          validateConfigChange(change);
          return await whatIf(ctx.sluice, fromMs, toMs, change);
        } catch (error) {
          if (error instanceof InvalidInputError) throw badWindow(error.message, error.field ?? 'change');
          if (error instanceof ReplayTooLargeError) throw badWindow(error.message, 'from');
          throw error;
        }
      }),
  }),
);
