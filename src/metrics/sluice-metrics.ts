/**
 * Sluice's Prometheus metrics. Gauges read the live state when scraped; counters and
 * histograms are fed as things happen: events folded in (from this server or another one on
 * the same store), commands answered, appends made, subscriptions opened and closed.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CommandRecord, Sluice } from '../app/sluice.js';
import { timeoutKindOf } from '../domain/deadlines.js';
import type { LoggedEvent } from '../domain/events.js';
import type { RunStatus } from '../domain/run.js';
import { DEFAULT_CAPS, liveRunCounts, poolSeries, runLimitSeries, type SeriesCaps } from './live-series.js';

export interface SluiceMetricsOptions {
  /** Where the metrics register; default a new registry of their own. */
  registry?: Registry;
  /** Caps on label values users choose; see live-series. */
  caps?: Partial<SeriesCaps>;
  /** Also collect prom-client's process metrics (CPU, memory, event loop, GC); default true. */
  processMetrics?: boolean;
}

export interface SluiceMetrics {
  readonly registry: Registry;
  /** For SluiceOptions.onCommand. */
  recordCommand(record: CommandRecord): void;
  /** For timeAppends. */
  recordAppend(seconds: number): void;
  subscriptionOpened(): void;
  subscriptionClosed(): void;
  /** Starts reading this server's state and events; answers a function that stops it. */
  follow(sluice: Sluice): () => void;
}

const FINISHED: readonly RunStatus[] = ['SUCCESS', 'FAILURE', 'CANCELED'];
const DECISION_KINDS = {
  RunAdmitted: 'ADMITTED',
  RunBlocked: 'BLOCKED',
  StepSlotGranted: 'SLOT_GRANTED',
  StepSlotPending: 'SLOT_PENDING',
} as const;
/** From a millisecond to ten minutes: commands and appends. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 600];
/** From a second to a day: how long runs wait in the queue. */
const WAIT_BUCKETS = [0.1, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14_400, 43_200, 86_400];

