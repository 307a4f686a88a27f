/**
 * Helpers for the step-slot and deadline tests: terse slot commands, a brute-force reference
 * for the step-slot rule (DESIGN section 1, "Step slots") computed from the claims alone, a
 * Scenario that checks every StepSlotGranted against that reference at the moment it is folded
 * in, and for the end-to-end tests an SSE reader over any fetch (yoga.fetch included). It loads
 * no server code, so the pure tests that import it stay pure.
 */
import { evolve } from '../../projections/evolve.js';
import { claimKey, initialState, type RunRecord, type State, type StepClaim } from '../../projections/state.js';
import type { Command } from '../../src/domain/commands.js';
import { constraintIdentity } from '../../src/domain/constraints.js';
import type { DomainEvent, EventData } from '../../src/domain/events.js';
import { isInProgress } from '../../src/domain/run.js';
import { type FetchLike, type Json, readSse } from './e2e-http.js';
import { bigints, fingerprint, readBack, Scenario, type ScenarioOptions } from './scenario.js';

// ---------------------------------------------------------------------------------------------
// Commands

export const slotCmd = {
  claim: (runId: string, stepKey: string): Command => ({ type: 'ClaimStepSlot', runId, stepKey }),
  release: (runId: string, stepKey: string): Command => ({ type: 'ReleaseStepSlot', runId, stepKey }),
  heartbeat: (runId: string): Command => ({ type: 'Heartbeat', runId }),
  expire: (): Command => ({ type: 'ExpireDeadlines' }),
  monitoring: (
    startTimeoutSeconds: number,
    cancelTimeoutSeconds: number,
    maxRuntimeSeconds?: number | null,
  ): Command => ({
    type: 'SetRunMonitoring',
    startTimeoutSeconds,
    cancelTimeoutSeconds,
    ...(maxRuntimeSeconds === undefined ? {} : { maxRuntimeSeconds }),
  }),
};

export function claimOf(state: State, runId: string, stepKey: string): StepClaim | undefined {
  return state.claims.get(claimKey(runId, stepKey));
}

/** GRANTED, PENDING, RELEASED, or NONE when the step never claimed. */
export function claimStatus(state: State, runId: string, stepKey: string): StepClaim['status'] | 'NONE' {
  return claimOf(state, runId, stepKey)?.status ?? 'NONE';
}

/** `type:runId/stepKey` for slot events, `type:runId` for others: terse event assertions. */
export const slotSummary = (events: readonly DomainEvent[]): string[] =>
  events
    .filter((e) => e.type !== 'LimitStatesChanged')
    .map((e) => {
      if ('stepKey' in e.data) return `${e.type}:${e.data.runId}/${e.data.stepKey}`;
      return 'runId' in e.data ? `${e.type}:${e.data.runId}` : e.type;
    });

// ---------------------------------------------------------------------------------------------
// The brute-force reference: every count recomputed from the claims and the config alone.

export interface StepHold {
  kind: 'POOL_LIMIT' | 'RUN_STEP_LIMIT';
  pool: string | null;
  limit: number;
  inUse: number;
}

const allClaims = (state: State) => [...state.claims.values()];

/** The limit a pool puts on steps: its own, else the default, else none; none at RUN granularity. */
export function stepPoolLimit(state: State, pool: string | null): number | null {
  if (pool === null || state.config.poolGranularity !== 'OP') return null;
  const own = state.config.poolLimits.get(pool);
  return own !== undefined ? own : state.config.defaultPoolLimit;
}

export function grantedInPool(state: State, pool: string): number {
  return allClaims(state).filter((c) => c.status === 'GRANTED' && c.pool === pool).length;
}

export function grantedOfRun(state: State, runId: string): number {
  return allClaims(state).filter((c) => c.status === 'GRANTED' && c.runId === runId).length;
}

