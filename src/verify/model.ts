/**
 * The rules `sluice verify` checks, written apart from the decider on purpose: it keeps its own
 * counts, read straight from the recorded facts, and asks of every decision whether the limits
 * in force at that position allowed it. A bug in the admission pass or the fold cannot hide
 * itself here by being shared. It imports no decider or projection code, only the shape of the
 * events.
 */
import type { DomainEvent } from '../domain/events.js';

/** A rule broken at a position, in words an operator can act on. */
export interface Breach {
  rule: BreachRule;
  message: string;
}

export type BreachRule =
  | 'over-admission'
  | 'slot-over-limit'
  | 'ended-twice'
  | 'no-way-to-end'
  | 'unknown-run'
  | 'bad-transition'
  | 'slot-leak';

interface Config {
  maxConcurrentRuns: number;
  tagLimits: Array<{ key: string; value: string | null; applyLimitPerUniqueValue: boolean; limit: number }>;
  granularity: 'OP' | 'RUN';
  defaultPoolLimit: number | null;
  poolLimits: Map<string, number>;
  hold: { enabled: boolean; runBuffer: number };
}

interface ModelStep {
  key: string;
  pool: string | null;
  root: boolean;
}

interface ModelRun {
  id: string;
  status: 'QUEUED' | 'STARTING' | 'STARTED' | 'CANCELING';
  tags: Array<{ key: string; value: string }>;
  steps: Map<string, ModelStep>;
  pools: Set<string>;
  maxConcurrentSteps: number | null;
  leaseSeconds: number | null;
  admittedAt: number | null;
  startedAt: number | null;
  cancelAt: number | null;
  heartbeatAt: number | null;
  /** Root steps in a pool, admitted, not yet claiming: they count as taking their pool's slot. */
  promised: Set<string>;
  /** Active claims: GRANTED holds a slot, PENDING waits. */
  claims: Map<string, { pool: string | null; granted: boolean }>;
  holding: number;
}

/** Tags that give a run its own max runtime (as Dagster names them). */
const MAX_RUNTIME_TAG_KEYS = ['dagster/max_runtime', 'dagster/max_runtime_seconds'];

const bump = (map: Map<string, number>, key: string, by: number) => {
  const next = (map.get(key) ?? 0) + by;
  if (next === 0) map.delete(key);
  else map.set(key, next);
};

const isLive = (status: ModelRun['status']) => status !== 'QUEUED';

/** Counts kept from the facts alone, and the rules asked of each decision. */
export class LogModel {
  private config: Config = {
    maxConcurrentRuns: 10,
    tagLimits: [],
    granularity: 'OP',
    defaultPoolLimit: null,
    poolLimits: new Map(),
    hold: { enabled: true, runBuffer: 0 },
  };
  private monitoring = { start: 180, cancel: 180, maxRuntime: null as number | null };
  private readonly runs = new Map<string, ModelRun>();
  /** Runs that ended, with their final status: only ids are kept, so memory follows the runs seen. */
  private readonly ended = new Map<string, string>();
  /** Finished runs whose claims are still active: released in the same append, or leaked. */
  private readonly endedClaims = new Map<string, ModelRun>();
  private inProgress = 0;
  private readonly tagKeyRuns = new Map<string, number>();
  private readonly tagValueRuns = new Map<string, number>();
  private readonly poolRuns = new Map<string, number>();
  private readonly slotsHeld = new Map<string, number>();
  private readonly claimsWaiting = new Map<string, number>();
  private readonly promisedSlots = new Map<string, number>();

  readonly tally = { enqueued: 0, admitted: 0, finished: 0, granted: 0, peakInProgress: 0 };

