/** Queue: queued runs in admission order, each with a chip for every limit that holds it. */
import { useMemo, useState } from 'preact/hooks';
import { Note, ReasonChips, RunLink, Section, Tags } from '../components';
import { ago } from '../format';
import { useLiveQuery } from '../hooks';
import { RUN_SUMMARY, type RunSummary } from '../types';

export function Queue() {
  const { data, error } = useLiveQuery<{ queue: RunSummary[] }>(`{ queue { ${RUN_SUMMARY} } }`);
  const [tag, setTag] = useState('');
  const [pool, setPool] = useState('');
  const queue = data?.queue ?? [];
  const tagOptions = useMemo(
    () => [...new Set(queue.flatMap((r) => r.tags.map((t) => `${t.key}=${t.value}`)))].sort(),
    [queue],
  );
  const poolOptions = useMemo(() => [...new Set(queue.flatMap((r) => r.pools))].sort(), [queue]);
  const shown = queue
    .map((run, index) => ({ run, place: index + 1 }))
    .filter(({ run }) => !tag || run.tags.some((t) => `${t.key}=${t.value}` === tag))
    .filter(({ run }) => !pool || run.pools.includes(pool));
  const now = Date.now();
  return (
    <div class="page">
      {error ? <Note kind="error">{error}</Note> : null}
      <Section
        title={`Queue (${queue.length})`}
        aside={
          <div class="filters">
            <label>
              tag{' '}
              <select value={tag} onChange={(e) => setTag(e.currentTarget.value)} data-testid="filter-tag">
                <option value="">any</option>
                {tagOptions.map((t) => (
                  <option key={t} value={t}>
                    {t}
                  </option>
                ))}
              </select>
            </label>
            <label>
              pool{' '}
              <select value={pool} onChange={(e) => setPool(e.currentTarget.value)} data-testid="filter-pool">
                <option value="">any</option>
                {poolOptions.map((p) => (
                  <option key={p} value={p}>
                    {p}
                  </option>
                ))}
              </select>
            </label>
          </div>
        }
      >
        {queue.length === 0 ? (
          <p class="muted">{data ? 'Nothing is queued.' : 'Loading…'}</p>
        ) : (
          <table class="table" data-testid="queue-table">
            <thead>
              <tr>
                <th>#</th>
                <th>run</th>
                <th>job</th>
                <th>priority</th>
                <th>tags</th>
                <th>waiting</th>
                <th>held by</th>
              </tr>
            </thead>
            <tbody>
              {shown.map(({ run, place }) => (
                <tr key={run.id} data-run={run.id}>
                  <td class="num">{place}</td>
                  <td>
                    <RunLink id={run.id} />
                  </td>
                  <td>{run.jobName}</td>
                  <td class="num">{run.priority}</td>
                  <td>
                    <Tags tags={run.tags} />
                    {run.pools.length > 0 ? <span class="muted"> · pools {run.pools.join(', ')}</span> : null}
                  </td>
                  <td class="nowrap">{ago(run.enqueuedAt, now).replace(' ago', '')}</td>
                  <td>
                    <ReasonChips reasons={run.blockedBy} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {queue.length > 0 && shown.length === 0 ? <p class="muted">No queued run matches the filter.</p> : null}
      </Section>
    </div>
  );
}
