/**
 * Sections 19-22: what a command costs as something a deployment can have many of grows, on the
 * pure core (decide + evolve, no I/O). Each dimension is built at a small and a large size and the
 * same commands are timed at both, side by side; the goal is a large/small p50 ratio of at most 1.5.
 *
 *   19  queued runs (10 in progress, the rest blocked by max concurrent runs):
 *       enqueue (joins the queue), finish (admits the head of the queue)
 *       BENCH_QUEUED_SIZES (100,100000)
 *   20  pools with a limit (and 100 admitted runs holding a slot each in pools of their own):
 *       claim and release in one pool, enqueue of a run with a step in a pool, one pool's limit edited
 *       BENCH_POOL_SIZES (100,10000,100000)
 *   21  values of a per-value tag limit (team, limit 1 per value; one run in progress per value):
 *       enqueue blocked by its value, finish that admits the run waiting on the same value
 *       BENCH_TAG_VALUE_SIZES (100,100000)
 *   22  pending step claims (pool gpu, limit 1, one holder, the rest wait):
 *       release (grants the next claim), claim (waits at the back)
 *       BENCH_PENDING_CLAIM_SIZES (100,100000)
 */
import { Core } from './core.js';
import { collect, heading, load, measure, note, ratio, sizes, stats, table, us } from './harness.js';

/** One timed command: `op` runs once per repetition, after `before` (untimed). */
interface Timed {
  name: string;
  op: () => void;
  before?: () => void;
}

/** Builds a core at `n`, returns the commands to time on it. */
type Setup = (n: number) => Timed[];

const REPS = { minReps: 200, maxReps: 500, budgetMs: 500 } as const;

/** Times every command of `setup` at each size; one row per size, then the large/small ratios. */
function compare(dimension: string, counts: number[], setup: Setup): void {
  const p50s = new Map<string, number[]>();
  const rows: Array<Array<string | number>> = [];
  let names: string[] = [];
  // A first round at the smallest size, not reported: otherwise the small size is timed before
  // the JIT has warmed up and the large one looks faster than it is.
  for (const [round, n] of [counts[0] as number, ...counts].entries()) {
    collect();
    const commands = setup(n);
    if (round === 0) {
      for (const command of commands)
        measure(command.op, { ...REPS, ...(command.before ? { before: command.before } : {}) });
      continue;
    }
    names = commands.map((c) => c.name);
    const row: Array<string | number> = [n.toLocaleString('en-US')];
    for (const command of commands) {
      const { p50 } = stats(
        measure(command.op, { ...REPS, ...(command.before ? { before: command.before } : {}) }).wall,
      );
      p50s.set(command.name, [...(p50s.get(command.name) ?? []), p50]);
      row.push(us(p50));
    }
    rows.push(row);
  }
  table([dimension, ...names.map((name) => `${name} p50 µs`)], rows);
  const last = counts.length - 1;
  if (last === 0) return;
  const r = (name: string) => {
    const list = p50s.get(name) ?? [];
    return ratio(list[last] as number, list[0] as number);
  };
  note(
    `at ${counts[last]?.toLocaleString('en-US')} vs ${counts[0]?.toLocaleString('en-US')} ${dimension}: ${names
      .map((name) => `${name} ${r(name)}`)
      .join(', ')} (goal ≤1.5×). ${load()}.`,
  );
}

/** 10 runs in progress, `queued` blocked behind them. */
const queuedRuns: Setup = (queued) => {
  const core = new Core();
  for (let i = 0; i < 10 + queued; i++) core.enqueue({ runId: `r${i}` });
  let added = 0;
  return [
    { name: 'enqueue', op: () => core.enqueue({ runId: `q${queued}-${added++}` }) },
    {
      name: 'finish (admits the next)',
      op: () => {
        const run = core.firstInProgress();
        if (!run) throw new Error('nothing in progress');
        core.exec({ type: 'MarkRunFinished', runId: run.id, status: 'SUCCESS' });
      },
      // Keeps the queue at its size: each finish admits one.
      before: () => core.enqueue({ runId: `b${queued}-${added++}` }),
    },
  ];
};

/** `pools` pools with a limit of 1; 100 admitted runs each holding the slot of a pool of its own. */
const manyPools: Setup = (pools) => {
  const core = new Core();
  core.exec({ type: 'SetMaxConcurrentRuns', limit: -1 });
  core.exec({ type: 'ChangeConcurrencyConfig', change: { rootStepHold: { enabled: false } } });
  core.exec({
    type: 'ChangeConcurrencyConfig',
    change: { poolLimits: Array.from({ length: pools }, (_, i) => ({ pool: `pool${i}`, limit: 1 })) },
  });
  const holders = Math.min(100, pools);
  for (let i = 0; i < holders; i++) {
    core.enqueue({ runId: `h${i}`, steps: [{ key: 's', pool: `pool${i}` }] });
    core.exec({ type: 'MarkRunStarted', runId: `h${i}` });
    core.exec({ type: 'ClaimStepSlot', runId: `h${i}`, stepKey: 's' });
  }
  const hot = `pool${pools - 1}`;
  core.enqueue({ runId: 'hot', steps: [{ key: 's', pool: hot }] });
  core.exec({ type: 'MarkRunStarted', runId: 'hot' });
  let added = 0;
  let edits = 0;
  return [
    {
      name: 'claim',
      op: () => core.exec({ type: 'ClaimStepSlot', runId: 'hot', stepKey: 's' }),
      before: () => {
        if (core.state.claims.size > holders) core.exec({ type: 'ReleaseStepSlot', runId: 'hot', stepKey: 's' });
      },
    },
    {
      name: 'release',
      op: () => core.exec({ type: 'ReleaseStepSlot', runId: 'hot', stepKey: 's' }),
      before: () => core.exec({ type: 'ClaimStepSlot', runId: 'hot', stepKey: 's' }),
    },
    {
      name: 'enqueue with a step',
      op: () => core.enqueue({ runId: `e${pools}-${added}`, steps: [{ key: 's', pool: `pool${added++ % pools}` }] }),
    },
    { name: 'set one pool limit', op: () => core.exec({ type: 'SetPoolLimit', pool: hot, limit: 1 + (edits++ % 2) }) },
  ];
};

