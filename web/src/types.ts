/** The shapes the pages select from the API. */

export interface Tag {
  key: string;
  value: string;
}

export interface Constraint {
  kind: 'MAX_CONCURRENT_RUNS' | 'TAG_LIMIT' | 'POOL_LIMIT' | 'RUN_STEP_LIMIT';
  key: string | null;
  value: string | null;
  pool: string | null;
  perUniqueValue: boolean;
  limit: number;
  inUse: number;
  message: string;
}

export interface TagLimit {
  key: string;
  value: string | null;
  applyLimitPerUniqueValue: boolean;
  limit: number;
}

export interface Config {
  maxConcurrentRuns: number;
  defaultPoolLimit: number | null;
  poolGranularity: 'OP' | 'RUN';
  tagConcurrencyLimits: TagLimit[];
  rootStepHold: { enabled: boolean; runBuffer: number; startedRunAllotmentSeconds: number };
}

export interface Pool {
  name: string;
  limit: number | null;
  explicitLimit: number | null;
  inUse: number;
  pending: number;
  /** Root steps of admitted runs not yet claiming, counted by the root-step hold. */
  promised: number;
}

export interface RunSummary {
  id: string;
  jobName: string;
  status: string;
  priority: number;
  tags: Tag[];
  pools: string[];
  enqueuedAt: string;
  blockedBy: Constraint[];
}

export interface Decision {
  position: string;
  at: string;
  kind: 'ADMITTED' | 'BLOCKED' | 'SLOT_GRANTED' | 'SLOT_PENDING';
  runId: string;
  stepKey: string | null;
  pool: string | null;
  message: string;
  reasons: Constraint[];
}

export const CONSTRAINT = 'kind key value pool perUniqueValue limit inUse message';
export const CONFIG =
  'maxConcurrentRuns defaultPoolLimit poolGranularity tagConcurrencyLimits { key value applyLimitPerUniqueValue limit } rootStepHold { enabled runBuffer startedRunAllotmentSeconds }';
export const POOL = 'name limit explicitLimit inUse pending promised';
export const RUN_SUMMARY = `id jobName status priority tags { key value } pools enqueuedAt blockedBy { ${CONSTRAINT} }`;
