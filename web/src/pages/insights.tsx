/**
 * Insights: where the waiting went in a window (waitReport), waiting over time by limit (one
 * waitReport per slice of the window, in one request), and a what-if that replays the window
 * with a changed limit (replayWhatIf), before and after side by side.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { gql } from '../api';
import { Note, Section } from '../components';
import { useLiveQuery } from '../hooks';

interface Share {
  kind: string;
  key: string | null;
  value: string | null;
  pool: string | null;
  perUniqueValue?: boolean;
  heldSeconds: number;
  soleSeconds: number;
  runs: number;
  /** In the window's report: the runs the limit held longest. */
  longestRunIds?: string[] | null;
}

interface JobWait {
  jobName: string;
  runs: number;
  waitSeconds: number;
  p50Seconds: number;
  p95Seconds: number;
  longestRunIds: string[];
}

interface Report {
  runs: number;
  waitSeconds: number;
  byLimit: Share[];
  byJob: JobWait[];
}

interface WhatIf {
  actualWaitSeconds: number;
  replayedWaitSeconds: number;
  runs: number;
  actualRuns: number;
  byLimit: Share[];
  actualByLimit: Share[];
  assumptions: string[];
}

const SHARE = 'kind key value pool heldSeconds soleSeconds runs';
const REPORT = `query($from: DateTime!, $to: DateTime!) { waitReport(from: $from, to: $to) { runs waitSeconds byLimit { ${SHARE} perUniqueValue longestRunIds }
  byJob { jobName runs waitSeconds p50Seconds p95Seconds longestRunIds } } }`;
const WHAT_IF = `query($from: DateTime!, $to: DateTime!, $change: ConfigChangeInput!) {
  replayWhatIf(from: $from, to: $to, change: $change) {
    actualWaitSeconds replayedWaitSeconds runs actualRuns assumptions
    byLimit { ${SHARE} } actualByLimit { ${SHARE} } } }`;

