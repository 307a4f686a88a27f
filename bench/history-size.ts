/**
 * Section 23: what a command costs as the history read model grows (finished runs in the SQLite
 * file the server writes every durable event to). The command's events go through the pure core
 * and then into the history store, as a server hands them over (one transaction per command
 * here; a server batches several). Side by side at a small and a large history; goal: a
 * large/small p50 ratio of at most 1.5.
 *
 *   BENCH_HISTORY_SIZES (100,100000)   finished runs in the history
 */
import { join } from 'node:path';
import { openHistoryStore, totalName } from '../src/history/history-store.js';
import { Core } from './core.js';
import { collect, fmt, heading, load, measure, note, now, ratio, sizes, stats, table, tempDir, us } from './harness.js';

const BATCH = 5_000;

export function historySizeSection(): void {
  heading('23. Commands with a long history (pure core + the history read model on a SQLite file)');
  const counts = sizes('BENCH_HISTORY_SIZES', [100, 100_000], 10);
  const dir = tempDir();
  const rows: Array<Array<string | number>> = [];
  const p50s: Record<'enqueue' | 'finish', number[]> = { enqueue: [], finish: [] };
  // A first round at the smallest size, not reported: the JIT warms up on it.
  for (const [round, n] of [counts[0] as number, ...counts].entries()) {
    collect();
    const core = new Core({ keepLog: true });
    const history = openHistoryStore(join(dir, `history-${round}-${n}.db`));
    const log = core.log as NonNullable<typeof core.log>;
    // Hands the events logged since the last call to the history, in one transaction.
    const flush = () => {
      history.apply(log);
      log.length = 0;
    };
    const b0 = now();
    for (let i = 0; i < n; i++) {
      core.enqueue({ runId: `h${i}` });
      core.exec({ type: 'MarkRunStarted', runId: `h${i}` });
      core.exec({ type: 'MarkRunFinished', runId: `h${i}`, status: 'SUCCESS' });
      if (log.length >= BATCH) flush();
    }
    flush();
    const buildS = (now() - b0) / 1000;
    let made = 0;
    const enqueue = stats(
      measure(
        () => {
          core.enqueue({ runId: `e${made++}` });
          flush();
        },
        {
          minReps: 200,
          maxReps: 500,
          budgetMs: 500,
          after: () => core.exec({ type: 'MarkRunFinished', runId: `e${made - 1}`, status: 'SUCCESS' }),
        },
      ).wall,
    );
    flush();
    let started = 0;
    const finish = stats(
      measure(
        () => {
          core.exec({ type: 'MarkRunFinished', runId: `f${started - 1}`, status: 'SUCCESS' });
          flush();
        },
        {
          minReps: 200,
          maxReps: 500,
          budgetMs: 500,
          before: () => {
            core.enqueue({ runId: `f${started}` });
            core.exec({ type: 'MarkRunStarted', runId: `f${started++}` });
            flush();
          },
        },
      ).wall,
    );
    const finished = history.total(totalName.runs('SUCCESS'));
    history.close();
    if (round === 0) continue;
    p50s.enqueue.push(enqueue.p50);
    p50s.finish.push(finish.p50);
    rows.push([
      n.toLocaleString('en-US'),
      finished.toLocaleString('en-US'),
      fmt(buildS),
      us(enqueue.p50),
      us(finish.p50),
    ]);
  }
  table(['finished runs', 'in the history at the end', 'build s', 'enqueue p50 µs', 'finish p50 µs'], rows);
  const last = counts.length - 1;
  if (last > 0) {
    const r = (key: 'enqueue' | 'finish') => ratio(p50s[key][last] as number, p50s[key][0] as number);
    note(
      `at ${counts[last]?.toLocaleString('en-US')} vs ${counts[0]?.toLocaleString('en-US')} finished runs: enqueue ${r('enqueue')}, finish ${r('finish')} (goal ≤1.5×). ${load()}.`,
    );
  }
}