/** The limits that are full for a claim right now, recounted from the claims. */
export function referenceHolds(state: State, claim: Pick<StepClaim, 'runId' | 'pool'>): StepHold[] {
  const holds: StepHold[] = [];
  const poolLimit = stepPoolLimit(state, claim.pool);
  if (poolLimit !== null) {
    const inUse = grantedInPool(state, claim.pool as string);
    if (inUse >= poolLimit) holds.push({ kind: 'POOL_LIMIT', pool: claim.pool, limit: poolLimit, inUse });
  }
  const run = state.runs.get(claim.runId);
  if (run?.maxConcurrentSteps != null) {
    const inUse = grantedOfRun(state, claim.runId);
    if (inUse >= run.maxConcurrentSteps) {
      holds.push({ kind: 'RUN_STEP_LIMIT', pool: null, limit: run.maxConcurrentSteps, inUse });
    }
  }
  return holds;
}

const holdId = (h: { kind: string; pool: string | null }) => `${h.kind}:${h.pool ?? ''}`;

/** Problems if granting this claim now (state just before the grant is folded in) breaks a rule. */
export function grantViolations(before: State, grant: EventData<'StepSlotGranted'>): string[] {
  const where = `StepSlotGranted ${grant.runId}/${grant.stepKey}`;
  const run = before.runs.get(grant.runId);
  if (!run) return [`${where}: unknown run`];
  const problems: string[] = [];
  // A run being canceled keeps what it holds but gets nothing new.
  if (run.status !== 'STARTING' && run.status !== 'STARTED') problems.push(`${where}: the run is ${run.status}`);
  const step = run.steps.find((s) => s.key === grant.stepKey);
  if (!step) problems.push(`${where}: the run declares no such step`);
  else if (step.pool !== grant.pool) problems.push(`${where}: pool ${grant.pool}, the step's pool is ${step.pool}`);
  const existing = claimOf(before, grant.runId, grant.stepKey);
  if (existing?.status === 'GRANTED') problems.push(`${where}: the step already holds a slot`);
  for (const hold of referenceHolds(before, { runId: grant.runId, pool: grant.pool })) {
    problems.push(`${where}: granted while ${holdId(hold)} had ${hold.inUse} of ${hold.limit} in use`);
  }
  return problems;
}

/**
 * Problems with the order of the grants of one command, checked after it: a claim granted while
 * a claim ahead of it in the same pool (higher priority, or equal and claimed earlier) still
 * waits, and that claim is not held by its own run's step limit.
 */
export function orderViolations(after: State, events: readonly DomainEvent[]): string[] {
  const problems: string[] = [];
  const pendingClaims = allClaims(after).filter((c) => c.status === 'PENDING');
  for (const e of events) {
    if (e.type !== 'StepSlotGranted' || e.data.pool === null) continue;
    const granted = claimOf(after, e.data.runId, e.data.stepKey);
    if (!granted) continue;
    for (const w of pendingClaims) {
      if (w.pool !== granted.pool) continue;
      const ahead = w.priority > granted.priority || (w.priority === granted.priority && w.seq < granted.seq);
      if (!ahead) continue;
      const run = after.runs.get(w.runId) as RunRecord;
      const runLimited = run.maxConcurrentSteps !== null && grantedOfRun(after, w.runId) >= run.maxConcurrentSteps;
      if (!runLimited) {
        problems.push(
          `${granted.runId}/${granted.stepKey} (priority ${granted.priority}, claim ${granted.seq}) was granted a slot of ` +
            `${granted.pool} while ${w.runId}/${w.stepKey} (priority ${w.priority}, claim ${w.seq}) waits, not held by its run's step limit`,
        );
      }
    }
  }
  return problems;
}

const sortedKeys = (set: Iterable<string>) => [...set].sort();
const readable = (s: string) => s.replaceAll('\u0000', '/');

