/** Small pieces the pages share: bars, chips, sections, notes. */
import type { ComponentChildren } from 'preact';
import { limitText } from './format';
import { Link } from './router';
import type { Constraint } from './types';
import { constraintLabel } from './usage';

/** Limit, in use and pending as one bar: filled for in use, hatched for pending. */
export function UsageBar(props: { label: ComponentChildren; limit: number | null; inUse: number; pending?: number }) {
  const { limit, inUse } = props;
  const pending = props.pending ?? 0;
  const bounded = limit !== null && limit >= 0;
  const scale = Math.max(bounded ? limit : 0, inUse + pending, 1);
  const full = bounded && inUse >= limit;
  return (
    <div class="usage" data-testid="usage">
      <div class="usage-head">
        <span class="usage-label">{props.label}</span>
        <span class="usage-numbers">
          <b>{inUse}</b> / {limitText(limit)} in use
          {pending > 0 ? <span class="pending-text"> · {pending} pending</span> : null}
        </span>
      </div>
      <div class={`bar${full ? ' full' : ''}`}>
        <div class="bar-used" style={{ width: `${(100 * inUse) / scale}%` }} />
        <div class="bar-pending" style={{ width: `${(100 * pending) / scale}%` }} />
        {bounded && limit < scale ? <div class="bar-limit" style={{ left: `${(100 * limit) / scale}%` }} /> : null}
      </div>
    </div>
  );
}

export function ReasonChips(props: { reasons: Constraint[] }) {
  if (props.reasons.length === 0) return <span class="muted">nothing holds it</span>;
  return (
    <span class="chips">
      {props.reasons.map((r) => (
        <span class={`chip chip-${r.kind.toLowerCase()}`} title={r.message} key={r.message}>
          {constraintLabel(r)}
        </span>
      ))}
    </span>
  );
}

export function Section(props: { title: ComponentChildren; children: ComponentChildren; aside?: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{props.title}</h2>
        {props.aside ? <div class="card-aside">{props.aside}</div> : null}
      </header>
      {props.children}
    </section>
  );
}

export function Note(props: { kind?: 'error' | 'info'; children: ComponentChildren }) {
  return <p class={`note note-${props.kind ?? 'info'}`}>{props.children}</p>;
}

export function RunLink(props: { id: string }) {
  return (
    <Link href={`/runs/${encodeURIComponent(props.id)}`} class="run-link">
      {props.id}
    </Link>
  );
}

export function Status(props: { status: string }) {
  return <span class={`status status-${props.status.toLowerCase()}`}>{props.status}</span>;
}

export function Tags(props: { tags: { key: string; value: string }[] }) {
  if (props.tags.length === 0) return <span class="muted">no tags</span>;
  return (
    <span class="tags">
      {props.tags.map((t) => (
        <span class="tag" key={`${t.key}=${t.value}`}>
          {t.key}={t.value}
        </span>
      ))}
    </span>
  );
}
