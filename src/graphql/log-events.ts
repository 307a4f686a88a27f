/** The whole log as a subscription: what a dashboard follows to stay true. */
import { GraphQLError } from 'graphql';
import { logStream } from '../app/log-stream.js';
import type { LoggedEvent } from '../domain/events.js';
import { builder } from './builder.js';
import { logPositionArg } from './query.js';

builder.scalarType('JSON', {
  description: 'Any JSON value.',
  serialize: (value) => value,
  parseValue: () => {
    throw new GraphQLError('JSON is an output type here', { extensions: { code: 'BAD_USER_INPUT' } });
  },
});

const LogEventType = builder.objectRef<LoggedEvent>('LogEvent').implement({
  description: 'One event of the log, as recorded.',
  fields: (t) => ({
    position: t.string({
      description: 'Opaque, strictly increasing log position, the same numbering as Decision.position.',
      resolve: (event) => event.revision.toString(),
    }),
    at: t.expose('at', { type: 'DateTime' }),
    actor: t.exposeString('actor', { description: 'Who caused it: an API client, the config file, the run monitor.' }),
    type: t.exposeString('type', { description: 'The event type, a fact in the past tense, e.g. RunEnqueued.' }),
    data: t.field({
      type: 'JSON',
      description: "The event's data, as validated when it was read back.",
      resolve: (event) => event.data,
    }),
  }),
});

builder.subscriptionFields((t) => ({
  events: t.field({
    type: LogEventType,
    description:
      'Every event the log records, in order; with after (-1: from the start), first every event after that position, read a page at a time, then live, none missed or repeated.',
    args: { after: t.arg.string({ validate: logPositionArg }) },
    subscribe: async (_root, { after }, ctx) => {
      await ctx.sluice.catchUp();
      const position = after == null ? null : BigInt(after);
      const last = ctx.sluice.state.revision;
      // Resuming after a position this log never reached (another log, a restored backup) would
      // silently skip what comes next: say so, and the client starts again from what it has.
      if (position !== null && position > last) {
        throw new GraphQLError(`after: position ${position} is not in the log (the last is ${last})`, {
          extensions: { code: 'BAD_USER_INPUT' },
        });
      }
      return logStream(ctx.sluice, { after: position });
    },
    resolve: (event) => event,
  }),
}));
