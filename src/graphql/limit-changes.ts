/** The parity section's `limitChanges`: who changed a limit, when, from what to what. */
import { limitChanges } from '../app/limit-changes.js';
import { totalName } from '../history/history-store.js';
import { builder } from './builder.js';
import { pageSize, positionArg } from './query.js';
import { connection } from './types.js';

interface LimitChangeView {
  position: bigint;
  at: string;
  actor: string;
  description: string;
}

const LimitChangeType = builder.objectRef<LimitChangeView>('LimitChange').implement({
  description: 'One limit edit, as recorded.',
  fields: (t) => ({
    position: t.string({ resolve: (c) => c.position.toString() }),
    at: t.expose('at', { type: 'DateTime' }),
    actor: t.exposeString('actor', { description: "Who made it: a token's name, or the config file." }),
    description: t.exposeString('description', {
      description: 'What changed, in words, with the value before and after.',
    }),
  }),
});

const LimitChangeConnectionType = connection('LimitChange', LimitChangeType, 'limit changes');

builder.queryField('limitChanges', (t) =>
  t.field({
    type: LimitChangeConnectionType,
    description:
      'Every limit edit in log order (run monitoring settings included); with pool, only those that set or remove its own limit. Cursors are log positions.',
    args: {
      first: t.arg.int({ validate: pageSize }),
      after: t.arg.string({ validate: positionArg }),
      pool: t.arg.string(),
    },
    resolve: async (_root, { first, after, pool }, ctx) => {
      const page = await limitChanges(ctx.sluice, {
        first: first ?? 100,
        after: after == null ? null : BigInt(after),
        pool: pool ?? null,
      });
      const edges = page.changes.map((node) => ({ cursor: node.position.toString(), node }));
      return {
        edges,
        pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null },
        totalCount: async () => (await ctx.sluice.readHistory()).total(totalName.limitChanges(pool ?? null)),
      };
    },
  }),
);
