/** Overview: what is running against the limits, the queue over time, the live decisions. */
import { useEffect, useState } from 'preact/hooks';
import { follow } from '../api';
import { QueueChart } from '../chart';
import { Note, ReasonChips, RunLink, Section, UsageBar } from '../components';
import { ago, time } from '../format';
import { useLiveQuery } from '../hooks';
import { CHART_WINDOW_MS, live } from '../live';
import { Link } from '../router';
import { CONFIG, CONSTRAINT, type Config, type Decision, POOL, type Pool, type Tag } from '../types';
import { tagUsage } from '../usage';

const QUERY = `{
  snapshot { position config { ${CONFIG} } inProgress { id tags { key value } } queue { id tags { key value } } pools { ${POOL} } }
}`;

interface Data {
  snapshot: {
    position: string;
    config: Config;
    inProgress: { id: string; tags: Tag[] }[];
    queue: { id: string; tags: Tag[] }[];
    pools: Pool[];
  };
}

const FEED_SIZE = 40;

/** The latest decisions, then each new one as it is made. */
function useDecisionFeed(ready: boolean): Decision[] {
  const [feed, setFeed] = useState<Decision[]>([]);
  useEffect(() => {
    if (!ready || live.position === null) return;
    // Start a little before the present so the feed is not empty on arrival.
    const from = BigInt(live.position) - 200n;
    return follow<Decision>({
      query: `subscription($after: String) { dequeueDecisions(after: $after) {
        position at kind runId stepKey pool message reasons { ${CONSTRAINT} } } }`,
      after: () => (from < 0n ? 0n : from).toString(),
      position: (d) => d.position,
      next: (decision) => setFeed((list) => [decision, ...list].slice(0, FEED_SIZE)),
    });
  }, [ready]);
  return feed;
}

export function Overview(props: { version: number }) {
  const { data, error } = useLiveQuery<Data>(QUERY);
  const feed = useDecisionFeed(live.position !== null);
  const s = data?.snapshot;
  const tags = s ? tagUsage(s.config.tagConcurrencyLimits, s.inProgress, s.queue) : [];
  return (
    <div class="page">
      {error ? <Note kind="error">{error}</Note> : null}
      <div class="stats">
        <div class="stat" data-testid="stat-in-progress">
          <span class="stat-value">{s ? s.inProgress.length : '…'}</span>
          <span class="stat-label">
            runs in progress
            {s ? ` of ${s.config.maxConcurrentRuns < 0 ? 'no limit' : s.config.maxConcurrentRuns}` : ''}
          </span>
        </div>
        <div class="stat" data-testid="stat-queued">
          <span class="stat-value">{s ? s.queue.length : '…'}</span>
          <span class="stat-label">
            <Link href="/queue">queued</Link>
          </span>
        </div>
        <div class="stat">
          <span class="stat-value">{s ? s.pools.reduce((n, p) => n + p.pending, 0) : '…'}</span>
          <span class="stat-label">steps waiting for slots</span>
        </div>
        <div class="stat">
          <span class="stat-value small">{s ? s.position : '…'}</span>
          <span class="stat-label">log position</span>
        </div>
      </div>
      <div class="grid">
        <Section title="Limits in use" aside={<Link href="/limits">edit</Link>}>
          {s ? (
            <div class="usages" data-testid="overview-limits">
              <UsageBar
                label="max concurrent runs"
                limit={s.config.maxConcurrentRuns}
                inUse={s.inProgress.length}
                pending={s.queue.length}
              />
              {tags.map((t) => (
                <UsageBar key={t.id} label={`tag ${t.label}`} limit={t.limit} inUse={t.inUse} pending={t.pending} />
              ))}
              {s.pools.map((p) => (
                <UsageBar key={p.name} label={`pool ${p.name}`} limit={p.limit} inUse={p.inUse} pending={p.pending} />
              ))}
              {tags.length === 0 && s.pools.length === 0 ? <p class="muted">No tag limits and no pools yet.</p> : null}
            </div>
          ) : (
            <p class="muted">Loading…</p>
          )}
        </Section>
        <Section title={`Queue and runs in progress, last ${CHART_WINDOW_MS / 60_000} min`}>
          <QueueChart version={props.version} />
        </Section>
      </div>
      <Section title="Decisions, live" aside={<span class="muted">newest first</span>}>
        {feed.length === 0 ? (
          <p class="muted">No decision yet. Each admission, hold and slot grant appears here as it is made.</p>
        ) : (
          <ul class="feed" data-testid="decision-feed">
            {feed.map((d) => (
              <li key={d.position} class="feed-item">
                <span class="feed-time" title={d.at}>
                  {time(d.at)}
                </span>
                <span class={`kind kind-${d.kind.toLowerCase()}`}>{d.kind.replace('_', ' ')}</span>
                <RunLink id={d.runId} />
                {d.stepKey ? <span class="muted">step {d.stepKey}</span> : null}
                {d.reasons.length > 0 ? <ReasonChips reasons={d.reasons} /> : null}
                <span class="feed-ago muted">{ago(d.at)}</span>
              </li>
            ))}
          </ul>
        )}
      </Section>
    </div>
  );
}
