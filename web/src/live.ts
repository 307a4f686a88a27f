/**
 * The page's one view of the log: every event through the `events` subscription. Pages refetch
 * what they show when it moves; the chart of queue length and runs in progress is folded from
 * the events themselves, starting from a snapshot at the start of its window.
 */
import { follow, gql, session } from './api';

export interface LogEvent {
  position: string;
  at: string;
  actor: string;
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: each event type has its own data
  data: any;
}

export interface Point {
  /** Seconds since the epoch, as uPlot wants. */
  t: number;
  queued: number;
  inProgress: number;
}

/** The chart covers the last hour of the log. */
export const CHART_WINDOW_MS = 60 * 60 * 1000;
const MAX_POINTS = 5_000;

type Listener = () => void;
const listeners = new Set<Listener>();

export const live = {
  /** Position of the last event seen; null until the first snapshot is in. */
  position: null as string | null,
  /** Bumped on every event: pages refetch when it changes. */
  version: 0,
  points: [] as Point[],
  error: null as string | null,
};

const queued = new Set<string>();
const inProgress = new Set<string>();

function point(at: string) {
  const t = Date.parse(at) / 1000;
  const last = live.points.at(-1);
  const next = { t, queued: queued.size, inProgress: inProgress.size };
  // Several events of one append share an instant: keep the state after the last of them.
  if (last && last.t === t) live.points[live.points.length - 1] = next;
  else live.points.push(next);
  if (live.points.length > MAX_POINTS) live.points.splice(0, live.points.length - MAX_POINTS);
}

/** How an event moves the two counts the chart draws (only these event types move them). */
function fold(event: LogEvent) {
  const runId = event.data?.runId as string | undefined;
  if (!runId) return;
  if (event.type === 'RunEnqueued') queued.add(runId);
  else if (event.type === 'RunAdmitted') {
    queued.delete(runId);
    inProgress.add(runId);
  } else if (event.type === 'RunFinished') {
    queued.delete(runId);
    inProgress.delete(runId);
  }
}

export function onLive(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed() {
  live.version++;
  for (const listener of listeners) listener();
}

let started = false;

/** Starts following the log once for the page's lifetime; retries until the server answers. */
export async function startLive(): Promise<void> {
  if (started) return;
  started = true;
  for (;;) {
    try {
      const since = new Date(Date.now() - CHART_WINDOW_MS).toISOString();
      const data = await gql<{
        snapshot: { position: string; at: string; queue: { id: string }[]; inProgress: { id: string }[] };
      }>('query($at: DateTime) { snapshot(at: $at) { position at queue { id } inProgress { id } } }', { at: since });
      for (const run of data.snapshot.queue) queued.add(run.id);
      for (const run of data.snapshot.inProgress) inProgress.add(run.id);
      live.position = data.snapshot.position;
      // A log younger than the window starts the chart at its first event, not at an empty hour.
      if (data.snapshot.position !== '-1') point(since);
      break;
    } catch {
      if (session.needsToken) return void (started = false);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
  changed();
  let pending = false;
  follow<LogEvent>({
    query: 'subscription($after: String) { events(after: $after) { position at actor type data } }',
    after: () => live.position,
    position: (event) => event.position,
    next: (event) => {
      fold(event);
      point(event.at);
      live.position = event.position;
      live.error = null;
      // A burst of events (one append, a replay) wakes the pages once.
      if (!pending) {
        pending = true;
        setTimeout(() => {
          pending = false;
          changed();
        }, 100);
      }
    },
    error: (message) => {
      // The server's log no longer reaches where this page was (a restored backup, another log):
      // what the page holds is not that log's story, so start again from it.
      if (message.includes('is not in the log')) location.reload();
      live.error = message;
      changed();
    },
  });
}
