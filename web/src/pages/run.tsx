/** Run: its status, tags, steps and claims, deadline, and why it waited, as a timeline. */
import { Note, ReasonChips, Section, Status, Tags } from '../components';
import { duration, time } from '../format';
import { useLiveQuery } from '../hooks';
import { CONSTRAINT, type Constraint, type Decision, type Tag } from '../types';
import { constraintLabel } from '../usage';
import { RunActions } from './run-actions';

const QUERY = `query($id: ID!) { run(id: $id) {
  id jobName status priority tags { key value } maxConcurrentSteps leaseSeconds
  enqueuedAt admittedAt startedAt cancelRequestedAt finishedAt finishReason lastHeartbeatAt
  steps { key pool priority }
  stepClaims { stepKey pool granted released reasons { ${CONSTRAINT} } }
  deadline { at status reason }
  blockedBy { ${CONSTRAINT} }
  waits { from to reasons { ${CONSTRAINT} } }
  decisions { position at kind runId stepKey pool message reasons { ${CONSTRAINT} } }
} }`;

interface Wait {
  from: string;
  to: string | null;
  reasons: Constraint[];
}

interface RunDetail {
  id: string;
  jobName: string;
  status: string;
  priority: number;
  tags: Tag[];
  maxConcurrentSteps: number | null;
  leaseSeconds: number | null;
  enqueuedAt: string;
  admittedAt: string | null;
  startedAt: string | null;
  cancelRequestedAt: string | null;
  finishedAt: string | null;
  finishReason: string | null;
  lastHeartbeatAt: string | null;
  steps: { key: string; pool: string | null; priority: number }[];
  stepClaims: { stepKey: string; pool: string | null; granted: boolean; released: boolean; reasons: Constraint[] }[];
  deadline: { at: string; status: string; reason: string } | null;
  blockedBy: Constraint[];
  waits: Wait[];
  decisions: Decision[];
}

interface Mark {
  at: string;
  label: string;
}

/** Each stretch of waiting a segment labelled with its limits, then admission, start and end. */
function Timeline(props: { run: RunDetail }) {
  const { run } = props;
  const now = new Date().toISOString();
  const start = Date.parse(run.enqueuedAt);
  const end = Math.max(Date.parse(run.finishedAt ?? now), start + 1);
  const span = end - start;
  const x = (iso: string) => `${(100 * (Date.parse(iso) - start)) / span}%`;
  const marks: Mark[] = [{ at: run.enqueuedAt, label: 'enqueued' }];
  if (run.admittedAt) marks.push({ at: run.admittedAt, label: 'admitted' });
  if (run.startedAt) marks.push({ at: run.startedAt, label: 'started' });
  if (run.cancelRequestedAt) marks.push({ at: run.cancelRequestedAt, label: 'cancel asked' });
  if (run.finishedAt) marks.push({ at: run.finishedAt, label: run.status.toLowerCase() });
  const waited = run.waits.reduce((n, w) => n + Date.parse(w.to ?? now) - Date.parse(w.from), 0);
  return (
    <div class="timeline" data-testid="timeline">
      <div class="timeline-track">
        {run.waits.map((w, i) => {
          const width = ((Date.parse(w.to ?? now) - Date.parse(w.from)) * 100) / span;
          return (
            <div
              key={w.from}
              class={`segment segment-${i % 2}`}
              style={{ left: x(w.from), width: `max(3px, ${width}%)` }}
              title={w.reasons.map((r) => r.message).join('\n')}
            >
              {width > 12 ? <span class="segment-label">{w.reasons.map(constraintLabel).join(' · ')}</span> : null}
            </div>
          );
        })}
        {run.admittedAt ? (
          <div class="segment segment-run" style={{ left: x(run.admittedAt), right: 0 }} title="in progress" />
        ) : null}
        {marks.map((m) => (
          <div key={m.label} class="mark" style={{ left: x(m.at) }} title={`${m.label} ${m.at}`} />
        ))}
      </div>
      <ol class="timeline-list">
        <li>
          <span class="tl-time">{time(run.enqueuedAt)}</span> enqueued
        </li>
        {run.waits.map((w, i) => (
          <li key={w.from} data-testid="wait" class="tl-wait">
            <span class="tl-time">{time(w.from)}</span>
            <span class={`swatch segment-${i % 2}`} />
            {w.to ? 'waited' : 'waiting for'} {duration(Date.parse(w.to ?? now) - Date.parse(w.from))}
            {w.to ? '' : ' so far'}, held by <ReasonChips reasons={w.reasons} />
            <div class="tl-messages">
              {w.reasons.map((r) => (
                <div key={r.message}>{r.message}</div>
              ))}
            </div>
          </li>
        ))}
        {marks.slice(1).map((m) => (
          <li key={m.label}>
            <span class="tl-time">{time(m.at)}</span> {m.label}
          </li>
        ))}
      </ol>
      <p class="muted">
        {run.waits.length === 0
          ? 'Never held back.'
          : `Waited ${duration(waited)} in all, in ${run.waits.length} stretch${run.waits.length === 1 ? '' : 'es'}.`}
      </p>
    </div>
  );
}

