/** Subscriptions: decisions streamed as they are made, resumable from a log position. */
import { GraphQLError } from 'graphql';
import type { Decision } from '../../projections/state.js';
import { SubscriberBehindError } from '../app/decision-streams.js';
import { builder } from './builder.js';
import { logPositionArg } from './query.js';
import { DecisionType } from './types.js';

builder.subscriptionType({
  fields: (t) => ({
    dequeueDecisions: t.field({
      type: DecisionType,
      description:
        'Every decision as it is made, with its reasons; with after, first every decision after that position, then live, none missed or repeated.',
      args: {
        runId: t.arg.id(),
        pool: t.arg.string(),
        // -1 (an empty log's position, as snapshot reports it): every decision from the start,
        // so a client that read the position before the first event misses none.
        after: t.arg.string({ validate: logPositionArg }),
      },
      subscribe: async (_root, { runId, pool, after }, ctx) => {
        await ctx.sluice.catchUp();
        return clientErrors(
          ctx.sluice.decisionStream({
            runId: runId == null ? null : String(runId),
            pool: pool ?? null,
            after: after == null ? null : BigInt(after),
          }),
        );
      },
      resolve: (decision) => decision,
    }),
  }),
});

/**
 * A subscriber that fell behind is told so, with where to resume, instead of a masked error.
 * A plain iterator wrapper, so that closing the subscription reaches the stream at once.
 */
function clientErrors(decisions: AsyncIterableIterator<Decision>): AsyncIterableIterator<Decision> {
  return {
    next: () =>
      decisions.next().catch((error: unknown) => {
        if (error instanceof SubscriberBehindError) {
          throw new GraphQLError(error.message, {
            extensions: { code: 'SUBSCRIBER_BEHIND', resumeAfter: error.resumeAfter?.toString() ?? null },
          });
        }
        throw error;
      }),
    return: () => decisions.return?.() ?? Promise.resolve({ value: undefined, done: true }),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