const WINDOWS = [
  { id: 'hour', label: 'Last hour', ms: 3600_000 },
  { id: 'day', label: 'Last day', ms: 86_400_000 },
  { id: 'week', label: 'Last week', ms: 7 * 86_400_000 },
] as const;
/** Slices of the window for the chart: one waitReport each, within the request's cost limit. */
const SLICES = 24;
const COLORS = ['#2563eb', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#65a30d', '#db2777'];

export function limitLabel(s: Pick<Share, 'kind' | 'key' | 'value' | 'pool'>): string {
  if (s.kind === 'MAX_CONCURRENT_RUNS') return 'max concurrent runs';
  if (s.kind === 'TAG_LIMIT') return s.value === null ? `tag ${s.key} (any value)` : `tag ${s.key}=${s.value}`;
  if (s.kind === 'POOL_LIMIT') return `pool ${s.pool}`;
  if (s.kind === 'ROOT_STEP_POOLS') return `root steps in pool ${s.pool}`;
  return s.kind.toLowerCase();
}

export function duration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds * 10) / 10} s`;
  if (seconds < 3600) return `${Math.round(seconds / 6) / 10} min`;
  return `${Math.round(seconds / 360) / 10} h`;
}

/** The value a datetime-local input shows for an instant, in the browser's time zone. */
function localInput(ms: number): string {
  return new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

const WAITING = `query($from: DateTime!, $to: DateTime!, $limit: WaitLimitInput, $alone: Boolean, $jobName: String, $first: Int, $after: String) {
  waitingRuns(from: $from, to: $to, limit: $limit, alone: $alone, jobName: $jobName, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { runId jobName waitSeconds } } } }`;
/** Runs shown per page of a figure's list. */
const RUNS_PAGE = 20;

interface WaitingRun {
  runId: string;
  jobName: string;
  waitSeconds: number;
}

interface WaitingPage {
  totalCount: number;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  edges: Array<{ node: WaitingRun }>;
}

/**
 * Every run behind a figure (a limit's holds, or a job's runs), longest wait in the window
 * first, page by page: read when opened, each page after the last on "More runs".
 */
function WaitingRuns(props: {
  from: string;
  to: string;
  of: { limit: Share } | { jobName: string };
  label: string;
  count: number;
}) {
  const [runs, setRuns] = useState<WaitingRun[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [total, setTotal] = useState(props.count);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const load = async (after: string | null) => {
    setBusy(true);
    setError(null);
    const of =
      'jobName' in props.of
        ? { jobName: props.of.jobName }
        : {
            limit: {
              kind: props.of.limit.kind,
              key: props.of.limit.key,
              value: props.of.limit.value,
              pool: props.of.limit.pool,
              perUniqueValue: props.of.limit.perUniqueValue ?? false,
            },
          };
    try {
      const data = await gql<{ waitingRuns: WaitingPage }>(WAITING, {
        from: props.from,
        to: props.to,
        ...of,
        first: RUNS_PAGE,
        after,
      });
      const page = data.waitingRuns;
      setRuns((shown) => [...(after === null ? [] : (shown ?? [])), ...page.edges.map((e) => e.node)]);
      setNext(page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null);
      setTotal(page.totalCount);
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <details
      class="waiting-runs"
      data-testid="waiting-runs"
      onToggle={(e) => {
        if ((e.currentTarget as HTMLDetailsElement).open && runs === null) void load(null);
      }}
    >
      <summary>
        All {props.count} {props.count === 1 ? 'run' : 'runs'}
        <span class="sr-only"> {props.label}</span>
      </summary>
      {error ? <span role="alert">{error}</span> : null}
      {runs ? (
        <ol aria-label={`runs ${props.label}, longest wait first`}>
          {runs.map((r) => (
            <li key={r.runId}>
              <a href={`/runs/${encodeURIComponent(r.runId)}`}>{r.runId}</a> {duration(r.waitSeconds)}
              {'jobName' in props.of ? null : <span class="muted"> ({r.jobName})</span>}
            </li>
          ))}
        </ol>
      ) : busy ? (
        <p class="muted">Loading…</p>
      ) : null}
      {runs ? (
        <p class="muted">
          {runs.length} of {total} shown
          {next ? (
            <>
              {' '}
              {/* Not disabled while a page loads: a disabled button drops the keyboard's focus. */}
              <button
                type="button"
                aria-disabled={busy ? 'true' : undefined}
                onClick={() => {
                  if (!busy) void load(next);
                }}
              >
                More runs
              </button>
            </>
          ) : null}
        </p>
      ) : null}
    </details>
  );
}

/** Links to the runs a limit held longest. */
function RunLinks(props: { ids: readonly string[]; of: string }) {
  return (
    <>
      {props.ids.map((id, i) => (
        <span key={id}>
          {i > 0 ? ', ' : null}
          <a href={`/runs/${encodeURIComponent(id)}`} aria-label={`run ${id}, held by ${props.of}`}>
            {id}
          </a>
        </span>
      ))}
    </>
  );
}

function ShareTable(props: {
  shares: Share[];
  total: number;
  caption: string;
  testid: string;
  /** The report's window: each limit then links to every run it held there. */
  window?: { from: string; to: string };
}) {
  const withRuns = props.shares.some((s) => s.longestRunIds);
  if (props.shares.length === 0) return <p class="muted">Nothing waited.</p>;
  return (
    <table class="table" data-testid={props.testid}>
      <caption class="sr-only">{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">Limit</th>
          <th scope="col">Held</th>
          <th scope="col">Share</th>
          <th scope="col">Alone</th>
          <th scope="col">Runs</th>
          {withRuns ? <th scope="col">Held longest</th> : null}
          {props.window ? <th scope="col">Every run held</th> : null}
        </tr>
      </thead>
      <tbody>
        {props.shares.map((s) => (
          <tr key={limitLabel(s)}>
            <th scope="row">{s.pool ? <a href={`/limits#pool-${s.pool}`}>{limitLabel(s)}</a> : limitLabel(s)}</th>
            <td>{duration(s.heldSeconds)}</td>
            <td>{props.total > 0 ? `${Math.round((s.heldSeconds / props.total) * 100)}%` : '-'}</td>
            <td>{duration(s.soleSeconds)}</td>
            <td>{s.runs}</td>
            {withRuns ? (
              <td>
                <RunLinks ids={s.longestRunIds ?? []} of={limitLabel(s)} />
              </td>
            ) : null}
            {props.window ? (
              <td>
                <WaitingRuns
                  key={`${props.window.from}|${props.window.to}`}
                  from={props.window.from}
                  to={props.window.to}
                  of={{ limit: s }}
                  label={`held by ${limitLabel(s)}`}
                  count={s.runs}
                />
              </td>
            ) : null}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Per job: its runs' waits in the window, with links to the runs that waited longest. */