/**
 * Every slot invariant that must hold between commands, from scratch: the indexes (slotHolders,
 * waitingClaims, stepsHolding, activeClaims) match the claims; no run that is not in progress
 * holds or waits, and no CANCELING run waits; every waiting claim is held by a full limit, and its recorded reasons are
 * exactly those limits.
 */
export function slotInvariantProblems(state: State): string[] {
  const problems: string[] = [];
  const holders = new Map<string, string[]>();
  const waiting = new Map<string, string[]>();
  const holding = new Map<string, number>();
  const active = new Map<string, string[]>();
  for (const [key, c] of state.claims) {
    if (key !== claimKey(c.runId, c.stepKey)) problems.push(`claim stored under ${readable(key)}`);
    const run = state.runs.get(c.runId);
    if (!run) {
      problems.push(`claim ${readable(key)} of unknown run`);
      continue;
    }
    const step = run.steps.find((s) => s.key === c.stepKey);
    if (!step) problems.push(`claim ${readable(key)}: undeclared step`);
    else if (step.pool !== c.pool) problems.push(`claim ${readable(key)}: pool ${c.pool}, step pool ${step.pool}`);
    if (c.status === 'RELEASED') continue;
    active.set(c.runId, [...(active.get(c.runId) ?? []), key]);
    if (!isInProgress(run.status)) problems.push(`run ${c.runId} is ${run.status} but ${c.stepKey} is ${c.status}`);
    if (c.status === 'GRANTED') {
      holding.set(c.runId, (holding.get(c.runId) ?? 0) + 1);
      if (c.pool !== null) holders.set(c.pool, [...(holders.get(c.pool) ?? []), key]);
      if (c.reasons.length > 0) problems.push(`claim ${readable(key)} is GRANTED with reasons`);
    } else {
      waiting.set(c.pool ?? '', [...(waiting.get(c.pool ?? '') ?? []), key]);
      if (run.status === 'CANCELING') problems.push(`run ${c.runId} is CANCELING but ${c.stepKey} still waits`);
      const holds = referenceHolds(state, c);
      if (holds.length === 0) {
        problems.push(`claim ${readable(key)} waits, but its pool and its run both have room`);
      }
      const recorded = c.reasons.map((r) => holdId(r)).sort();
      const expected = holds.map(holdId).sort();
      if (JSON.stringify(recorded) !== JSON.stringify(expected)) {
        problems.push(`claim ${readable(key)} records ${recorded.join(',')}, held by ${expected.join(',')}`);
      }
    }
  }
  const compare = (what: string, actual: ReadonlyMap<string, Iterable<string>>, expected: Map<string, string[]>) => {
    const a = JSON.stringify([...actual].map(([k, v]) => [k, sortedKeys(v)]).sort());
    const b = JSON.stringify([...expected].map(([k, v]) => [k, sortedKeys(v)]).sort());
    if (a !== b) problems.push(`${what} ${readable(a)}, recount ${readable(b)}`);
  };
  compare('slotHolders', state.slotHolders, holders);
  compare('waitingClaims', state.waitingClaims, waiting);
  for (const run of state.runs.values()) {
    const want = holding.get(run.id) ?? 0;
    if (run.stepsHolding !== want) problems.push(`run ${run.id} stepsHolding ${run.stepsHolding}, recount ${want}`);
    const activeWant = sortedKeys(active.get(run.id) ?? []);
    if (JSON.stringify(sortedKeys(run.activeClaims)) !== JSON.stringify(activeWant)) {
      problems.push(`run ${run.id} activeClaims ${readable(JSON.stringify(sortedKeys(run.activeClaims)))}`);
    }
  }
  const seqs = allClaims(state).map((c) => c.seq);
  if (new Set(seqs).size !== seqs.length || seqs.some((s) => s >= state.nextClaimSeq)) {
    problems.push(`claim orders ${JSON.stringify(seqs)} are not unique below ${state.nextClaimSeq}`);
  }
  return problems;
}