  /** Folds one event in; returns the first rule its decision broke, if any. */
  apply(event: DomainEvent, at: number): Breach | null {
    switch (event.type) {
      case 'RunEnqueued': {
        const { runId } = event.data;
        if (this.runs.has(runId) || this.ended.has(runId)) {
          return { rule: 'bad-transition', message: `run ${runId} is enqueued a second time` };
        }
        const steps = new Map<string, ModelStep>();
        for (const s of event.data.steps) {
          steps.set(s.key, { key: s.key, pool: s.pool, root: (s.dependsOn ?? []).length === 0 });
        }
        this.runs.set(runId, {
          id: runId,
          status: 'QUEUED',
          tags: event.data.tags,
          steps,
          pools: new Set(event.data.steps.flatMap((s) => (s.pool === null ? [] : [s.pool]))),
          maxConcurrentSteps: event.data.maxConcurrentSteps,
          leaseSeconds: event.data.leaseSeconds,
          admittedAt: null,
          startedAt: null,
          cancelAt: null,
          heartbeatAt: null,
          promised: new Set(),
          claims: new Map(),
          holding: 0,
        });
        this.tally.enqueued++;
        return null;
      }
      case 'RunAdmitted':
        return this.admit(event.data.runId, at);
      case 'RunStarted': {
        const run = this.runs.get(event.data.runId);
        if (!run) return this.unknown(event.data.runId, 'started');
        if (!isLive(run.status))
          return { rule: 'bad-transition', message: `run ${run.id} started without being admitted` };
        if (run.status === 'STARTING') run.status = 'STARTED';
        run.startedAt = at;
        return null;
      }
      case 'RunCancellationRequested': {
        const run = this.runs.get(event.data.runId);
        if (!run) return this.unknown(event.data.runId, 'asked to cancel');
        run.status = 'CANCELING';
        run.cancelAt = at;
        this.endPromises(run);
        return null;
      }
      case 'RunFinished':
        return this.finish(event.data.runId, event.data.status);
      case 'RootStepAllotmentEnded': {
        const run = this.runs.get(event.data.runId);
        if (!run) return this.unknown(event.data.runId, 'ended its root-step allotment');
        this.endPromises(run);
        return null;
      }
      case 'RunStepAdded': {
        const run = this.runs.get(event.data.runId);
        if (!run) return this.unknown(event.data.runId, 'added a step');
        const { stepKey, pool } = event.data;
        run.steps.set(stepKey, { key: stepKey, pool, root: false });
        if (!run.pools.has(pool)) {
          run.pools.add(pool);
          if (isLive(run.status)) bump(this.poolRuns, pool, 1);
        }
        return null;
      }
      case 'StepSlotGranted':
        return this.grant(event.data.runId, event.data.stepKey, event.data.pool);
      case 'StepSlotPending': {
        const run = this.runs.get(event.data.runId);
        if (!run) return this.unknown(event.data.runId, 'claimed a slot');
        const { stepKey, pool } = event.data;
        const claim = run.claims.get(stepKey);
        if (claim?.granted) {
          return { rule: 'bad-transition', message: `step ${stepKey} of run ${run.id} waits for a slot it holds` };
        }
        if (!claim) {
          run.claims.set(stepKey, { pool, granted: false });
          if (pool !== null) bump(this.claimsWaiting, pool, 1);
        }
        this.endPromise(run, stepKey);
        return null;
      }
      case 'StepSlotReleased':
        return this.release(event.data.runId, event.data.stepKey);
      case 'RunHeartbeatRecorded': {
        const run = this.runs.get(event.data.runId);
        if (!run) return this.unknown(event.data.runId, 'sent a heartbeat');
        run.heartbeatAt = at;
        return null;
      }
      case 'RunMonitoringSet':
        this.monitoring = {
          start: event.data.startTimeoutSeconds,
          cancel: event.data.cancelTimeoutSeconds,
          maxRuntime: event.data.maxRuntimeSeconds ?? null,
        };
        return null;
      case 'ClockSteppedForward':
        // Deadlines of runs in progress count that much later (see RunRecord.clockShiftMs).
        for (const run of this.runs.values()) {
          if (!isLive(run.status)) continue;
          const by = event.data.byMs;
          if (run.admittedAt !== null) run.admittedAt += by;
          if (run.startedAt !== null) run.startedAt += by;
          if (run.cancelAt !== null) run.cancelAt += by;
          if (run.heartbeatAt !== null) run.heartbeatAt += by;
        }
        return null;
      case 'MaxConcurrentRunsSet':
        this.config.maxConcurrentRuns = event.data.limit;
        return null;
      case 'TagConcurrencyLimitsSet':
        this.config.tagLimits = event.data.limits;
        return null;
      case 'PoolGranularitySet':
        this.config.granularity = event.data.granularity;
        return null;
      case 'DefaultPoolLimitSet':
        this.config.defaultPoolLimit = event.data.limit;
        return null;
      case 'PoolLimitSet':
        this.config.poolLimits.set(event.data.pool, event.data.limit);
        return null;
      case 'PoolLimitDeleted':
        this.config.poolLimits.delete(event.data.pool);
        return null;
      case 'RootStepHoldSet':
        this.config.hold = { enabled: event.data.enabled, runBuffer: event.data.runBuffer };
        return null;
      default:
        // Decisions about waiting (RunBlocked, LimitStatesChanged) and facts that change no count.
        return null;
    }
  }

  /** At the end of the log: runs in progress that nothing will end, and slots never given back. */
  atEnd(lastAt: number, graceSeconds: number): Breach | null {
    for (const run of this.endedClaims.values()) {
      const steps = [...run.claims.keys()].join(', ');
      return { rule: 'slot-leak', message: `run ${run.id} ended but its steps ${steps} still hold or wait for slots` };
    }
    for (const run of this.runs.values()) {
      if (!isLive(run.status)) continue;
      const deadline = this.deadlineOf(run);
      if (deadline !== null && deadline.at + graceSeconds * 1000 < lastAt) {
        return {
          rule: 'no-way-to-end',
          message: `run ${run.id} is ${run.status}; its ${deadline.what} passed at ${new Date(deadline.at).toISOString()} and the log went on to ${new Date(lastAt).toISOString()} without ending it`,
        };
      }
    }
    return null;
  }

