/**
 * `runStatusChanges(runId)`: a run's status now, then each change as it is recorded, ending
 * once the run has finished. Decisions say why a run waits; this says what became of it, so a
 * worker (`sluice run`) learns at once that its run was terminated or timed out elsewhere.
 */
import { GraphQLError } from 'graphql';
import type { RunRecord } from '../../projections/state.js';
import { AsyncQueue } from '../app/async-queue.js';
import type { Sluice } from '../app/sluice.js';
import { validateRunId } from '../domain/commands.js';
import { knownRun } from '../domain/decide.js';
import { DomainError } from '../domain/errors.js';
import type { LoggedEvent } from '../domain/events.js';
import { isFinished, type RunStatus } from '../domain/run.js';
import { builder } from './builder.js';
import { RunStatusEnum } from './types.js';

export interface RunStatusChange {
  runId: string;
  status: RunStatus;
  /** When the run took this status. */
  at: string;
  /** Why Sluice ended the run (a timeout, a forced cancel), when it did. */
  reason: string | null;
  /** Log position of the event that recorded it (for the first answer: the log's position then). */
  position: bigint;
}

function statusOf(event: LoggedEvent): { status: RunStatus; reason: string | null } | null {
  switch (event.type) {
    case 'RunAdmitted':
      return { status: 'STARTING', reason: null };
    case 'RunStarted':
      return { status: 'STARTED', reason: null };
    case 'RunCancellationRequested':
      return { status: 'CANCELING', reason: null };
    case 'RunFinished':
      return { status: event.data.status, reason: event.data.reason };
    default:
      return null;
  }
}

function currentStatus(run: RunRecord, position: bigint): RunStatusChange {
  const since = run.finishedAt ?? run.cancelRequestedAt ?? run.startedAt ?? run.admittedAt ?? run.enqueuedAt;
  return { runId: run.id, status: run.status, at: since, reason: run.finishReason, position };
}

/**
 * Ends the stream after the change that finished the run. A plain iterator rather than an async
 * generator, so that a client closing the subscription reaches the queue at once even while it waits.
 */
function untilFinished(changes: AsyncIterableIterator<RunStatusChange>): AsyncIterableIterator<RunStatusChange> {
  let finished = false;
  const end = () => changes.return?.() ?? Promise.resolve({ value: undefined, done: true as const });
  return {
    async next() {
      if (finished) {
        await end();
        return { value: undefined, done: true };
      }
      const result = await changes.next();
      if (!result.done && isFinished(result.value.status)) finished = true;
      return result;
    },
    return: end,
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

/**
 * The run's status now and every later change. The run is looked up first (finished runs come
 * from the history); then its current status and the listener are taken in one synchronous step.
 */
export async function runStatusStream(sluice: Sluice, runId: string): Promise<AsyncIterableIterator<RunStatusChange>> {
  const run = knownRun(sluice.state, runId, {}) ?? (await sluice.run(runId));
  if (!run) throw new GraphQLError(`run ${runId} does not exist`, { extensions: { code: 'NOT_FOUND' } });
  let unsubscribe = () => {};
  const queue = new AsyncQueue<RunStatusChange>(1_000, () => unsubscribe());
  queue.push(currentStatus(run, sluice.state.revision));
  if (!isFinished(run.status)) {
    unsubscribe = sluice.onEvent((event) => {
      if (!('runId' in event.data) || event.data.runId !== runId) return;
      const change = statusOf(event);
      if (change) queue.push({ runId, ...change, at: event.at, position: event.revision });
    });
  }
  return untilFinished(queue);
}

const RunStatusChangeType = builder.objectRef<RunStatusChange>('RunStatusChange').implement({
  description: 'A run took a status.',
  fields: (t) => ({
    runId: t.exposeID('runId'),
    status: t.expose('status', { type: RunStatusEnum }),
    at: t.expose('at', { type: 'DateTime' }),
    reason: t.exposeString('reason', {
      nullable: true,
      description: 'Why Sluice ended the run (a timeout, a forced cancel), when it did.',
    }),
    position: t.string({ resolve: (change) => change.position.toString() }),
  }),
});

builder.subscriptionFields((t) => ({
  runStatusChanges: t.field({
    type: RunStatusChangeType,
    description:
      "The run's status now, then each change as it is recorded (admitted, started, canceling, finished); the stream ends once the run has finished.",
    args: { runId: t.arg.id({ required: true }) },
    subscribe: async (_root, { runId }, ctx) => {
      let id: string;
      try {
        id = validateRunId(String(runId));
      } catch (error) {
        if (error instanceof DomainError) throw new GraphQLError(error.message, { extensions: { code: 'BAD_INPUT' } });
        throw error;
      }
      await ctx.sluice.catchUp();
      return runStatusStream(ctx.sluice, id);
    },
    resolve: (change) => change,
  }),
}));