/** A comparable picture of the slot side of a state (claims, holders, waiting sets, runs). */
export function slotPicture(state: State): unknown {
  const sorted = <V>(m: ReadonlyMap<string, V>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  return {
    claims: sorted(state.claims).map(([k, c]) => [
      k,
      { ...c, reasons: c.reasons.map((r) => [constraintIdentity(r), r.limit, r.inUse, r.message]) },
    ]),
    slotHolders: sorted(state.slotHolders).map(([k, v]) => [k, sortedKeys(v)]),
    waitingClaims: sorted(state.waitingClaims).map(([k, v]) => [k, sortedKeys(v)]),
    nextClaimSeq: state.nextClaimSeq,
    monitoring: state.monitoring,
    inProgress: sortedKeys(state.inProgress),
    runs: sorted(state.runs).map(([id, r]) => [
      id,
      {
        status: r.status,
        stepsHolding: r.stepsHolding,
        activeClaims: sortedKeys(r.activeClaims),
        admittedAt: r.admittedAt,
        startedAt: r.startedAt,
        cancelRequestedAt: r.cancelRequestedAt,
        finishedAt: r.finishedAt,
        finishReason: r.finishReason,
        lastHeartbeatAt: r.lastHeartbeatAt,
      },
    ]),
  };
}

/** Slot picture plus the harness's fingerprint, as one string. */
export function slotFingerprint(state: State): string {
  return JSON.stringify([slotPicture(state), fingerprint(state)], bigints);
}

// ---------------------------------------------------------------------------------------------
// A scenario that checks the slot rule on every command

export class SlotCheckError extends Error {
  override readonly name = 'SlotCheckError';
}

/**
 * The Scenario harness, plus after every command: each StepSlotGranted checked against the
 * reference on the state just before it was folded in (a shadow state folded from the events
 * as a store hands them back), the order of the grants, every slot invariant, and the shadow
 * (a replay of the log) equal to the live state.
 */
export class SlotScenario extends Scenario {
  private readonly shadow = initialState();
  private folded = 0;

  /** The root-step hold is off unless asked for: these scenarios are about admitted runs sharing slots. */
  constructor(options: ScenarioOptions = {}) {
    super({ rootStepHold: false, ...options });
  }

  override when(command: Command): DomainEvent[] {
    const events = super.when(command);
    const problems: string[] = [];
    for (const event of this.log.slice(this.folded)) {
      if (event.type === 'StepSlotGranted') problems.push(...grantViolations(this.shadow, event.data));
      evolve(this.shadow, readBack(event));
    }
    this.folded = this.log.length;
    problems.push(...orderViolations(this.state, events));
    problems.push(...slotInvariantProblems(this.state));
    if (slotFingerprint(this.shadow) !== slotFingerprint(this.state)) {
      problems.push('a replay of the log differs from the live state');
    }
    if (problems.length > 0) throw new SlotCheckError(`${command.type}: ${problems.join('\n')}`);
    return events;
  }
}

// ---------------------------------------------------------------------------------------------
// End to end: SSE over any fetch

/**
 * A subscription over SSE through any fetch (yoga.fetch needs no port): POST with
 * `accept: text/event-stream`, the body read as a stream of `event:`/`data:` blocks.
 */
export class FetchSse {
  readonly items: Json[] = [];
  readonly errors: unknown[] = [];
  done = false;
  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  private reading: Promise<void> = Promise.resolve();
  readonly opened: Promise<number>;

  constructor(fetchImpl: FetchLike, url: string, query: string, variables: Record<string, unknown> = {}) {
    this.opened = (async () => {
      const response = await fetchImpl(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query, variables }),
      });
      if (response.body) {
        this.reader = response.body.getReader();
        this.reading = readSse(this.reader, this);
      } else this.done = true;
      return response.status;
    })();
  }

  async close(): Promise<void> {
    await this.opened.catch(() => undefined);
    await this.reader?.cancel().catch(() => undefined);
    await this.reading;
  }
}
