/**
 * The state every projection folds into: what the decider needs (config, queue, counts)
 * and what readers ask for (run details, waits, decisions). Rebuilt from the log at start.
 */
import { type ConcurrencyConfig, defaultConcurrencyConfig } from '../src/domain/config.js';
import type { Constraint } from '../src/domain/constraints.js';
import type { RunStatus, Step, Tag } from '../src/domain/run.js';
import { RunQueue } from './run-queue.js';

export type DecisionKind = 'ADMITTED' | 'BLOCKED' | 'SLOT_GRANTED' | 'SLOT_PENDING';

export interface Decision {
  /** Revision of the event that records it. */
  position: bigint;
  at: string;
  kind: DecisionKind;
  runId: string;
  stepKey: string | null;
  pool: string | null;
  reasons: Constraint[];
  message: string;
}

export interface WaitInterval {
  from: string;
  /** null while the run is still waiting. */
  to: string | null;
  reasons: Constraint[];
}

export interface RunRecord {
  id: string;
  jobName: string;
  status: RunStatus;
  tags: Tag[];
  steps: Step[];
  pools: string[];
  priority: number;
  /** Enqueue order, the tie-break after priority. */
  seq: number;
  maxConcurrentSteps: number | null;
  leaseSeconds: number | null;
  enqueuedAt: string;
  admittedAt: string | null;
  startedAt: string | null;
  cancelRequestedAt: string | null;
  finishedAt: string | null;
  /** Why Sluice ended the run (timeout, forced cancel), if it did. */
  finishReason: string | null;
  /** The limits recorded as holding the run by its last BLOCKED decision; empty unless QUEUED. */
  blockedBy: Constraint[];
  waits: WaitInterval[];
  decisions: Decision[];
}

export interface State {
  /** Revision of the last event folded in; -1n for an empty log. */
  revision: bigint;
  lastEventAt: string | null;
  config: ConcurrencyConfig;
  runs: Map<string, RunRecord>;
  /** Every run id in enqueue order. */
  runIds: string[];
  queue: RunQueue;
  /** In-progress runs per count key (see domain/constraints). */
  counts: Map<string, number>;
  /** QUEUED runs per count key other than ALL_RUNS: which runs a limit on that key can hold. */
  queuedByKey: Map<string, Set<string>>;
  /** Every decision, in log order. */
  decisions: Decision[];
  /** Every pool named by a limit or a run's steps, in first-seen order. */
  knownPools: Set<string>;
  /** In-progress runs per pool their steps use. */
  activeRunsByPool: Map<string, Set<string>>;
}

export function initialState(): State {
  return {
    revision: -1n,
    lastEventAt: null,
    config: defaultConcurrencyConfig(),
    runs: new Map(),
    runIds: [],
    queue: new RunQueue(),
    counts: new Map(),
    queuedByKey: new Map(),
    decisions: [],
    knownPools: new Set(),
    activeRunsByPool: new Map(),
  };
}