export function RunPage(props: { id: string; role: string | null }) {
  const { data, error, refetch } = useLiveQuery<{ run: RunDetail | null }>(QUERY, { id: props.id });
  const run = data?.run;
  if (error) return <Note kind="error">{error}</Note>;
  if (!data) return <p class="muted">Loading…</p>;
  if (!run) return <Note kind="error">No run has the id “{props.id}”.</Note>;
  const claims = new Map(run.stepClaims.map((c) => [c.stepKey, c]));
  return (
    <div class="page">
      <div class="run-head">
        <h1>
          {run.id} <Status status={run.status} />
        </h1>
        <p class="muted">
          job <b>{run.jobName}</b> · priority {run.priority}
          {run.maxConcurrentSteps !== null ? ` · at most ${run.maxConcurrentSteps} steps at once` : ''}
          {run.leaseSeconds !== null ? ` · lease ${run.leaseSeconds} s` : ''}
        </p>
        <Tags tags={run.tags} />
        <RunActions run={run} role={props.role} onDone={refetch} />
      </div>
      {run.finishReason ? <Note>Ended by Sluice: {run.finishReason}</Note> : null}
      {run.deadline ? (
        <Note>
          Monitoring ends it as {run.deadline.status} at {time(run.deadline.at)} unless something happens first:{' '}
          {run.deadline.reason}
        </Note>
      ) : null}
      {run.status === 'QUEUED' ? (
        <Section title="Held now by">
          <ReasonChips reasons={run.blockedBy} />
        </Section>
      ) : null}
      <Section title="Why it waited">
        <Timeline run={run} />
      </Section>
      <div class="grid">
        <Section title={`Steps (${run.steps.length})`}>
          {run.steps.length === 0 ? (
            <p class="muted">No steps declared.</p>
          ) : (
            <table class="table">
              <thead>
                <tr>
                  <th>step</th>
                  <th>pool</th>
                  <th>priority</th>
                  <th>claim</th>
                </tr>
              </thead>
              <tbody>
                {run.steps.map((step) => {
                  const claim = claims.get(step.key);
                  return (
                    <tr key={step.key}>
                      <td>{step.key}</td>
                      <td>{step.pool ?? <span class="muted">none</span>}</td>
                      <td class="num">{step.priority}</td>
                      <td>
                        {!claim ? (
                          <span class="muted">not claimed</span>
                        ) : claim.released ? (
                          'released'
                        ) : claim.granted ? (
                          <span class="status status-started">holds a slot</span>
                        ) : (
                          <>
                            waiting: <ReasonChips reasons={claim.reasons} />
                          </>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        </Section>
        <Section title={`Decisions (${run.decisions.length})`}>
          <ul class="feed">
            {run.decisions.map((d) => (
              <li key={d.position} class="feed-item">
                <span class="feed-time">{time(d.at)}</span>
                <span class={`kind kind-${d.kind.toLowerCase()}`}>{d.kind.replace('_', ' ')}</span>
                <span class="muted">at {d.position}</span>
                <span>{d.message}</span>
              </li>
            ))}
          </ul>
        </Section>
      </div>
    </div>
  );
}
