/**
 * Section 1: admission cost per command against the queue's length, pure core (no I/O).
 *
 * The state: maxConcurrentRuns 10, full (2 of the in-progress runs carry team=etl, whose tag
 * limit of 2 is full too); a queue of N held runs, every 10th tagged team=etl (held by both
 * limits), and 5 low-priority runs tagged `backfill` (a key with a limit of its own that few
 * runs carry). Each measured command is followed by untimed work that puts the queue back to N.
 */
import type { TagConcurrencyLimitInput } from '../src/domain/commands.js';
import { Core, hasTag } from './core.js';
import {
  collect,
  fmt,
  heading,
  load,
  measure,
  note,
  now,
  ratio,
  type Samples,
  sizes,
  stats,
  table,
  us,
} from './harness.js';

const limitsWith = (backfill: number): TagConcurrencyLimitInput[] => [
  { key: 'team', value: 'etl', limit: 2 },
  { key: 'backfill', limit: backfill },
];

function build(queueLength: number) {
  const core = new Core();
  core.exec({ type: 'SetTagConcurrencyLimits', limits: limitsWith(5) });
  let n = 0;
  const nextRun = (etlShare = true) => {
    const i = n++;
    return { runId: `r${i}`, tags: etlShare && i % 10 === 0 ? [{ key: 'team', value: 'etl' }] : [] };
  };
  // A replacement for an admitted run (never etl-tagged), so the queue's make-up stays put.
  const replacement = () => nextRun(false);
  // Fill maxConcurrentRuns (10): 2 etl runs (which never finish here) and 8 others.
  for (let i = 0; i < 2; i++) core.enqueue({ runId: `etl-busy-${i}`, tags: [{ key: 'team', value: 'etl' }] });
  for (let i = 0; i < 8; i++) core.enqueue({ runId: `busy-${i}` });
  for (let i = 0; i < 5; i++) core.enqueue({ runId: `bf-${i}`, priority: -1, tags: [{ key: 'backfill', value: 'x' }] });
  while (core.state.queue.size < queueLength) core.enqueue(nextRun());
  return { core, replacement };
}

function describeCounts(counts: number[]): string {
  const min = Math.min(...counts);
  const max = Math.max(...counts);
  return min === max ? String(min) : `${fmt(counts.reduce((a, b) => a + b, 0) / counts.length)} (${min}-${max})`;
}

interface Row {
  size: number;
  buildMs: number;
  finish: Samples;
  enqueue: Samples;
  tagEdit: Samples;
  raise: Samples;
  events: { finish: number[]; enqueue: number[]; tagEdit: number[]; raise: number[] };
}

function runSize(queueLength: number): Row {
  const t0 = now();
  const { core, replacement } = build(queueLength);
  const buildMs = now() - t0;
  const events = { finish: [] as number[], enqueue: [] as number[], tagEdit: [] as number[], raise: [] as number[] };
  const budget = { budgetMs: 400, minReps: 10, maxReps: 3_000 };

  // (b) enqueue one more held run; untimed: terminate it (a queued run's end is O(1)).
  let extra = 0;
  let lastId = '';
  const enqueue = measure(
    () => {
      lastId = `extra-${extra++}`;
      events.enqueue.push(core.enqueue({ runId: lastId }).length);
    },
    { ...budget, after: () => core.exec({ type: 'TerminateRun', runId: lastId }) },
  );

  // (c) edit the limit of a tag key only the 5 backfill runs carry (5 <-> 6).
  let backfill = 5;
  const tagEdit = measure(() => {
    backfill = backfill === 5 ? 6 : 5;
    events.tagEdit.push(core.exec({ type: 'SetTagConcurrencyLimits', limits: limitsWith(backfill) }).length);
  }, budget);

  // (a) finish one in-progress run: the next queued run is admitted. Untimed: enqueue one.
  let victim = '';
  const finish = measure(
    () => {
      events.finish.push(core.exec({ type: 'MarkRunFinished', runId: victim, status: 'SUCCESS' }).length);
    },
    {
      ...budget,
      before: () => {
        const run = core.firstInProgress((r) => !hasTag(r, 'team'));
        if (!run) throw new Error('no in-progress run to finish');
        victim = run.id;
      },
      after: () => core.enqueue(replacement()),
    },
  );

  // Raise maxConcurrentRuns by one: admits one run, and must look at every held run.
  const raise = measure(
    () => {
      const limit = core.state.config.maxConcurrentRuns + 1;
      events.raise.push(core.exec({ type: 'SetMaxConcurrentRuns', limit }).length);
    },
    { ...budget, maxReps: 200, after: () => core.enqueue(replacement()) },
  );
  if (core.state.queue.size !== queueLength) throw new Error(`queue drifted to ${core.state.queue.size}`);
  return { size: queueLength, buildMs, finish, enqueue, tagEdit, raise, events };
}

