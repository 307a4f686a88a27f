/** Limits: every limit with its usage; an admin edits, sees the what-if, then applies as one change. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { GraphQLFailure, gql } from '../api';
import { Note, ReasonChips, RunLink, Section, UsageBar } from '../components';
import { useLiveQuery } from '../hooks';
import { CONFIG, CONSTRAINT, type Config, type Constraint, POOL, type Pool, type Tag, type TagLimit } from '../types';
import { tagUsage } from '../usage';

const QUERY = `{
  concurrencyConfig { ${CONFIG} }
  pools { ${POOL} }
  snapshot { inProgress { id tags { key value } } queue { id tags { key value } } }
}`;

interface Data {
  concurrencyConfig: Config;
  pools: Pool[];
  snapshot: { inProgress: { id: string; tags: Tag[] }[]; queue: { id: string; tags: Tag[] }[] };
}

interface TagRow {
  key: string;
  value: string;
  perValue: boolean;
  limit: string;
}

interface Draft {
  maxConcurrentRuns: string;
  defaultPoolLimit: string;
  pools: { pool: string; limit: string }[];
  tags: TagRow[];
}

interface SimRun {
  id: string;
  jobName: string;
  blockedBy: Constraint[];
}

interface Simulation {
  wouldAdmit: SimRun[];
  stillQueued: SimRun[];
}

function draftOf(data: Data): Draft {
  const c = data.concurrencyConfig;
  return {
    maxConcurrentRuns: String(c.maxConcurrentRuns),
    defaultPoolLimit: c.defaultPoolLimit === null ? '' : String(c.defaultPoolLimit),
    pools: data.pools.map((p) => ({ pool: p.name, limit: p.explicitLimit === null ? '' : String(p.explicitLimit) })),
    tags: c.tagConcurrencyLimits.map((t) => ({
      key: t.key,
      value: t.value ?? '',
      perValue: t.applyLimitPerUniqueValue,
      limit: String(t.limit),
    })),
  };
}

/** The fields the draft changes, as a ConfigChangeInput; bad numbers are left for the server to name. */
function changeOf(draft: Draft, data: Data): Record<string, unknown> {
  const number = (text: string) => (text.trim() === '' ? null : Number(text));
  const base = draftOf(data);
  const change: Record<string, unknown> = {};
  if (draft.maxConcurrentRuns !== base.maxConcurrentRuns) change.maxConcurrentRuns = number(draft.maxConcurrentRuns);
  if (draft.defaultPoolLimit !== base.defaultPoolLimit) change.defaultPoolLimit = number(draft.defaultPoolLimit);
  const pools = draft.pools.filter((p, i) => p.pool.trim() !== '' && p.limit !== (base.pools[i]?.limit ?? ''));
  if (pools.length > 0) change.poolLimits = pools.map((p) => ({ pool: p.pool.trim(), limit: number(p.limit) }));
  if (JSON.stringify(draft.tags) !== JSON.stringify(base.tags)) {
    change.tagConcurrencyLimits = draft.tags.map(
      (t): TagLimit => ({
        key: t.key.trim(),
        value: t.perValue || t.value.trim() === '' ? null : t.value.trim(),
        applyLimitPerUniqueValue: t.perValue,
        limit: Number(t.limit),
      }),
    );
  }
  return change;
}

const SIMULATE = `query($change: ConfigChangeInput!) { simulate(change: $change) {
  wouldAdmit { id jobName blockedBy { ${CONSTRAINT} } } stillQueued { id jobName blockedBy { ${CONSTRAINT} } } } }`;
const APPLY = `mutation($change: ConfigChangeInput!) { changeConcurrencyConfig(change: $change) {
  __typename ... on Error { message } ... on ValidationError { field } } }`;