  /** In-progress runs at the end that only their worker can end (no lease, no max runtime). */
  workerOnlyRuns(): string[] {
    return [...this.runs.values()].filter((r) => isLive(r.status) && this.deadlineOf(r) === null).map((r) => r.id);
  }

  counts() {
    let queued = 0;
    for (const run of this.runs.values()) if (run.status === 'QUEUED') queued++;
    return { queued, inProgress: this.inProgress, ended: this.ended.size };
  }

  private deadlineOf(run: ModelRun): { at: number; what: string } | null {
    const candidates: Array<{ at: number; what: string }> = [];
    if (run.status === 'STARTING' && run.admittedAt !== null) {
      candidates.push({ at: run.admittedAt + this.monitoring.start * 1000, what: 'start timeout' });
    }
    if (run.status === 'CANCELING' && run.cancelAt !== null) {
      candidates.push({ at: run.cancelAt + this.monitoring.cancel * 1000, what: 'cancel timeout' });
    }
    if (run.status === 'STARTED' && run.startedAt !== null) {
      const tag = run.tags.find((t) => MAX_RUNTIME_TAG_KEYS.includes(t.key));
      const tagged = tag ? Number(tag.value) : Number.NaN;
      const seconds = Number.isFinite(tagged) && tagged > 0 ? tagged : this.monitoring.maxRuntime;
      if (seconds !== null) candidates.push({ at: run.startedAt + seconds * 1000, what: 'max runtime' });
    }
    if (run.leaseSeconds !== null && run.admittedAt !== null) {
      const renewed = Math.max(run.admittedAt, run.heartbeatAt ?? run.admittedAt);
      candidates.push({ at: renewed + run.leaseSeconds * 1000, what: 'lease' });
    }
    candidates.sort((a, b) => a.at - b.at);
    return candidates[0] ?? null;
  }

  private unknown(runId: string, what: string): Breach {
    const detail = this.ended.has(runId) ? 'after it ended' : 'but was never enqueued';
    return { rule: 'unknown-run', message: `run ${runId} ${what} ${detail}` };
  }

  private poolLimit(pool: string): number | null {
    return this.config.poolLimits.get(pool) ?? this.config.defaultPoolLimit;
  }

  private rootCount(pool: string): number {
    return (this.slotsHeld.get(pool) ?? 0) + (this.claimsWaiting.get(pool) ?? 0) + (this.promisedSlots.get(pool) ?? 0);
  }

  /** Every limit in force that had no room for this run, as sentences. */
  private fullLimitsFor(run: ModelRun): string[] {
    const c = this.config;
    const full: string[] = [];
    if (c.maxConcurrentRuns >= 0 && this.inProgress >= c.maxConcurrentRuns) {
      full.push(`max concurrent runs ${c.maxConcurrentRuns} with ${this.inProgress} in progress`);
    }
    for (const limit of c.tagLimits) {
      for (const tag of run.tags) {
        if (tag.key !== limit.key) continue;
        if (limit.applyLimitPerUniqueValue || limit.value !== null) {
          if (!limit.applyLimitPerUniqueValue && limit.value !== tag.value) continue;
          const inUse = this.tagValueRuns.get(`${tag.key}\u0000${tag.value}`) ?? 0;
          if (inUse >= limit.limit)
            full.push(`tag ${tag.key}=${tag.value} limit ${limit.limit} with ${inUse} in progress`);
        } else {
          const inUse = this.tagKeyRuns.get(tag.key) ?? 0;
          if (inUse >= limit.limit) full.push(`tag ${tag.key} limit ${limit.limit} with ${inUse} in progress`);
        }
      }
    }
    if (c.granularity === 'RUN') {
      for (const pool of run.pools) {
        const limit = this.poolLimit(pool);
        const inUse = this.poolRuns.get(pool) ?? 0;
        if (limit !== null && inUse >= limit)
          full.push(`pool ${pool} (RUN) limit ${limit} with ${inUse} runs in progress`);
      }
    } else if (c.hold.enabled) {
      // Held when every root step is in a pool whose slots are all taken (plus the buffer).
      const roots = [...run.steps.values()].filter((s) => s.root);
      if (roots.length > 0 && roots.every((s) => s.pool !== null)) {
        const pools = [...new Set(roots.map((s) => s.pool as string))];
        const taken = pools.map((pool) => {
          const limit = this.poolLimit(pool);
          const inUse = this.rootCount(pool);
          return { pool, limit, inUse, full: limit !== null && inUse >= limit + c.hold.runBuffer };
        });
        if (taken.every((t) => t.full)) {
          const list = taken.map((t) => `${t.pool} ${t.inUse} of ${t.limit}+${c.hold.runBuffer}`).join(', ');
          full.push(`root-step hold: every root step's pool is taken (${list})`);
        }
      }
    }
    return full;
  }

