/** `sluice report --from --to`: where the waiting went in a window, each limit's share. */
import { formatDuration } from './audit.js';
import { CliError, graphql } from './client.js';
import { type CommandOutput, output } from './command.js';

interface Share {
  kind: string;
  key: string | null;
  value: string | null;
  pool: string | null;
  heldSeconds: number;
  soleSeconds: number;
  runs: number;
}

interface Report {
  from: string;
  to: string;
  runs: number;
  waitSeconds: number;
  byLimit: Share[];
}

const DAY_MS = 24 * 3600 * 1000;

export function limitLabel(s: Pick<Share, 'kind' | 'key' | 'value' | 'pool'>): string {
  switch (s.kind) {
    case 'MAX_CONCURRENT_RUNS':
      return 'max concurrent runs';
    case 'TAG_LIMIT':
      return s.value === null ? `tag ${s.key} (any value)` : `tag ${s.key}=${s.value}`;
    case 'POOL_LIMIT':
      return `pool ${s.pool}`;
    case 'ROOT_STEP_POOLS':
      return `root steps in pool ${s.pool}`;
    default:
      return s.kind;
  }
}

function instant(text: string | undefined, name: string, fallback: number): string {
  if (text === undefined) return new Date(fallback).toISOString();
  const ms = Date.parse(text);
  if (!Number.isFinite(ms))
    throw new CliError(`--${name} must be an instant such as 2026-11-27T03:00:00Z, got ${JSON.stringify(text)}`, 2);
  return new Date(ms).toISOString();
}

const percent = (part: number, whole: number) => (whole > 0 ? `${Math.round((part / whole) * 100)}%` : '-');

export function formatReport(r: Report): string {
  const lines = [
    `waiting from ${r.from} to ${r.to}: ${formatDuration(r.waitSeconds * 1000)} of run time, ${r.runs} run${r.runs === 1 ? '' : 's'} waited`,
  ];
  if (r.byLimit.length === 0) return lines.join('\n');
  lines.push(
    'limits, largest share first (held: the limit was among those holding a run; alone: it was the only one):',
  );
  for (const s of r.byLimit) {
    lines.push(
      `  ${limitLabel(s)}: held ${formatDuration(s.heldSeconds * 1000)} (${percent(s.heldSeconds, r.waitSeconds)}), alone ${formatDuration(s.soleSeconds * 1000)}, ${s.runs} run${s.runs === 1 ? '' : 's'}`,
    );
  }
  return lines.join('\n');
}

export async function report(
  url: string,
  fromText: string | undefined,
  toText: string | undefined,
): Promise<CommandOutput> {
  const to = instant(toText, 'to', Date.now());
  const from = instant(fromText, 'from', Date.parse(to) - DAY_MS);
  if (Date.parse(to) <= Date.parse(from)) throw new CliError('--to must come after --from', 2);
  const data = await graphql<{ waitReport: Report }>(
    url,
    `query($from: DateTime!, $to: DateTime!) { waitReport(from: $from, to: $to) {
      from to runs waitSeconds byLimit { kind key value pool heldSeconds soleSeconds runs } } }`,
    { from, to },
  );
  return output(formatReport(data.waitReport), data.waitReport);
}