export function Limits(props: { canEdit: boolean; role: string | null }) {
  const { data, error, refetch } = useLiveQuery<Data>(QUERY);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [preview, setPreview] = useState<{ change: string; result: Simulation } | null>(null);
  const [message, setMessage] = useState<{ kind: 'error' | 'info'; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  // The form starts from the limits in force, and follows them until the admin edits. Decided on
  // the draft as it is when new limits arrive (not as it was at the last render), so an edit typed
  // between a live update's render and its effect is kept rather than overwritten.
  const followed = useRef<string | null>(null);
  useEffect(() => {
    if (!data) return;
    const fresh = draftOf(data);
    setDraft((current) => {
      if (current !== null && JSON.stringify(current) !== followed.current) return current;
      followed.current = JSON.stringify(fresh);
      return fresh;
    });
  }, [data]);

  if (error && !data) return <Note kind="error">{error}</Note>;
  if (!data || !draft) return <p class="muted">Loading…</p>;
  const change = changeOf(draft, data);
  const changeKey = JSON.stringify(change);
  const changed = Object.keys(change).length > 0;
  const previewed = preview !== null && preview.change === changeKey;
  const disabled = !props.canEdit || busy;
  const tags = tagUsage(data.concurrencyConfig.tagConcurrencyLimits, data.snapshot.inProgress, data.snapshot.queue);
  const edit = (next: Partial<Draft>) => {
    setDraft({ ...draft, ...next });
    setMessage(null);
  };

  const simulate = async () => {
    setBusy(true);
    setMessage(null);
    try {
      const result = await gql<{ simulate: Simulation }>(SIMULATE, { change });
      setPreview({ change: changeKey, result: result.simulate });
    } catch (e) {
      setPreview(null);
      setMessage({ kind: 'error', text: e instanceof GraphQLFailure ? e.message : String(e) });
    } finally {
      setBusy(false);
    }
  };

  const apply = async () => {
    setBusy(true);
    try {
      const result = await gql<{ changeConcurrencyConfig: { __typename: string; message?: string } }>(APPLY, {
        change,
      });
      const answer = result.changeConcurrencyConfig;
      if (answer.__typename !== 'ConfigPayload') {
        setMessage({ kind: 'error', text: answer.message ?? answer.__typename });
      } else {
        const admitted = preview?.result.wouldAdmit.map((r) => r.id) ?? [];
        setMessage({
          kind: 'info',
          text: `Applied.${admitted.length > 0 ? ` Admitted: ${admitted.join(', ')}.` : ''}`,
        });
        setPreview(null);
        setDraft(null);
        refetch();
      }
    } catch (e) {
      setMessage({ kind: 'error', text: e instanceof GraphQLFailure ? e.message : String(e) });
    } finally {
      setBusy(false);
    }
  };

  const usageOfPool = (name: string) => data.pools.find((p) => p.name === name);
  return (
    <div class="page">
      {!props.canEdit ? (
        <Note>Your role ({props.role ?? 'unknown'}) may read the limits but not edit them; an admin token can.</Note>
      ) : null}
      <div class="grid">
        <Section title="Runs">
          <UsageBar
            label="max concurrent runs"
            limit={data.concurrencyConfig.maxConcurrentRuns}
            inUse={data.snapshot.inProgress.length}
            pending={data.snapshot.queue.length}
          />
          <label class="field">
            max concurrent runs (-1: no limit)
            <input
              type="number"
              min={-1}
              name="maxConcurrentRuns"
              value={draft.maxConcurrentRuns}
              disabled={disabled}
              onInput={(e) => edit({ maxConcurrentRuns: e.currentTarget.value })}
            />
          </label>
          <h3>Tag limits</h3>
          {tags.map((t) => (
            <UsageBar key={t.id} label={t.label} limit={t.limit} inUse={t.inUse} pending={t.pending} />
          ))}
          <table class="table form-table">
            <thead>
              <tr>
                <th>key</th>
                <th>value</th>
                <th>each value</th>
                <th>limit</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {draft.tags.map((t, i) => {
                const set = (row: Partial<TagRow>) =>
                  edit({ tags: draft.tags.map((x, j) => (j === i ? { ...x, ...row } : x)) });
                return (
                  <tr key={i}>
                    <td>
                      <input value={t.key} disabled={disabled} onInput={(e) => set({ key: e.currentTarget.value })} />
                    </td>
                    <td>
                      <input
                        value={t.value}
                        placeholder="any"
                        disabled={disabled || t.perValue}
                        onInput={(e) => set({ value: e.currentTarget.value })}
                      />
                    </td>
                    <td>
                      <input
                        type="checkbox"
                        checked={t.perValue}
                        disabled={disabled}
                        onChange={(e) => set({ perValue: e.currentTarget.checked })}
                      />
                    </td>
                    <td>
                      <input
                        type="number"
                        min={0}
                        class="narrow"
                        value={t.limit}
                        disabled={disabled}
                        onInput={(e) => set({ limit: e.currentTarget.value })}
                      />
                    </td>
                    <td>
                      <button
                        type="button"
                        class="link"
                        disabled={disabled}
                        onClick={() => edit({ tags: draft.tags.filter((_, j) => j !== i) })}
                      >
                        remove
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <button
            type="button"
            class="secondary"
            disabled={disabled}
            onClick={() => edit({ tags: [...draft.tags, { key: '', value: '', perValue: false, limit: '1' }] })}
          >
            add tag limit
          </button>
        </Section>
        <Section title={`Pools (granularity ${data.concurrencyConfig.poolGranularity})`}>
          {data.concurrencyConfig.poolGranularity === 'OP' ? (
            <HoldNote hold={data.concurrencyConfig.rootStepHold} />
          ) : null}
          <label class="field">
            default pool limit (empty: pools without their own limit are unlimited)
            <input
              type="number"
              min={0}
              name="defaultPoolLimit"
              value={draft.defaultPoolLimit}
              disabled={disabled}
              onInput={(e) => edit({ defaultPoolLimit: e.currentTarget.value })}
            />
          </label>
          {draft.pools.map((p, i) => {
            const usage = usageOfPool(p.pool);
            return (
              <div class="pool-row" key={i}>
                {usage ? (
                  <UsageBar
                    label={`pool ${p.pool}${usage.promised > 0 ? ` · ${usage.promised} promised to runs not yet claiming` : ''}`}
                    limit={usage.limit}
                    inUse={usage.inUse}
                    pending={usage.pending}
                  />
                ) : (
                  <input
                    placeholder="new pool name"
                    value={p.pool}
                    disabled={disabled}
                    onInput={(e) =>
                      edit({ pools: draft.pools.map((x, j) => (j === i ? { ...x, pool: e.currentTarget.value } : x)) })
                    }
                  />
                )}
                <label class="field inline">
                  own limit
                  <input
                    type="number"
                    min={0}
                    class="narrow"
                    name={`pool-${p.pool}`}
                    placeholder="default"
                    value={p.limit}
                    disabled={disabled}
                    onInput={(e) =>
                      edit({ pools: draft.pools.map((x, j) => (j === i ? { ...x, limit: e.currentTarget.value } : x)) })
                    }
                  />
                </label>
              </div>
            );
          })}
          <button
            type="button"
            class="secondary"
            disabled={disabled}
            onClick={() => edit({ pools: [...draft.pools, { pool: '', limit: '1' }] })}
          >
            add pool limit
          </button>
        </Section>
      </div>
      <Section title="What if">
        <div class="actions">
          <button type="button" disabled={disabled || !changed} onClick={simulate} data-testid="simulate">
            Preview the change
          </button>
          <button type="button" disabled={disabled || !previewed} onClick={apply} data-testid="apply">
            Apply
          </button>
          <button
            type="button"
            class="secondary"
            disabled={disabled || !changed}
            onClick={() => {
              const fresh = draftOf(data);
              followed.current = JSON.stringify(fresh);
              setDraft(fresh);
              setPreview(null);
            }}
          >
            Discard edits
          </button>
          {changed ? (
            <code class="change">{changeKey}</code>
          ) : (
            <span class="muted">Edit a limit to see what it would do.</span>
          )}
        </div>
        {message ? <Note kind={message.kind}>{message.text}</Note> : null}
        {previewed && preview ? (
          <div class="whatif" data-testid="whatif">
            <p>
              <b>Would admit:</b>{' '}
              {preview.result.wouldAdmit.length === 0
                ? 'nothing'
                : preview.result.wouldAdmit.map((r, i) => (
                    <span key={r.id}>
                      {i > 0 ? ', ' : ''}
                      <RunLink id={r.id} />
                    </span>
                  ))}
            </p>
            <p>
              <b>Still held:</b> {preview.result.stillQueued.length === 0 ? 'nothing' : ''}
            </p>
            <ul class="held">
              {preview.result.stillQueued.map((r) => (
                <li key={r.id}>
                  <RunLink id={r.id} /> <ReasonChips reasons={r.blockedBy} />
                </li>
              ))}
            </ul>
          </div>
        ) : null}
      </Section>
    </div>
  );
}

/** The root-step hold's settings, read-only here (changeConcurrencyConfig or dagster.yaml set them). */
function HoldNote(props: { hold: Config['rootStepHold'] }) {
  const h = props.hold;
  return (
    <Note>
      {h.enabled
        ? `Root-step hold on: a run whose root steps all use full pools waits (run buffer ${h.runBuffer}; a started run's unclaimed root steps count for ${h.startedRunAllotmentSeconds} s).`
        : 'Root-step hold off: runs are admitted whatever their pools; their steps wait for slots.'}
    </Note>
  );
}