  private admit(runId: string, at: number): Breach | null {
    const run = this.runs.get(runId);
    if (!run) return this.unknown(runId, 'admitted');
    if (run.status !== 'QUEUED') {
      return { rule: 'bad-transition', message: `run ${runId} admitted while ${run.status}` };
    }
    const full = this.fullLimitsFor(run);
    this.count(run, 1);
    run.status = 'STARTING';
    run.admittedAt = at;
    for (const step of run.steps.values()) {
      if (step.root && step.pool !== null) {
        run.promised.add(step.key);
        bump(this.promisedSlots, step.pool, 1);
      }
    }
    this.tally.admitted++;
    this.tally.peakInProgress = Math.max(this.tally.peakInProgress, this.inProgress);
    if (full.length > 0) {
      return { rule: 'over-admission', message: `run ${runId} admitted over its limits: ${full.join('; ')}` };
    }
    return null;
  }

  private count(run: ModelRun, by: 1 | -1): void {
    this.inProgress += by;
    for (const tag of run.tags) {
      bump(this.tagKeyRuns, tag.key, by);
      bump(this.tagValueRuns, `${tag.key}\u0000${tag.value}`, by);
    }
    for (const pool of run.pools) bump(this.poolRuns, pool, by);
  }

  private endPromise(run: ModelRun, stepKey: string): void {
    if (!run.promised.delete(stepKey)) return;
    const pool = run.steps.get(stepKey)?.pool ?? null;
    if (pool !== null) bump(this.promisedSlots, pool, -1);
  }

  private endPromises(run: ModelRun): void {
    for (const key of [...run.promised]) this.endPromise(run, key);
  }

  private finish(runId: string, status: string): Breach | null {
    const before = this.ended.get(runId);
    if (before !== undefined) {
      return { rule: 'ended-twice', message: `run ${runId} ends as ${status} after it had ended as ${before}` };
    }
    const run = this.runs.get(runId);
    if (!run) return this.unknown(runId, 'finished');
    if (isLive(run.status)) this.count(run, -1);
    this.endPromises(run);
    this.runs.delete(runId);
    this.ended.set(runId, status);
    if (run.claims.size > 0) this.endedClaims.set(runId, run);
    this.tally.finished++;
    return null;
  }

  private grant(runId: string, stepKey: string, pool: string | null): Breach | null {
    const run = this.runs.get(runId);
    if (!run) return this.unknown(runId, `was granted a slot for step ${stepKey}`);
    if (!isLive(run.status)) {
      return { rule: 'bad-transition', message: `step ${stepKey} of run ${runId} was granted a slot while QUEUED` };
    }
    const claim = run.claims.get(stepKey);
    if (claim?.granted) {
      return { rule: 'bad-transition', message: `step ${stepKey} of run ${runId} was granted a slot it already held` };
    }
    const over: string[] = [];
    if (this.config.granularity === 'OP' && pool !== null) {
      const limit = this.poolLimit(pool);
      const held = this.slotsHeld.get(pool) ?? 0;
      if (limit !== null && held >= limit) over.push(`pool ${pool} limit ${limit} with ${held} slots held`);
    }
    if (run.maxConcurrentSteps !== null && run.holding >= run.maxConcurrentSteps) {
      over.push(`the run's max concurrent steps ${run.maxConcurrentSteps} with ${run.holding} held`);
    }
    if (claim && claim.pool !== null) bump(this.claimsWaiting, claim.pool, -1);
    run.claims.set(stepKey, { pool, granted: true });
    if (pool !== null) bump(this.slotsHeld, pool, 1);
    run.holding++;
    this.endPromise(run, stepKey);
    this.tally.granted++;
    if (over.length > 0) {
      return {
        rule: 'slot-over-limit',
        message: `step ${stepKey} of run ${runId} was granted a slot over ${over.join('; ')}`,
      };
    }
    return null;
  }

  private release(runId: string, stepKey: string): Breach | null {
    const run = this.runs.get(runId) ?? this.endedClaims.get(runId);
    const claim = run?.claims.get(stepKey);
    if (!run || !claim) {
      return {
        rule: 'bad-transition',
        message: `step ${stepKey} of run ${runId} released a slot it neither held nor waited for`,
      };
    }
    if (claim.pool !== null) bump(claim.granted ? this.slotsHeld : this.claimsWaiting, claim.pool, -1);
    if (claim.granted) run.holding--;
    run.claims.delete(stepKey);
    if (run.claims.size === 0) this.endedClaims.delete(runId);
    return null;
  }
}
