/** `sluice queue` and `sluice runs`: what waits, in what order and why, and every run by status. */
import { CliError, graphql } from './client.js';
import { type CommandOutput, output } from './command.js';

const STATUSES = ['QUEUED', 'STARTING', 'STARTED', 'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED'];

interface QueuedRun {
  id: string;
  jobName: string;
  priority: number;
  blockedBy: Array<{ kind: string; message: string }>;
}

export async function queue(url: string): Promise<CommandOutput> {
  const data = await graphql<{ queue: QueuedRun[] }>(
    url,
    '{ queue { id jobName priority blockedBy { kind message } } }',
  );
  const runs = data.queue;
  if (runs.length === 0) return output('queue: empty', runs);
  const lines = runs.map((r, i) => {
    const held = r.blockedBy.length
      ? `held by ${r.blockedBy.map((c) => c.message).join('; ')}`
      : 'not held (admitted at the next pass)';
    return `  ${i + 1}. ${r.id}  job ${r.jobName}, priority ${r.priority}: ${held}`;
  });
  return output([`queue (${runs.length}), in admission order:`, ...lines].join('\n'), runs);
}

interface RunLine {
  id: string;
  jobName: string;
  status: string;
  priority: number;
  enqueuedAt: string;
  finishReason: string | null;
}

/** `--status` takes one status or several, comma-separated, in any case. */
export function parseStatuses(text: string | undefined): string[] | null {
  if (text === undefined) return null;
  const statuses = text.split(',').map((s) => s.trim().toUpperCase());
  for (const status of statuses) {
    if (!STATUSES.includes(status)) {
      throw new CliError(
        `--status must be one of ${STATUSES.join(', ')} (or several, comma-separated), got ${JSON.stringify(text)}`,
        2,
      );
    }
  }
  return statuses;
}

export async function runs(url: string, statusText: string | undefined): Promise<CommandOutput> {
  const statuses = parseStatuses(statusText);
  const all: RunLine[] = [];
  let after: string | null = null;
  for (;;) {
    const data: {
      runs: { edges: Array<{ node: RunLine }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
    } = await graphql(
      url,
      `query($statuses: [RunStatus!], $after: String) { runs(statuses: $statuses, first: 1000, after: $after) {
        edges { node { id jobName status priority enqueuedAt finishReason } } pageInfo { hasNextPage endCursor } } }`,
      { statuses, after },
    );
    all.push(...data.runs.edges.map((e) => e.node));
    if (!data.runs.pageInfo.hasNextPage) break;
    after = data.runs.pageInfo.endCursor;
  }
  const which = statuses ? ` ${statuses.join(', ')}` : '';
  if (all.length === 0) return output(`runs${which}: none`, all);
  const lines = all.map(
    (r) =>
      `  ${r.id}  ${r.status}  job ${r.jobName}, priority ${r.priority}${r.finishReason ? ` (${r.finishReason})` : ''}`,
  );
  return output([`runs${which} (${all.length}), in enqueue order:`, ...lines].join('\n'), all);
}
