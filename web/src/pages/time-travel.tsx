/** Time travel: the limits, the runs in progress and the queue with its reasons, at any past instant. */
import { useEffect, useState } from 'preact/hooks';
import { Note, ReasonChips, RunLink, Section, Status, UsageBar } from '../components';
import { time } from '../format';
import { useLiveQuery } from '../hooks';
import { CONFIG, CONSTRAINT, type Config, type Constraint, POOL, type Pool, type Tag } from '../types';
import { tagUsage } from '../usage';

const LAST = '{ snapshot { at position } }';
const FIRST = '{ snapshot(position: "0") { at } }';
const AT = `query($at: DateTime) { snapshot(at: $at) {
  position at config { ${CONFIG} } pools { ${POOL} }
  inProgress { id jobName status tags { key value } }
  queue { id jobName priority tags { key value } blockedBy { ${CONSTRAINT} } }
} }`;

interface Snapshot {
  position: string;
  at: string;
  config: Config;
  pools: Pool[];
  inProgress: { id: string; jobName: string; status: string; tags: Tag[] }[];
  queue: {
    id: string;
    jobName: string;
    priority: number;
    tags: Tag[];
    blockedBy: Constraint[];
  }[];
}

/** The value a datetime-local input shows for an instant, in the browser's time zone. */
function localInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 23);
}

export function TimeTravel() {
  const last = useLiveQuery<{ snapshot: { at: string; position: string } }>(LAST);
  const empty = last.data?.snapshot.position === '-1';
  const first = useLiveQuery<{ snapshot: { at: string } }>(FIRST, {}, { live: false, skip: !last.data || empty });
  const [instant, setInstant] = useState<number | null>(null);
  const [asked, setAsked] = useState<number | null>(null);
  const from = first.data ? Date.parse(first.data.snapshot.at) : null;
  const to = last.data && from !== null ? Math.max(Date.parse(last.data.snapshot.at), from) : null;

  // The slider moves freely; the snapshot is asked for once it rests.
  useEffect(() => {
    const timer = setTimeout(() => setAsked(instant), 150);
    return () => clearTimeout(timer);
  }, [instant]);

  const snapshot = useLiveQuery<{ snapshot: Snapshot }>(
    AT,
    { at: asked === null ? null : new Date(asked).toISOString() },
    { live: false, skip: asked === null },
  );
  const error = last.error ?? first.error;
  if (error && (!last.data || !first.data)) return <Note kind="error">{error}</Note>;
  if (empty) return <Note>The log is empty: nothing to travel through yet.</Note>;
  if (from === null || to === null) return <p class="muted">Loading…</p>;
  const s = asked === null ? null : snapshot.data?.snapshot;
  const tags = s ? tagUsage(s.config.tagConcurrencyLimits, s.inProgress, s.queue) : [];
  return (
    <div class="page">
      <Section title="Pick an instant">
        <div class="travel">
          <span class="muted">{time(new Date(from).toISOString())}</span>
          <input
            type="range"
            aria-label="instant to look at"
            min={from}
            max={to}
            step={Math.max(1, Math.round((to - from) / 1000))}
            value={instant ?? to}
            onInput={(e) => setInstant(Number(e.currentTarget.value))}
            data-testid="travel-slider"
          />
          <span class="muted">{time(new Date(to).toISOString())}</span>
        </div>
        <label class="field inline">
          or a date and time
          <input
            type="datetime-local"
            step="0.001"
            value={localInput(instant ?? to)}
            onChange={(e) => {
              const ms = Date.parse(e.currentTarget.value);
              if (!Number.isNaN(ms)) setInstant(ms);
            }}
            data-testid="travel-input"
          />
        </label>
        {asked === null ? <p class="muted">Move the slider or pick a time to see the state as it was.</p> : null}
      </Section>
      {snapshot.error ? <Note kind="error">{snapshot.error}</Note> : null}
      {s ? (
        <div class="page" data-testid="travel-result">
          <p class="asof">
            As of position <b>{s.position}</b> ({time(s.at)})
          </p>
          <div class="grid">
            <Section title="Limits then">
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
            </Section>
            <Section title={`In progress then (${s.inProgress.length})`}>
              {s.inProgress.length === 0 ? (
                <p class="muted">Nothing was running.</p>
              ) : (
                <ul class="plain" data-testid="travel-in-progress">
                  {s.inProgress.map((r) => (
                    <li key={r.id}>
                      <RunLink id={r.id} /> <Status status={r.status} /> <span class="muted">job {r.jobName}</span>
                    </li>
                  ))}
                </ul>
              )}
            </Section>
          </div>
          <Section title={`Queue then (${s.queue.length}), in admission order`}>
            {s.queue.length === 0 ? (
              <p class="muted">Nothing was queued.</p>
            ) : (
              <ol class="plain numbered" data-testid="travel-queue">
                {s.queue.map((r) => (
                  <li key={r.id} data-run={r.id}>
                    <RunLink id={r.id} />{' '}
                    <span class="muted">
                      job {r.jobName}, priority {r.priority}
                    </span>{' '}
                    <ReasonChips reasons={r.blockedBy} />
                  </li>
                ))}
              </ol>
            )}
          </Section>
        </div>
      ) : asked !== null ? (
        <p class="muted">Loading…</p>
      ) : null}
    </div>
  );
}
