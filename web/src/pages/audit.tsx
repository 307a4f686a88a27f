/** Audit: every limit edit as recorded (who, when, what it was before and after), filterable by pool. */
import { useState } from 'preact/hooks';
import { Note, Section } from '../components';
import { time } from '../format';
import { useLiveQuery } from '../hooks';

const QUERY = `query($pool: String) { limitChanges(first: 1000, pool: $pool) {
  edges { node { position at actor description } } pageInfo { hasNextPage } } }`;

interface Change {
  position: string;
  at: string;
  actor: string;
  description: string;
}

export function Audit() {
  const [draft, setDraft] = useState('');
  const [pool, setPool] = useState<string | null>(null);
  const { data, error } = useLiveQuery<{
    limitChanges: { edges: { node: Change }[]; pageInfo: { hasNextPage: boolean } };
  }>(QUERY, { pool });
  const changes = data?.limitChanges.edges.map((e) => e.node) ?? [];
  return (
    <Section title="Limit changes">
      <form
        class="what-if"
        onSubmit={(e) => {
          e.preventDefault();
          setPool(draft.trim() === '' ? null : draft.trim());
        }}
      >
        <label>
          Pool <input value={draft} onInput={(e) => setDraft(e.currentTarget.value)} placeholder="every limit" />
        </label>
        <button type="submit">Filter</button>
      </form>
      {error ? <Note kind="error">{error}</Note> : null}
      {data && changes.length === 0 ? <p class="muted">No limit edits{pool ? ` about pool ${pool}` : ''}.</p> : null}
      {changes.length > 0 ? (
        <table class="table" data-testid="limit-changes">
          <caption class="sr-only">limit edits, newest last</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">What changed (before → after)</th>
            </tr>
          </thead>
          <tbody>
            {changes.map((c) => (
              <tr key={c.position}>
                <td>{time(c.at)}</td>
                <td>{c.actor}</td>
                <td>{c.description}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {data?.limitChanges.pageInfo.hasNextPage ? <p class="muted">Showing the first 1,000.</p> : null}
    </Section>
  );
}
