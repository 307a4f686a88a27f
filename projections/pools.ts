/** Pool views: what a pool allows, what it has in use and who waits, from the state. */

import { poolCount, poolLimitOf } from '../src/domain/constraints.js';
import { hasRootStepHold } from '../src/domain/rules.js';
import { type State, type StepClaim, waitingKey } from './state.js';

export interface PoolView {
  name: string;
  /** The limit in force: its own, else the default; null when unlimited. */
  limit: number | null;
  explicitLimit: number | null;
  /** Runs in progress using the pool (RUN granularity) or slots held by steps (OP). */
  inUse: number;
  /** Runs held by the pool's limit (RUN) or step claims waiting for a slot (OP). */
  pending: number;
  activeRunIds: string[];
  /** Root steps of admitted runs not yet claiming, counted as holding a slot (OP; see RootStepHold). */
  promised: number;
}

export function poolView(state: State, name: string): PoolView {
  const config = state.config;
  const view = { name, limit: poolLimitOf(config, name), explicitLimit: config.poolLimits.get(name) ?? null };
  if (config.poolGranularity === 'RUN') {
    // While the pool's limit is full it holds every queued run that uses the pool.
    const inUse = state.counts.get(poolCount(name)) ?? 0;
    const full = view.limit !== null && inUse >= view.limit;
    const pending = full ? (state.queuedByKey.get(poolCount(name))?.size ?? 0) : 0;
    return {
      ...view,
      inUse,
      pending,
      activeRunIds: [...(state.activeRunsByPool.get(name) ?? [])],
      promised: 0,
    };
  }
  const holders = [...(state.slotHolders.get(name) ?? [])].map((key) => state.claims.get(key)?.runId as string);
  return {
    ...view,
    inUse: holders.length,
    pending: state.waitingClaims.get(name)?.size ?? 0,
    activeRunIds: [...new Set(holders)],
    // Nothing was promised under rules from before the root-step hold.
    promised: hasRootStepHold(state.rules) ? (state.promisedSlots.get(name) ?? 0) : 0,
  };
}

/**
 * OP granularity: the claims holding a slot of the pool (in grant order), then those waiting
 * for one (in the order they will be served). Empty at RUN granularity.
 */
export function poolClaims(state: State, pool: string): StepClaim[] {
  if (state.config.poolGranularity === 'RUN') return [];
  const claimsOf = (keys: Iterable<string>) =>
    [...keys].map((key) => state.claims.get(key)).filter((claim): claim is StepClaim => claim !== undefined);
  const granted = claimsOf(state.slotHolders.get(pool) ?? []).sort(
    (a, b) => (a.grantedAt ?? '').localeCompare(b.grantedAt ?? '') || a.seq - b.seq,
  );
  return [...granted, ...claimsOf(state.waitingClaims.get(waitingKey(pool))?.inOrder() ?? [])];
}

/** Every pool named by a limit or by a run's steps, by name. */
export function poolViews(state: State): PoolView[] {
  return [...state.knownPools].sort().map((name) => poolView(state, name));
}
