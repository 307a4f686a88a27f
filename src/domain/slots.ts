/**
 * The step-slot rule (DESIGN section 1, "Step slots"), in one place.
 *
 * A claim is granted when its pool has room (OP granularity; its own limit, else the default,
 * else unlimited) and its run holds fewer slots than its maxConcurrentSteps. Waiting claims
 * are served by run priority plus step priority, then first come; a claim held back by its
 * own run's step limit is skipped, so it never blocks other runs' steps. At RUN granularity
 * pools are enforced at admission, so claims only obey maxConcurrentSteps.
 *
 * Like admission, a pass only looks at claims that a change could let through: those waiting
 * in a pool that freed or changed, and those of a run that freed a slot.
 */
import type { RunRecord, State, StepClaim } from '../../projections/state.js';
import { claimKey, waitingKey } from '../../projections/state.js';
import type { ConcurrencyConfig } from './config.js';
import { type Constraint, describeLimit, poolLimitOf, sameConstraintSet } from './constraints.js';

export const ALL_POOLS = '*';

export interface SlotChange {
  config?: ConcurrencyConfig;
  /** Claims that stop holding or waiting: released by a worker, or by their run's end. */
  released?: readonly StepClaim[];
  /** A claim the command makes, not yet in the state. */
  claimed?: StepClaim;
  /** Pools whose limit the command edits (their waitingKey), or ALL_POOLS. */
  editedPools?: ReadonlySet<string>;
}

export interface SlotPassResult {
  /** Claims to grant, in the order they were granted. */
  granted: StepClaim[];
  /** Waiting claims whose set of holding limits changed (new claims included), with the new set. */
  pending: Array<{ claim: StepClaim; reasons: Constraint[] }>;
}

interface StepLimit {
  kind: 'POOL_LIMIT' | 'RUN_STEP_LIMIT';
  limit: number;
}

function stepLimitsOf(claim: StepClaim, run: RunRecord, config: ConcurrencyConfig): StepLimit[] {
  const limits: StepLimit[] = [];
  if (config.poolGranularity === 'OP' && claim.pool !== null) {
    const limit = poolLimitOf(config, claim.pool);
    if (limit !== null) limits.push({ kind: 'POOL_LIMIT', limit });
  }
  if (run.maxConcurrentSteps !== null) limits.push({ kind: 'RUN_STEP_LIMIT', limit: run.maxConcurrentSteps });
  return limits;
}

export function stepConstraint(claim: StepClaim, limit: StepLimit, inUse: number): Constraint {
  const data = {
    kind: limit.kind,
    key: null,
    value: null,
    pool: limit.kind === 'POOL_LIMIT' ? claim.pool : null,
    perUniqueValue: false,
    limit: limit.limit,
    inUse,
  };
  return { ...data, message: describeLimit(data, 'OP') };
}

function inClaimOrder(a: StepClaim, b: StepClaim): number {
  return b.priority - a.priority || a.seq - b.seq;
}

