/**
 * Errors a client must handle are part of the schema: the domain's refusals map to typed
 * union members here, at the boundary. Anything else is masked by Yoga, except a store
 * outage, which is explicit (code STORE_UNAVAILABLE) so clients know to retry.
 */
import { GraphQLError } from 'graphql';
import { HistoryBehindError } from '../app/history-feed.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from '../domain/errors.js';
import { NewerLogFormatError } from '../domain/events.js';
import { StoreUnavailableError } from '../eventstore/errors.js';
import { builder } from './builder.js';

export const ErrorInterface = builder.interfaceRef<Error>('Error').implement({
  fields: (t) => ({ message: t.exposeString('message') }),
});

builder.objectType(InvalidInputError, {
  name: 'ValidationError',
  description: 'Bad input: nothing was appended.',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    field: t.exposeString('field', {
      nullable: true,
      description: 'Path of the offending input field, e.g. input.tags.0.key',
    }),
  }),
});

builder.objectType(RunNotFoundError, {
  name: 'NotFoundError',
  interfaces: [ErrorInterface],
});

builder.objectType(TransitionNotAllowedError, {
  name: 'ConflictError',
  description: 'The command is not allowed in the current state (e.g. finishing a QUEUED run).',
  interfaces: [ErrorInterface],
});

/** Resolver wrapper: a store outage becomes an explicit error, not a masked one. */
export async function storeErrorsExplicit<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    // A log raised to a newer format is unusable to this server as a store outage is: refused.
    if (error instanceof StoreUnavailableError || error instanceof NewerLogFormatError) {
      throw new GraphQLError(`${error.message}; nothing was recorded, try again`, {
        extensions: storeUnavailableExtensions(error),
      });
    }
    throw error;
  }
}

/**
 * STORE_UNAVAILABLE: try again. Right after a start, when the history read model has not yet
 * reached the log, the extensions say so and how far it is (reason HISTORY_CATCHING_UP).
 */
export function storeUnavailableExtensions(error: Error): Record<string, unknown> {
  if (!(error instanceof HistoryBehindError)) return { code: 'STORE_UNAVAILABLE' };
  return {
    code: 'STORE_UNAVAILABLE',
    reason: error.code,
    historyPosition: error.historyPosition.toString(),
    logPosition: error.logPosition.toString(),
  };
}
