/** `sluice why RUN_ID` and `sluice snapshot`: the audit trail, read as a person would. */
import { CliError, graphql } from './client.js';
import { type CommandOutput, output } from './command.js';
import { formatPool } from './concurrency.js';

interface Reason {
  message: string;
}

interface RunTimeline {
  id: string;
  jobName: string;
  status: string;
  priority: number;
  tags: Array<{ key: string; value: string }>;
  pools: string[];
  enqueuedAt: string;
  admittedAt: string | null;
  startedAt: string | null;
  cancelRequestedAt: string | null;
  finishedAt: string | null;
  finishReason: string | null;
  failureReason?: string | null;
  ignoredTags?: Array<{ key: string; reason: string }>;
  waits: Array<{ from: string; to: string | null; reasons: Reason[] }>;
  decisions: Array<{ at: string; kind: string; stepKey: string | null; pool: string | null; reasons: Reason[] }>;
}

/** 2h 3m 4s; 1.5s below a minute. */
export function formatDuration(ms: number): string {
  // Below a minute, tenths of a second; what rounds to 60.0 s reads as 1m.
  if (Math.round(ms / 100) < 600) return `${Math.round(ms / 100) / 10}s`;
  const seconds = Math.round(ms / 1000);
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return [h ? `${h}h` : '', m ? `${m}m` : '', s ? `${s}s` : ''].filter(Boolean).join(' ');
}

const reasons = (list: Reason[]) => list.map((r) => r.message).join('; ');

export function formatTimeline(run: RunTimeline, now: Date): string {
  const entries: Array<{ at: string; order: number; text: string }> = [];
  const add = (at: string | null, order: number, text: string) => {
    if (at !== null) entries.push({ at, order, text });
  };
  add(run.enqueuedAt, 0, 'enqueued');
  let waited = 0;
  for (const wait of run.waits) {
    const end = wait.to === null ? now.getTime() : Date.parse(wait.to);
    const duration = end - Date.parse(wait.from);
    waited += duration;
    const still = wait.to === null ? ' so far, still waiting' : '';
    add(wait.from, 1, `waited ${formatDuration(duration)}${still}: ${reasons(wait.reasons)}`);
  }
  add(run.admittedAt, 2, 'admitted (STARTING)');
  add(run.startedAt, 3, 'started');
  for (const d of run.decisions) {
    if (d.kind === 'SLOT_GRANTED') add(d.at, 4, `step ${d.stepKey} got a slot${d.pool ? ` of pool ${d.pool}` : ''}`);
    if (d.kind === 'SLOT_PENDING') add(d.at, 4, `step ${d.stepKey} waits for a slot: ${reasons(d.reasons)}`);
  }
  add(run.cancelRequestedAt, 5, 'termination requested (CANCELING)');
  const named = run.failureReason ? ` [${run.failureReason}]` : '';
  add(run.finishedAt, 6, `finished ${run.status}${run.finishReason ? ` (${run.finishReason})` : ''}${named}`);
  entries.sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.order - b.order);

  const tags = run.tags.map((t) => `${t.key}=${t.value}`).join(', ') || 'none';
  const header = [
    `run ${run.id}: job ${run.jobName}, ${run.status}, priority ${run.priority}`,
    `  tags: ${tags}; pools: ${run.pools.join(', ') || 'none'}`,
    ...(run.ignoredTags ?? []).map((t) => `  tag ${t.key} ignored: ${t.reason}`),
  ];
  const lines = entries.map((e) => `${e.at}  ${e.text}`);
  const summary = run.waits.length
    ? `waited ${formatDuration(waited)} in all, in ${run.waits.length} stretch${run.waits.length > 1 ? 'es' : ''}`
    : run.admittedAt
      ? 'admitted without waiting'
      : 'not admitted';
  return [...header, ...lines, summary].join('\n');
}

export async function why(url: string, runId: string, now = new Date()): Promise<CommandOutput> {
  const data = await graphql<{ run: RunTimeline | null }>(
    url,
    `query($id: ID!) { run(id: $id) {
      id jobName status priority tags { key value } pools enqueuedAt admittedAt startedAt cancelRequestedAt
      finishedAt finishReason failureReason ignoredTags { key reason } waits { from to reasons { message } }
      decisions { at kind stepKey pool reasons { message } }
    } }`,
    { id: runId },
  );
  if (!data.run) throw new CliError(`run ${runId} does not exist`);
  return output(formatTimeline(data.run, now), data.run);
}

interface SnapshotRun {
  id: string;
  jobName: string;
  status: string;
  priority: number;
  blockedBy: Reason[];
}

interface Snapshot {
  position: string;
  at: string;
  config: {
    maxConcurrentRuns: number;
    poolGranularity: string;
    defaultPoolLimit: number | null;
    tagConcurrencyLimits: Array<{
      key: string;
      value: string | null;
      applyLimitPerUniqueValue: boolean;
      limit: number;
    }>;
  };
  queue: SnapshotRun[];
  inProgress: SnapshotRun[];
  pools: Array<{
    name: string;
    limit: number | null;
    explicitLimit: number | null;
    inUse: number;
    pending: number;
    promised: number;
  }>;
}

export function formatSnapshot(s: Snapshot): string {
  const c = s.config;
  const tagLimits = c.tagConcurrencyLimits.map((l) => {
    const what = l.applyLimitPerUniqueValue
      ? `${l.key}=(each value)`
      : l.value === null
        ? l.key
        : `${l.key}=${l.value}`;
    return `${what}: ${l.limit}`;
  });
  const lines = [
    `as of position ${s.position} (${s.at})`,
    `limits: max concurrent runs ${c.maxConcurrentRuns === -1 ? 'unlimited' : c.maxConcurrentRuns}, pools ${c.poolGranularity} granularity, default pool limit ${c.defaultPoolLimit ?? 'none'}`,
    `tag limits: ${tagLimits.join(', ') || 'none'}`,
    `in progress (${s.inProgress.length}):`,
    ...s.inProgress.map((r) => `  ${r.id}  ${r.status}  job ${r.jobName}`),
    `queue (${s.queue.length}), in admission order:`,
    ...s.queue.map(
      (r, i) =>
        `  ${i + 1}. ${r.id}  job ${r.jobName}, priority ${r.priority}${r.blockedBy.length ? `: held by ${reasons(r.blockedBy)}` : ''}`,
    ),
    `pools (${s.pools.length}):`,
    ...s.pools.map((p) => `  ${formatPool(p)}`),
  ];
  return lines.join('\n');
}

export async function snapshot(url: string, options: { at?: string; position?: string }): Promise<CommandOutput> {
  if (options.at !== undefined && Number.isNaN(Date.parse(options.at))) {
    throw new CliError(`--at must be a time such as 2026-11-27T14:00:00Z, got ${JSON.stringify(options.at)}`, 2);
  }
  const runFields = 'id jobName status priority blockedBy { message }';
  const data = await graphql<{ snapshot: Snapshot }>(
    url,
    `query($at: DateTime, $position: String) { snapshot(at: $at, position: $position) {
      position at config { maxConcurrentRuns poolGranularity defaultPoolLimit
        tagConcurrencyLimits { key value applyLimitPerUniqueValue limit } }
      queue { ${runFields} } inProgress { ${runFields} }
      pools { name limit explicitLimit inUse pending promised }
    } }`,
    {
      at: options.at === undefined ? null : new Date(options.at).toISOString(),
      position: options.position ?? null,
    },
  );
  return output(formatSnapshot(data.snapshot), data.snapshot);
}