export function createSluiceMetrics(options: SluiceMetricsOptions = {}): SluiceMetrics {
  const registry = options.registry ?? new Registry();
  const caps = { ...DEFAULT_CAPS, ...options.caps };
  const registers = [registry];
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  let sluice: Sluice | null = null;
  const finished = new Map<RunStatus, number>();
  /** False until the finished counts are read from the history (it catches up after a start): none reported until then. */
  let countsKnown = false;

  new Gauge({
    name: 'sluice_runs',
    help: 'Runs in the log per status, finished ones included.',
    labelNames: ['status'],
    registers,
    collect() {
      this.reset();
      if (sluice === null) return;
      for (const [status, count] of Object.entries(liveRunCounts(sluice.state))) this.set({ status }, count);
      if (countsKnown) for (const status of FINISHED) this.set({ status }, finished.get(status) ?? 0);
    },
  });
  new Gauge({
    name: 'sluice_queue_length',
    help: 'Runs waiting in the queue (QUEUED).',
    registers,
    collect() {
      if (sluice !== null) this.set(sluice.state.queue.size);
    },
  });
  /** A gauge whose series are read from the live state at each scrape. */
  const liveGauge = <T>(
    name: string,
    help: string,
    label: readonly string[],
    series: (state: Sluice['state']) => T[],
    toSample: (item: T) => { labels: Record<string, string>; value: number } | null,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: label,
      registers,
      collect() {
        this.reset();
        if (sluice === null) return;
        for (const item of series(sluice.state)) {
          const sample = toSample(item);
          if (sample !== null) this.set(sample.labels, sample.value);
        }
      },
    });
  const limitLabels = ['kind', 'key', 'value'] as const;
  const runLimits = (state: Sluice['state']) => runLimitSeries(state, caps);
  const pools = (state: Sluice['state']) => poolSeries(state, caps);
  liveGauge(
    'sluice_run_limit',
    `Run limits in force (-1: none). kind: max_concurrent_runs, tag_value, tag_key (any value), tag_per_value (the ${caps.tagValuesPerLimit} values with most runs in progress, the rest summed as value __other__).`,
    limitLabels,
    runLimits,
    (s) => ({ labels: { kind: s.kind, key: s.key, value: s.value }, value: s.limit }),
  );
  liveGauge(
    'sluice_run_limit_in_use',
    'Runs in progress counted against each run limit of sluice_run_limit.',
    limitLabels,
    runLimits,
    (s) => ({ labels: { kind: s.kind, key: s.key, value: s.value }, value: s.inUse }),
  );
  liveGauge(
    'sluice_pool_limit',
    `Limit of each pool (its own, else the default; -1: unlimited), for the ${caps.pools} busiest pools.`,
    ['pool'],
    pools,
    (s) => (s.limit === null ? null : { labels: { pool: s.pool }, value: s.limit }),
  );
  liveGauge(
    'sluice_pool_slots_in_use',
    `Slots of each pool held by steps (OP granularity), or runs in progress using it (RUN); past the ${caps.pools} busiest pools, summed as pool __other__.`,
    ['pool'],
    pools,
    (s) => ({ labels: { pool: s.pool }, value: s.inUse }),
  );
  liveGauge(
    'sluice_pool_slots_pending',
    'Step claims waiting for a slot of each pool (OP granularity), or runs the pool holds (RUN); same pools as sluice_pool_slots_in_use.',
    ['pool'],
    pools,
    (s) => ({ labels: { pool: s.pool }, value: s.pending }),
  );
  liveGauge(
    'sluice_pool_slots_promised',
    "Root steps of runs admitted but not yet claiming, counted as holding a slot of each pool by the root-step hold (OP granularity; Dagster's block_op_concurrency_limited_runs); same pools as sluice_pool_slots_in_use.",
    ['pool'],
    pools,
    (s) => ({ labels: { pool: s.pool }, value: s.promised }),
  );
  new Gauge({
    name: 'sluice_log_position',
    help: 'Position of the last event this server has folded in (-1: empty log).',
    registers,
    collect() {
      if (sluice !== null) this.set(Number(sluice.state.revision));
    },
  });
  const subscriptions = new Gauge({
    name: 'sluice_subscriptions',
    help: 'GraphQL subscriptions open now (SSE and WebSocket).',
    registers,
  });
  const decisions = new Counter({
    name: 'sluice_decisions_total',
    help: 'Decisions recorded since this server started, per kind.',
    labelNames: ['kind'],
    registers,
  });
  const commands = new Counter({
    name: 'sluice_commands_total',
    help: 'Commands this server answered, per command and outcome (ok, rejected, error).',
    labelNames: ['command', 'outcome'],
    registers,
  });
  const commandDuration = new Histogram({
    name: 'sluice_command_duration_seconds',
    help: 'Time from a command being called to its answer, waiting for earlier commands included.',
    labelNames: ['command'],
    buckets: DURATION_BUCKETS,
    registers,
  });
  const queueWait = new Histogram({
    name: 'sluice_queue_wait_seconds',
    help: 'Time runs waited from enqueue to admission, per admission recorded since this server started.',
    buckets: WAIT_BUCKETS,
    registers,
  });
  const appendDuration = new Histogram({
    name: 'sluice_store_append_duration_seconds',
    help: 'Time each append to the event store took, failed ones included.',
    buckets: DURATION_BUCKETS,
    registers,
  });
  const timeouts = new Counter({
    name: 'sluice_timeouts_total',
    help: 'Runs ended by run monitoring since this server started: start_timeout, cancel_timeout, max_runtime, lease_expired.',
    labelNames: ['reason'],
    registers,
  });

  const onEvent = (event: LoggedEvent) => {
    if (event.type in DECISION_KINDS)
      decisions.inc({ kind: DECISION_KINDS[event.type as keyof typeof DECISION_KINDS] });
    if (event.type === 'RunAdmitted') {
      // An admitted run is in progress: it is live state.
      const run = sluice?.state.runs.get(event.data.runId);
      if (run) queueWait.observe(Math.max(0, Date.parse(event.at) - Date.parse(run.enqueuedAt)) / 1000);
    }
    if (event.type === 'RunFinished') {
      if (countsKnown) finished.set(event.data.status, (finished.get(event.data.status) ?? 0) + 1);
      const kind = event.data.reason === null ? null : timeoutKindOf(event.data.reason);
      if (kind !== null) timeouts.inc({ reason: kind });
    }
  };

  return {
    registry,
    recordCommand(record) {
      commands.inc({ command: record.command, outcome: record.outcome });
      commandDuration.observe({ command: record.command }, record.durationMs / 1000);
    },
    recordAppend: (seconds) => appendDuration.observe(seconds),
    subscriptionOpened: () => subscriptions.inc(),
    subscriptionClosed: () => subscriptions.dec(),
    follow(followed) {
      // Read the counts and attach the listener in one synchronous step: no event falls between.
      // Right after a start the counts wait for the history read model to catch up with the log.
      sluice = followed;
      countsKnown = false;
      const stop = followed.onEvent(onEvent);
      followed.whenHistoryCaughtUp(() => {
        if (sluice !== followed) return;
        const counts = followed.runCountsByStatus();
        for (const status of FINISHED) finished.set(status, counts[status]);
        countsKnown = true;
      });
      return () => {
        stop();
        sluice = null;
      };
    },
  };
}