export function slotPass(state: State, change: SlotChange): SlotPassResult {
  // Nothing released, claimed or edited (a run with no claims ending): nothing to grant, and
  // no waiting claim is held by anything new.
  if (!change.claimed && (change.released?.length ?? 0) === 0 && (change.editedPools?.size ?? 0) === 0) {
    return { granted: [], pending: [] };
  }
  const config = change.config ?? state.config;
  const poolDelta = new Map<string, number>();
  const runDelta = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, by: number) => map.set(key, (map.get(key) ?? 0) + by);
  const inPool = (pool: string) => (state.slotHolders.get(pool)?.size ?? 0) + (poolDelta.get(pool) ?? 0);
  const heldByRun = (run: RunRecord) => run.stepsHolding + (runDelta.get(run.id) ?? 0);
  const runOf = (claim: StepClaim) => state.runs.get(claim.runId) as RunRecord;

  const gone = new Set<string>();
  for (const claim of change.released ?? []) {
    gone.add(claimKey(claim.runId, claim.stepKey));
    if (claim.status !== 'GRANTED') continue;
    if (claim.pool !== null) add(poolDelta, claim.pool, -1);
    add(runDelta, claim.runId, -1);
  }

  const waiting = (key: string): StepClaim | undefined => {
    const claim = state.claims.get(key);
    return claim?.status === 'PENDING' && !gone.has(key) ? claim : undefined;
  };
  const waitingIn = (poolKey: string) => [...(state.waitingClaims.get(poolKey) ?? [])].flatMap((k) => waiting(k) ?? []);
  const waitingOfRun = (runId: string) =>
    [...(state.runs.get(runId)?.activeClaims ?? [])].flatMap((k) => waiting(k) ?? []);

  // Candidates come from sources already in serving order: the waiting queue of a pool that
  // freed a slot or had its limit edited, the waiting claims of a run that freed a slot, the
  // new claim. They are merged lazily and a pool's queue is left as soon as the pool is full,
  // so a release costs what it grants, not the length of the queue.
  interface Source {
    claims: Iterator<StepClaim>;
    head: StepClaim | undefined;
    /** A pool whose fullness ends this source: nothing further in it can be granted. */
    until: string | null;
  }
  const seen = new Set<string>();
  const keyOf = (c: StepClaim) => claimKey(c.runId, c.stepKey);
  function* claimsOf(keys: Iterable<string>): Generator<StepClaim> {
    for (const key of keys) {
      const claim = waiting(key);
      if (claim) yield claim;
    }
  }
  const sources: Source[] = [];
  const addSource = (claims: Iterable<StepClaim>, until: string | null) =>
    sources.push({ claims: claims[Symbol.iterator](), head: undefined, until });
  const limitOfPool = (pool: string) =>
    config.poolGranularity === 'OP' && pool !== '' ? poolLimitOf(config, pool) : null;
  const poolFullNow = (pool: string) => {
    const limit = limitOfPool(pool);
    return limit !== null && inPool(pool) >= limit;
  };
  const edited = new Set(change.editedPools?.has(ALL_POOLS) ? state.waitingClaims.keys() : change.editedPools);
  for (const pool of new Set([...poolDelta.keys(), ...edited])) {
    const queue = state.waitingClaims.get(pool);
    if (!queue) continue;
    // In a pool without a limit, claims wait only for their own run: the run's source has them.
    if (limitOfPool(pool) !== null) addSource(claimsOf(queue), pool);
    else if (edited.has(pool)) addSource(claimsOf(queue), null);
  }
  for (const runId of runDelta.keys()) addSource(waitingOfRun(runId).sort(inClaimOrder), null);
  if (change.claimed) addSource([change.claimed], null);

  const granted: StepClaim[] = [];
  const grantedKeys = new Set<string>();
  const touchedPools = new Set<string>();
  const touchedRuns = new Set<string>();
  const inUseFor = (claim: StepClaim, limit: StepLimit) =>
    limit.kind === 'POOL_LIMIT' ? inPool(claim.pool as string) : heldByRun(runOf(claim));
  const advance = (source: Source) => {
    for (;;) {
      const next = source.claims.next();
      source.head = next.done ? undefined : next.value;
      if (!source.head || !seen.has(keyOf(source.head))) return;
    }
  };
  for (const source of sources) advance(source);

  for (;;) {
    let best: Source | undefined;
    for (const source of sources) {
      if (source.head && seen.has(keyOf(source.head))) advance(source);
      if (!source.head) continue;
      if (source.until !== null && poolFullNow(source.until)) {
        source.head = undefined;
        continue;
      }
      if (!best?.head || inClaimOrder(source.head, best.head) < 0) best = source;
    }
    const claim = best?.head;
    if (!best || !claim) break;
    seen.add(keyOf(claim));
    advance(best);
    const run = runOf(claim);
    if (stepLimitsOf(claim, run, config).every((l) => inUseFor(claim, l) < l.limit)) {
      granted.push(claim);
      grantedKeys.add(keyOf(claim));
      if (claim.pool !== null) {
        add(poolDelta, claim.pool, 1);
        touchedPools.add(claim.pool);
      }
      add(runDelta, claim.runId, 1);
      touchedRuns.add(claim.runId);
    }
  }

  // Reasons change only where fullness changed: a pool or a run that filled up or got room
  // between before the command and after the pass (limit edits included). Waiters elsewhere
  // are held by what held them, as recorded.
  const recheck = new Map<string, StepClaim>();
  const recheckAll = (claims: StepClaim[]) => {
    for (const c of claims) {
      const key = claimKey(c.runId, c.stepKey);
      if (!grantedKeys.has(key)) recheck.set(key, c);
    }
  };
  if (change.claimed) recheckAll([change.claimed]);
  const poolFull = (pool: string, cfg: ConcurrencyConfig, held: number) => {
    if (cfg.poolGranularity !== 'OP' || pool === '') return false;
    const limit = poolLimitOf(cfg, pool);
    return limit !== null && held >= limit;
  };
  const poolsToCheck = new Set<string>([...poolDelta.keys(), ...touchedPools]);
  if (change.editedPools?.has(ALL_POOLS)) for (const pool of state.waitingClaims.keys()) poolsToCheck.add(pool);
  else for (const pool of change.editedPools ?? []) poolsToCheck.add(pool);
  for (const pool of poolsToCheck) {
    const before = poolFull(pool, state.config, state.slotHolders.get(pool)?.size ?? 0);
    if (before !== poolFull(pool, config, inPool(pool))) recheckAll(waitingIn(pool));
  }
  for (const runId of new Set([...runDelta.keys(), ...touchedRuns])) {
    const run = state.runs.get(runId) as RunRecord;
    const max = run.maxConcurrentSteps;
    if (max !== null && run.stepsHolding >= max !== heldByRun(run) >= max) recheckAll(waitingOfRun(runId));
  }

  const pending: SlotPassResult['pending'] = [];
  for (const claim of [...recheck.values()].sort(inClaimOrder)) {
    const reasons = stepLimitsOf(claim, runOf(claim), config)
      .filter((l) => inUseFor(claim, l) >= l.limit)
      .map((l) => stepConstraint(claim, l, inUseFor(claim, l)));
    if (reasons.length === 0) {
      throw new Error(`slot invariant broken: step ${claim.stepKey} of run ${claim.runId} has room but waits`);
    }
    const isNew = claim === change.claimed;
    if (isNew || !sameConstraintSet(reasons, claim.reasons)) pending.push({ claim, reasons });
  }
  return { granted, pending };
}

