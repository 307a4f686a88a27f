/**
 * Section 15: replayWhatIf over a window of 100,000 runs (BENCH_REPLAY_RUNS): the pure replay
 * (src/insight/replay.ts) of a log written in-process by the decider, with no change, with max
 * concurrent runs raised and with the per-team limit raised, and the heap its result holds.
 *
 * The log: max concurrent runs 20, a limit of 4 per team (10 teams), runs arriving every 0.4 s
 * and running 2-8 s once admitted, so a queue forms and drains all along.
 */
import { evolve } from '../projections/evolve.js';
import { initialState, type State } from '../projections/state.js';
import type { Command, ConfigChangeInput } from '../src/domain/commands.js';
import { decide } from '../src/domain/decide.js';
import type { LoggedEvent } from '../src/domain/events.js';
import { replayWindow } from '../src/insight/replay.js';
import { prng } from '../test/support/prng.js';
import { bytes, collect, fmt, fmtInt, heading, load, note, now, retainedBytes, size, table } from './harness.js';

const START = Date.parse('2026-11-02T00:00:00.000Z');

export function writeLog(runs: number): LoggedEvent[] {
  const random = prng(15);
  const state: State = initialState();
  const log: LoggedEvent[] = [];
  const finishes: Array<{ atMs: number; runId: string }> = [];
  const run = (command: Command, atMs: number) => {
    const at = new Date(atMs).toISOString();
    for (const event of decide(command, state, { now: at, newRunId: 'x' })) {
      const logged = { ...event, revision: state.revision + 1n, at, actor: 'bench' } as LoggedEvent;
      evolve(state, logged);
      log.push(logged);
      if (logged.type === 'RunAdmitted') {
        finishes.push({ atMs: atMs + 2000 + Math.floor(random() * 6000), runId: logged.data.runId });
      }
    }
  };
  run({ type: 'SetMaxConcurrentRuns', limit: 20 }, START);
  run({ type: 'SetTagConcurrencyLimits', limits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 4 }] }, START);
  for (let i = 0; i < runs; i++) {
    const atMs = START + 1000 + i * 400;
    finishes.sort((a, b) => a.atMs - b.atMs);
    while (finishes.length > 0 && (finishes[0] as { atMs: number }).atMs <= atMs) {
      const f = finishes.shift() as { atMs: number; runId: string };
      run({ type: 'MarkRunFinished', runId: f.runId, status: 'SUCCESS' }, f.atMs);
    }
    const input = {
      runId: `run-${i}`,
      jobName: `job-${i % 7}`,
      tags: [{ key: 'team', value: `t${Math.floor(random() * 10)}` }],
      steps: [],
      priority: null,
    };
    run({ type: 'EnqueueRun', input }, atMs);
  }
  return log;
}

export function whatIfSection(): void {
  heading('15. replayWhatIf over a window of 100,000 runs (the pure replay through the decider)');
  const runs = size('BENCH_REPLAY_RUNS', 100_000);
  const t0 = now();
  const log = writeLog(runs);
  const fromMs = START;
  const toMs = Date.parse((log.at(-1) as LoggedEvent).at) + 60_000;
  note(`log of ${fmtInt(runs)} runs, ${fmtInt(log.length)} events, written in ${fmt((now() - t0) / 1000)} s`);
  const rows: Array<Array<string | number>> = [];
  const changes: Array<[string, ConfigChangeInput]> = [
    ['no change', {}],
    ['max concurrent runs 20 → 30', { maxConcurrentRuns: 30 }],
    [
      'team limit 4 → 6 per value',
      { tagConcurrencyLimits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 6 }] },
    ],
  ];
  for (const [name, change] of changes) {
    collect();
    const before = retainedBytes();
    const cpu0 = process.cpuUsage();
    const w0 = now();
    const result = replayWindow({ start: initialState(), events: log, change, fromMs, toMs });
    const wall = now() - w0;
    const cpu = process.cpuUsage(cpu0);
    const peak = retainedBytes() - before;
    rows.push([
      name,
      wall / 1000,
      (cpu.user + cpu.system) / 1e6,
      bytes(peak),
      fmt(result.waitSeconds / 3600),
      fmtInt(result.runs),
      fmtInt(result.replayedEvents),
    ]);
  }
  table(
    ['change', 'wall s', 'CPU s', 'heap held by the result', 'run-hours waited', 'runs waited', 'replayed events'],
    rows,
  );
  note(`(heap: measured after a full GC with the replay's result still referenced; ${load()})`);
}
