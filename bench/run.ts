/**
 * Sluice benchmarks: `npm run bench` (or `npx tsx bench/run.ts`). They measure and print; they
 * assert nothing about timings (tests assert behaviour).
 *
 * Environment:
 *   BENCH_SCALE=0.1          every default size times 0.1 (a quick run)
 *   BENCH_SECTIONS=1,2       only these sections (1-23; 4 includes 5)
 *   BENCH_QUEUE_SIZES, BENCH_SLOT_SIZES, BENCH_E2E_COMMANDS, BENCH_REPLAY_EVENTS,
 *   BENCH_RACE_COMMANDS, BENCH_PG_COMMANDS
 *                            explicit sizes (comma separated), overriding the scaled defaults
 *   BENCH_CHILD_PROF=DIR     servers and other children write a CPU profile into DIR as they exit
 *
 * The scale sections (servers and long logs in child processes of their own):
 *   7   enqueue throughput over HTTP vs a bare graphql-yoga server, event-loop stalls
 *       BENCH_HTTP_CLIENTS (1,10,50), BENCH_HTTP_ROUNDS (3), BENCH_HTTP_ROUND_MS (3000)
 *   8   events appended per markRunFinished as the queue grows, per-team tag limits
 *   9   finish-to-next-admission latency seen by a dequeueDecisions subscriber
 *       8 and 9: BENCH_FINISH_QUEUES (100,10000,100000), BENCH_FINISHES (10)
 *   10  heap after GC and RSS after a long history: BENCH_HISTORY_RUNS (10000,100000,1000000);
 *       BENCH_HISTORY_OPEN=sluice measures Sluice.open without checkpoints instead of startServer
 *   11  time to ready on a long log: BENCH_READY_EVENTS (1000000)
 *       10 and 11: BENCH_CHILD_TIMEOUT_S (180), the most one measurement may take
 *   12  several servers on PostgreSQL beside one SQLite file: BENCH_PG_COMMANDS
 *   14  waitReport over a week of finished runs: BENCH_REPORT_RUNS (1000000)
 *   15  replayWhatIf over a window of runs: BENCH_REPLAY_RUNS (100000)
 *   16  commands with many runs in progress: BENCH_IN_PROGRESS_SIZES (100,100000)
 *   17  enqueues with many SSE subscribers: BENCH_SUBSCRIBERS (1,1000), BENCH_FANOUT_ENQUEUES (1000)
 *   18  stalls (longest /health wait) while the log grows, under 50 clients, behind a large read: BENCH_STALL_MS
 *   19-23 a command at 100 and at 100,000 of one dimension, p50 side by side (goal ≤1.5×):
 *   19  queued runs: BENCH_QUEUED_SIZES (100,100000)
 *   20  pools: BENCH_POOL_SIZES (100,10000,100000)
 *   21  values of a per-value tag limit: BENCH_TAG_VALUE_SIZES (100,100000)
 *   22  pending step claims: BENCH_PENDING_CLAIM_SIZES (100,100000)
 *   23  finished runs in the history read model: BENCH_HISTORY_SIZES (100,100000)
 */
import { cpus, platform, release } from 'node:os';
import { admissionSection } from './admission.js';
import { pendingClaimsSection, poolsSection, queuedRunsSection, tagValuesSection } from './dimensions.js';
import { e2eSection } from './e2e.js';
import { stallsSection, subscribersSection } from './fan-out.js';
import { finishSections } from './finish.js';
import { fmt, load, memoryMetric, SCALE, sectionEnabled } from './harness.js';
import { memorySection, readySection } from './history.js';
import { historySizeSection } from './history-size.js';
import { inProgressSection } from './in-progress.js';
import { waitReportSection } from './insight.js';
import { postgresSection } from './postgres.js';
import { raceSection } from './race.js';
import { replaySections } from './replay.js';
import { rootStepHoldSection } from './root-step-hold.js';
import { slotsSection } from './slots.js';
import { throughputSection } from './throughput.js';
import { whatIfSection } from './what-if.js';

const started = performance.now();
console.log('# Sluice benchmarks');
console.log(
  `node ${process.version}, ${platform()} ${release()}, ${cpus()[0]?.model ?? 'unknown CPU'} ×${cpus().length}; ` +
    `BENCH_SCALE=${SCALE}; ${load()}; memory metric: ${memoryMetric}`,
);
console.log('Timings are wall clock unless marked CPU; on a shared machine compare the CPU figures too.');

if (sectionEnabled(1)) admissionSection();
if (sectionEnabled(2)) slotsSection();
if (sectionEnabled(3)) await e2eSection();
if (sectionEnabled(4) || sectionEnabled(5)) await replaySections();
if (sectionEnabled(6)) await raceSection();
if (sectionEnabled(7)) await throughputSection();
if (sectionEnabled(8) || sectionEnabled(9)) await finishSections(sectionEnabled(8), sectionEnabled(9));
if (sectionEnabled(10)) await memorySection();
if (sectionEnabled(11)) await readySection();
if (sectionEnabled(12)) await postgresSection();
if (sectionEnabled(13)) await rootStepHoldSection();
if (sectionEnabled(14)) waitReportSection();
if (sectionEnabled(15)) whatIfSection();
if (sectionEnabled(16)) inProgressSection();
if (sectionEnabled(17)) await subscribersSection();
if (sectionEnabled(18)) await stallsSection();
if (sectionEnabled(19)) queuedRunsSection();
if (sectionEnabled(20)) poolsSection();
if (sectionEnabled(21)) tagValuesSection();
if (sectionEnabled(22)) pendingClaimsSection();
if (sectionEnabled(23)) historySizeSection();

console.log(`\nDone in ${fmt((performance.now() - started) / 1000)} s; ${load()} at the end.`);
