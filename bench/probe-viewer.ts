import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Sluice } from '../src/app/sluice.js';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import { createSluiceYoga } from '../src/server.js';

const N = Number(process.env.N ?? 3000);
const dir = mkdtempSync(join(tmpdir(), 'probe-'));
const store = openSqliteStore({ path: join(dir, 'log.db'), synchronous: 'NORMAL' });
const sluice = await Sluice.open({ store, warn: () => {} });
await sluice.execute({ type: 'ChangeConcurrencyConfig', change: { maxConcurrentRuns: 10, tagConcurrencyLimits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 2 }] } }, 'b');
let t = performance.now();
for (let i = 0; i < N; i++) {
  await sluice.execute({ type: 'EnqueueRun', input: { runId: `r${i}`, jobName: 'j', tags: [{ key: 'team', value: `t${i % 8}` }], steps: [], priority: null, maxConcurrentSteps: null, leaseSeconds: null } }, 'b');
  if (process.env.CHURN && i % 3 === 0 && i > 20) {
    const running = [...sluice.state.inProgress][0];
    if (running) await sluice.execute({ type: 'MarkRunFinished', runId: running, status: 'SUCCESS' }, 'b');
  }
}
console.log('enqueued', N, 'in', (performance.now() - t).toFixed(0), 'ms; revision', sluice.state.revision);
const yoga = createSluiceYoga(sluice);
const q = `{ runs(first: 1000) { edges { node { id status waits { from to reasons { kind message } } decisions { kind message reasons { kind message } } blockedBy { kind message } } } } }`;
for (let k = 0; k < 2; k++) {
  t = performance.now();
  const res = await yoga.fetch('http://x/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: q }) });
  const text = await res.text();
  const nodes = JSON.parse(text).data.runs.edges.map((e: any) => e.node); const w = nodes.map((n: any) => n.waits.length).sort((a: number, b: number) => a - b); const d = nodes.map((n: any) => n.decisions.length).sort((a: number, b: number) => a - b); console.log('waits p50/max', w[500], w.at(-1), 'decisions p50/max', d[500], d.at(-1), 'statuses', Object.entries(nodes.reduce((m: any, n: any) => ((m[n.status] = (m[n.status] ?? 0) + 1), m), {})));
  console.log('query', (performance.now() - t).toFixed(0), 'ms', text.length, 'bytes', text.slice(0, 200));
}
await sluice.close(); await store.close();