function JobTable(props: { jobs: JobWait[]; from: string; to: string }) {
  if (props.jobs.length === 0) return <p class="muted">No run waited.</p>;
  return (
    <table class="table" data-testid="jobs">
      <caption class="sr-only">waiting per job</caption>
      <thead>
        <tr>
          <th scope="col">Job</th>
          <th scope="col">Runs</th>
          <th scope="col">Waited</th>
          <th scope="col">p50</th>
          <th scope="col">p95</th>
          <th scope="col">Longest waits</th>
          <th scope="col">Every run</th>
        </tr>
      </thead>
      <tbody>
        {props.jobs.map((j) => (
          <tr key={j.jobName}>
            <th scope="row">{j.jobName}</th>
            <td>{j.runs}</td>
            <td>{duration(j.waitSeconds)}</td>
            <td>{duration(j.p50Seconds)}</td>
            <td>{duration(j.p95Seconds)}</td>
            <td>
              {j.longestRunIds.map((id, i) => (
                <span key={id}>
                  {i > 0 ? ', ' : null}
                  <a href={`/runs/${encodeURIComponent(id)}`} aria-label={`run ${id} of ${j.jobName}`}>
                    {id}
                  </a>
                </span>
              ))}
            </td>
            <td>
              <WaitingRuns
                key={`${props.from}|${props.to}`}
                from={props.from}
                to={props.to}
                of={{ jobName: j.jobName }}
                label={`of ${j.jobName}`}
                count={j.runs}
              />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Waiting over time, one band per limit (held seconds per slice; a run held by two limits counts in both). */
function WaitingChart(props: { fromMs: number; toMs: number }) {
  const box = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    let plot: uPlot | null = null;
    let cancelled = false;
    const step = (props.toMs - props.fromMs) / SLICES;
    const fields = Array.from({ length: SLICES }, (_, i) => {
      const from = new Date(props.fromMs + i * step).toISOString();
      const to = new Date(props.fromMs + (i + 1) * step).toISOString();
      return `s${i}: waitReport(from: "${from}", to: "${to}") { byLimit { ${SHARE} } }`;
    });
    gql<Record<string, { byLimit: Share[] }>>(`{ ${fields.join(' ')} }`).then(
      (data) => {
        if (cancelled) return;
        const names = new Set<string>();
        for (const slice of Object.values(data)) for (const s of slice.byLimit) names.add(limitLabel(s));
        const labels = [...names];
        const xs = Array.from({ length: SLICES }, (_, i) => (props.fromMs + (i + 0.5) * step) / 1000);
        // Stacked: each band adds its held run-minutes per slice to the bands below it.
        const totals = new Array(SLICES).fill(0);
        const bands = labels.map((label) =>
          xs.map((_, i) => {
            const share = data[`s${i}`]?.byLimit.find((s) => limitLabel(s) === label);
            totals[i] += (share?.heldSeconds ?? 0) / 60;
            return totals[i];
          }),
        );
        plot = new uPlot(
          {
            width: element.clientWidth || 600,
            height: 220,
            scales: { x: { time: true } },
            axes: [{ stroke: '#5b6b7d' }, { stroke: '#5b6b7d', label: 'run-minutes held' }],
            series: [
              {},
              ...labels.map((label, i) => ({
                label,
                stroke: COLORS[i % COLORS.length],
                fill: `${COLORS[i % COLORS.length]}33`,
                width: 2,
              })),
            ],
            legend: { live: false },
          },
          [xs, ...bands],
          element,
        );
      },
      (e: Error) => setError(e.message),
    );
    const resize = new ResizeObserver(() => plot?.setSize({ width: element.clientWidth, height: 220 }));
    resize.observe(element);
    return () => {
      cancelled = true;
      resize.disconnect();
      plot?.destroy();
    };
  }, [props.fromMs, props.toMs]);
  return (
    <>
      {error ? <Note kind="error">{error}</Note> : null}
      <div class="chart" ref={box} data-testid="waiting-chart" role="img" aria-label="waiting over time by limit" />
    </>
  );
}

function WhatIfForm(props: { from: string; to: string }) {
  const [kind, setKind] = useState<'runs' | 'pool'>('runs');
  const [pool, setPool] = useState('');
  const [limit, setLimit] = useState('');
  const [answer, setAnswer] = useState<WhatIf | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const n = Number(limit);
    const change = kind === 'runs' ? { maxConcurrentRuns: n } : { poolLimits: [{ pool: pool.trim(), limit: n }] };
    setBusy(true);
    try {
      const data = await gql<{ replayWhatIf: WhatIf }>(WHAT_IF, { from: props.from, to: props.to, change });
      setAnswer(data.replayWhatIf);
    } catch (failure) {
      setAnswer(null);
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <form class="what-if" onSubmit={submit} data-testid="what-if-form">
        <label>
          Limit{' '}
          <select value={kind} onChange={(e) => setKind(e.currentTarget.value as 'runs' | 'pool')}>
            <option value="runs">max concurrent runs</option>
            <option value="pool">a pool's limit</option>
          </select>
        </label>
        {kind === 'pool' ? (
          <label>
            Pool <input value={pool} onInput={(e) => setPool(e.currentTarget.value)} required />
          </label>
        ) : null}
        <label>
          New value <input type="number" value={limit} onInput={(e) => setLimit(e.currentTarget.value)} required />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Replaying…' : 'Replay the window'}
        </button>
      </form>
      {error ? (
        <Note kind="error">
          <span role="alert">{error}</span>
        </Note>
      ) : null}
      {answer ? (
        <div class="grid" data-testid="what-if-answer">
          <div>
            <h3>As it happened</h3>
            <p>
              {duration(answer.actualWaitSeconds)} waited by {answer.actualRuns} runs
            </p>
            <ShareTable
              shares={answer.actualByLimit}
              total={answer.actualWaitSeconds}
              caption="actual"
              testid="before"
            />
          </div>
          <div>
            <h3>With the change</h3>
            <p>
              {duration(answer.replayedWaitSeconds)} waited by {answer.runs} runs
            </p>
            <ShareTable shares={answer.byLimit} total={answer.replayedWaitSeconds} caption="replayed" testid="after" />
          </div>
          <details>
            <summary>What the replay assumes</summary>
            <ul>
              {answer.assumptions.map((a) => (
                <li key={a}>{a}</li>
              ))}
            </ul>
          </details>
        </div>
      ) : null}
    </>
  );
}

export function Insights() {
  const [windowId, setWindowId] = useState<'hour' | 'day' | 'week' | 'custom'>('day');
  const [anchor] = useState(() => Date.now());
  const [custom, setCustom] = useState({ from: localInput(anchor - 86_400_000), to: localInput(anchor) });
  const preset = WINDOWS.find((w) => w.id === windowId);
  const fromMs = preset ? anchor - preset.ms : Date.parse(custom.from);
  const toMs = preset ? anchor : Date.parse(custom.to);
  const valid = Number.isFinite(fromMs) && Number.isFinite(toMs) && toMs > fromMs;
  const from = valid ? new Date(fromMs).toISOString() : '';
  const to = valid ? new Date(toMs).toISOString() : '';
  const report = useLiveQuery<{ waitReport: Report }>(REPORT, { from, to }, { live: false, skip: !valid });
  const r = report.data?.waitReport;
  return (
    <>
      <Section title="Where the waiting went">
        <fieldset class="window-picker" data-testid="window-picker">
          <legend>Window</legend>
          {[...WINDOWS, { id: 'custom', label: 'Custom' } as const].map((w) => (
            <label key={w.id}>
              <input
                type="radio"
                name="window"
                value={w.id}
                checked={windowId === w.id}
                onChange={() => setWindowId(w.id)}
              />{' '}
              {w.label}
            </label>
          ))}
          {windowId === 'custom' ? (
            <>
              <label>
                From{' '}
                <input
                  type="datetime-local"
                  value={custom.from}
                  onInput={(e) => setCustom({ ...custom, from: e.currentTarget.value })}
                />
              </label>
              <label>
                To{' '}
                <input
                  type="datetime-local"
                  value={custom.to}
                  onInput={(e) => setCustom({ ...custom, to: e.currentTarget.value })}
                />
              </label>
            </>
          ) : null}
        </fieldset>
        {!valid ? <Note kind="error">The window must end after it starts.</Note> : null}
        {report.error ? <Note kind="error">{report.error}</Note> : null}
        {r ? (
          <>
            <p data-testid="wait-total">
              {duration(r.waitSeconds)} of run time spent queued; {r.runs} runs waited. Held: the limit was among those
              holding a run. Alone: it was the only one (what raising it alone would have freed at once).
            </p>
            <ShareTable
              shares={r.byLimit}
              total={r.waitSeconds}
              caption="limits by share"
              testid="shares"
              window={{ from, to }}
            />
          </>
        ) : null}
      </Section>
      {r ? (
        <Section title="Waiting per job">
          <p class="muted">
            p50 and p95: of the job's runs that waited in the window, half waited no longer than p50 and 95% no longer
            than p95 (each run's wait counted inside the window only).
          </p>
          <JobTable jobs={r.byJob} from={from} to={to} />
        </Section>
      ) : null}
      {valid ? (
        <Section title="Waiting over time, by limit">
          <WaitingChart fromMs={fromMs} toMs={toMs} />
        </Section>
      ) : null}
      {valid ? (
        <Section title="What if a limit had been different?">
          <WhatIfForm from={from} to={to} />
        </Section>
      ) : null}
    </>
  );
}
