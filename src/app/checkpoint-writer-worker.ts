/**
 * The worker thread of CheckpointWriter: it holds a copy of the live state, folds the durable
 * events the server hands it, and serializes and saves a checkpoint when asked, so the server's
 * own thread never stops for the serialization of a large state.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { evolve } from '../../projections/evolve.js';
import { deserializeState, STATE_FORMAT, serializeState } from '../../projections/serialize.js';
import type { State } from '../../projections/state.js';
import type { LoggedEvent } from '../domain/events.js';
import { openCheckpointStore } from '../eventstore/checkpoints.js';
import type { ToWorker } from './checkpoint-writer.js';

const { path, kept } = workerData as { path: string; kept: number };
const port = parentPort;
if (!port) throw new Error('checkpoint-writer-worker runs only as a worker thread');
const checkpoints = openCheckpointStore(path, (message) => port.postMessage({ type: 'warning', message }));
let state: State | null = null;

port.on('message', (message: ToWorker) => {
  if (message.type === 'start') {
    state = deserializeState(message.text);
    return;
  }
  if (message.type === 'events') {
    for (const event of message.events as LoggedEvent[]) evolve(state as State, event);
    return;
  }
  if (message.type === 'write') {
    try {
      const at = (state as State).revision;
      if (at !== message.revision) throw new Error(`the copy of the state is at ${at}, not ${message.revision}`);
      checkpoints.save({
        revision: message.revision,
        eventHash: message.eventHash,
        format: STATE_FORMAT,
        state: serializeState(state as State),
      });
      checkpoints.keepLatest(kept);
      port.postMessage({ type: 'written', revision: message.revision });
    } catch (error) {
      port.postMessage({ type: 'failed', revision: message.revision, message: (error as Error).message });
    }
    return;
  }
  if (message.type === 'close') {
    checkpoints.close();
    port.postMessage({ type: 'closed' });
    port.close();
  }
});