/** A per-value limit of 1 on `team`; `values` teams, each with one run in progress. */
const tagValues: Setup = (values) => {
  const core = new Core();
  core.exec({ type: 'SetMaxConcurrentRuns', limit: -1 });
  core.exec({
    type: 'SetTagConcurrencyLimits',
    limits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 1 }],
  });
  const team = (i: number) => [{ key: 'team', value: `t${i}` }];
  for (let i = 0; i < values; i++) core.enqueue({ runId: `p${i}`, tags: team(i) });
  // Who holds each value's one place, and whether a run waits on it.
  const holder = Array.from({ length: values }, (_, i) => `p${i}`);
  let waiting: string | null = null;
  let next = 0;
  let made = 0;
  return [
    {
      name: 'enqueue (blocked by its value)',
      op: () => {
        const runId = `w${values}-${made++}`;
        core.enqueue({ runId, tags: team(made % values) });
      },
    },
    {
      name: 'finish (admits the same value)',
      before: () => {
        const i = next % values;
        waiting = `f${values}-${made++}`;
        core.enqueue({ runId: waiting, tags: team(i) });
      },
      op: () => {
        const i = next++ % values;
        const events = core.exec({ type: 'MarkRunFinished', runId: holder[i] as string, status: 'SUCCESS' });
        // Runs already blocked on the value (from the enqueue column) go first; whichever was
        // admitted holds it now.
        const admitted = events.find((event) => event.type === 'RunAdmitted');
        holder[i] = admitted?.type === 'RunAdmitted' ? admitted.data.runId : (waiting as string);
      },
    },
  ];
};

/** Pool gpu with a limit of 1; `pending` + 1 admitted runs claim a step in it: one holds, the rest wait. */
const pendingClaims: Setup = (pending) => {
  const core = new Core();
  core.exec({ type: 'SetMaxConcurrentRuns', limit: -1 });
  core.exec({ type: 'SetPoolLimit', pool: 'gpu', limit: 1 });
  core.exec({ type: 'ChangeConcurrencyConfig', change: { rootStepHold: { enabled: false } } });
  for (let i = 0; i <= pending; i++) {
    core.enqueue({ runId: `c${i}`, steps: [{ key: 's', pool: 'gpu' }] });
    // Started, or the start timeout (the core's clock moves a millisecond per command) ends it.
    core.exec({ type: 'MarkRunStarted', runId: `c${i}` });
    core.exec({ type: 'ClaimStepSlot', runId: `c${i}`, stepKey: 's' });
  }
  const holder = () => {
    const [key] = core.state.slotHolders.get('gpu') ?? [];
    const claim = key === undefined ? undefined : core.state.claims.get(key);
    if (!claim) throw new Error('nobody holds the gpu slot');
    return claim;
  };
  // The claim released last, to claim again (it waits at the back, so the count stays put).
  let released: { runId: string; stepKey: string } | null = null;
  return [
    {
      name: 'release (grants the next)',
      op: () => {
        const { runId, stepKey } = holder();
        core.exec({ type: 'ReleaseStepSlot', runId, stepKey });
        released = { runId, stepKey };
      },
      before: () => {
        if (released) core.exec({ type: 'ClaimStepSlot', ...released });
        released = null;
      },
    },
    {
      name: 'claim (waits)',
      before: () => {
        const { runId, stepKey } = holder();
        core.exec({ type: 'ReleaseStepSlot', runId, stepKey });
        released = { runId, stepKey };
      },
      op: () => {
        if (released) core.exec({ type: 'ClaimStepSlot', ...released });
        released = null;
      },
    },
  ];
};

export function queuedRunsSection(): void {
  heading('19. Commands with many queued runs (pure core)');
  compare('queued runs', sizes('BENCH_QUEUED_SIZES', [100, 100_000], 10), queuedRuns);
}

export function poolsSection(): void {
  heading('20. Commands with many pools (pure core; OP granularity, root-step hold off)');
  compare('pools', sizes('BENCH_POOL_SIZES', [100, 10_000, 100_000], 10), manyPools);
}

export function tagValuesSection(): void {
  heading('21. Commands with many values of a per-value tag limit (pure core)');
  compare('tag values', sizes('BENCH_TAG_VALUE_SIZES', [100, 100_000], 10), tagValues);
}

export function pendingClaimsSection(): void {
  heading('22. Commands with many pending step claims (pure core; pool limit 1, root-step hold off)');
  compare('pending claims', sizes('BENCH_PENDING_CLAIM_SIZES', [100, 100_000], 10), pendingClaims);
}