/** What holds a waiting claim back right now, with today's counts (for reads). */
export function currentClaimHolds(state: State, claim: StepClaim): Constraint[] {
  if (claim.status !== 'PENDING') return [];
  const run = state.runs.get(claim.runId) as RunRecord;
  return stepLimitsOf(claim, run, state.config)
    .map((l) => ({
      l,
      inUse: l.kind === 'POOL_LIMIT' ? (state.slotHolders.get(claim.pool as string)?.size ?? 0) : run.stepsHolding,
    }))
    .filter(({ l, inUse }) => inUse >= l.limit)
    .map(({ l, inUse }) => stepConstraint(claim, l, inUse));
}

/**
 * Where a waiting claim stands among the claims waiting for the same pool (1: served next when a
 * slot frees); null unless it waits. Claims held back only by their own run's step limit share
 * the pool's queue, so this counts them too: it is a place in line, not a promise of order.
 */
export function claimQueuePosition(state: State, claim: StepClaim): number | null {
  if (claim.status !== 'PENDING') return null;
  const key = claimKey(claim.runId, claim.stepKey);
  let position = 0;
  for (const waiting of state.waitingClaims.get(waitingKey(claim.pool)) ?? []) {
    position += 1;
    if (waiting === key) return position;
  }
  return null;
}

/** Seconds to the first re-claim of the claim served next; each claim ahead adds this much. */
const RETRY_BASE_SECONDS = 1;
const RETRY_PER_CLAIM_AHEAD_SECONDS = 0.5;
const RETRY_MAX_SECONDS = 30;

/**
 * How long a client that polls (re-claims, which is idempotent) should wait before asking again:
 * a second for the next in line, half a second more per claim ahead, at most 30 s. Workers that
 * follow dequeueDecisions learn of their grant at once and need no polling at all.
 */
export function suggestedRetrySeconds(queuePosition: number | null): number | null {
  if (queuePosition === null) return null;
  const ahead = Math.max(0, queuePosition - 1);
  return Math.min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS + ahead * RETRY_PER_CLAIM_AHEAD_SECONDS);
}