/** "wall p50 / cpu p50" in µs. */
export const cell = (s: Samples): string => `${us(stats(s.wall).p50)} / ${us(stats(s.cpu).p50)}`;
/** Ratio of p50s, wall / cpu. */
export const ratios = (big: Samples, small: Samples): string =>
  `${ratio(stats(big.wall).p50, stats(small.wall).p50)} / ${ratio(stats(big.cpu).p50, stats(small.cpu).p50)}`;

export function admissionSection(): void {
  heading('1. Admission cost per command vs queue length (pure core: decide + evolve, no I/O)');
  const queueSizes = sizes('BENCH_QUEUE_SIZES', [100, 1_000, 10_000, 50_000], 10);
  note('maxConcurrentRuns 10 full; 10% of held runs tagged team=etl (tag limit 2, full); 5 runs tagged backfill.');
  note(`µs per command: wall p50 / CPU p50 (${load()} at start).`);
  console.log();
  const rows: Row[] = [];
  for (const n of queueSizes) {
    collect();
    rows.push(runSize(n));
  }
  table(
    [
      'queue',
      'build s',
      '(a) finish+admit',
      '(b) enqueue held',
      '(c) rare tag edit',
      'raise maxCR [O(queue)]',
      'reps a/b/c/r',
    ],
    rows.map((r) => [
      r.size.toLocaleString('en-US'),
      fmt(r.buildMs / 1000),
      cell(r.finish),
      cell(r.enqueue),
      cell(r.tagEdit),
      cell(r.raise),
      `${r.finish.wall.length}/${r.enqueue.wall.length}/${r.tagEdit.wall.length}/${r.raise.wall.length}`,
    ]),
  );
  const first = rows[0];
  const last = rows.at(-1);
  if (first && last && rows.length > 1) {
    console.log();
    table(
      ['largest/smallest, wall / CPU', '(a) finish+admit', '(b) enqueue held', '(c) rare tag edit', 'raise maxCR'],
      [
        [
          `queue ×${fmt(last.size / first.size)}`,
          ratios(last.finish, first.finish),
          ratios(last.enqueue, first.enqueue),
          ratios(last.tagEdit, first.tagEdit),
          ratios(last.raise, first.raise),
        ],
      ],
    );
  }
  console.log();
  table(
    ['events per command', '(a) finish+admit', '(b) enqueue held', '(c) rare tag edit', 'raise maxCR'],
    rows.map((r) => [
      `queue ${r.size.toLocaleString('en-US')}`,
      describeCounts(r.events.finish),
      describeCounts(r.events.enqueue),
      describeCounts(r.events.tagEdit),
      describeCounts(r.events.raise),
    ]),
  );
  note(
    'expected: (a) 2 = RunFinished + RunAdmitted; (b) 2 = RunEnqueued + RunBlocked; (c) 1 = TagConcurrencyLimitsSet;',
  );
  note('raise 2 = MaxConcurrentRunsSet + RunAdmitted (held runs whose holding limits did not change record nothing).');
}
