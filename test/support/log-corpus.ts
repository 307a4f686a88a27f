/**
 * The log corpus: logs written by each released Sluice, each beside every answer that Sluice
 * gave about it. scripts/record-log-fixture.ts asks the questions below of the server that writes
 * a log; test/app/log-corpus.test.ts asks the same questions, word for word, of today's server on
 * that log and expects the same answers.
 */

// biome-ignore lint/suspicious/noExplicitAny: answers are JSON whose shape the query decides
export type Recorded = any;

/** An event as the store of the writing server handed it back. */
export interface CorpusEvent {
  stream: string;
  revision: string;
  position: string;
  type: string;
  schemaVersion: number;
  data: unknown;
  actor: string;
  at: string;
}

/** One question and the answer it got. */
export type CorpusAnswer =
  | { kind: 'query'; name: string; query: string; variables: Record<string, unknown>; data: Recorded }
  | { kind: 'subscription'; name: string; query: string; variables: Record<string, unknown>; items: Recorded[] }
  | { kind: 'why'; name: string; runId: string; text: string }
  | { kind: 'snapshot-text'; name: string; position: string; text: string };

export interface CorpusAnswers {
  about: string;
  /** The instant the answers were taken at: `sluice why` measures waits up to it. */
  recordedAt: string;
  features: { hold: boolean };
  answers: CorpusAnswer[];
}

const REASON = 'kind key value pool limit inUse message';
const DECISION = `position at kind runId stepKey pool reasons { ${REASON} } message`;
const CLAIM = `runId stepKey pool granted released reasons { ${REASON} }`;

/** The selections, as the writing server's schema allows (older ones lack later fields). */
export function CORPUS_QUERIES(has: { hold: boolean }) {
  const pool = `name limit explicitLimit inUse pending activeRunIds${has.hold ? ' promised' : ''}`;
  const config = `maxConcurrentRuns poolGranularity defaultPoolLimit tagConcurrencyLimits { key value applyLimitPerUniqueValue limit }${
    has.hold ? ' rootStepHold { enabled runBuffer startedRunAllotmentSeconds }' : ''
  }`;
  const run = `id jobName status priority tags { key value } pools steps { key pool priority } maxConcurrentSteps leaseSeconds
    enqueuedAt admittedAt startedAt finishedAt cancelRequestedAt lastHeartbeatAt finishReason failureReason
    ignoredTags { key reason } deadline { at reason status }
    blockedBy { ${REASON} } waits { from to reasons { ${REASON} } } decisions { ${DECISION} } stepClaims { ${CLAIM} }`;
  const pastRun = `id status priority blockedBy { ${REASON} } stepClaims { ${CLAIM} }`;
  return {
    snapshot: `query($position: String, $at: DateTime) { snapshot(position: $position, at: $at) {
      position at config { ${config} } queue { ${pastRun} } inProgress { ${pastRun} } pools { ${pool} } } }`,
    runs: `query($after: String, $statuses: [RunStatus!]) { runs(first: 4, after: $after, statuses: $statuses) {
      edges { cursor node { ${run} } } pageInfo { hasNextPage endCursor } } }`,
    run: `query($id: ID!) { run(id: $id) { ${run} } }`,
    now: `{ queue { id blockedBy { ${REASON} } } pools { ${pool} } concurrencyConfig { ${config} } }`,
    pool: `query($name: String!) { pool(name: $name) { ${pool} } }`,
    decisions: `query($after: String, $runId: ID, $pool: String) { decisions(first: 6, after: $after, runId: $runId, pool: $pool) {
      edges { cursor node { ${DECISION} } } pageInfo { hasNextPage endCursor } } }`,
    limitChanges: `query($after: String, $pool: String) { limitChanges(first: 5, after: $after, pool: $pool) {
      edges { cursor node { position at actor description } } pageInfo { hasNextPage endCursor } } }`,
    dequeueDecisions: `subscription($after: String, $pool: String) { dequeueDecisions(after: $after, pool: $pool) { ${DECISION} } }`,
  };
}

export interface Asker {
  ask(query: string, variables: Record<string, unknown>): Promise<Recorded>;
  /** The GraphQL endpoint, for subscriptions over SSE. */
  url: string;
  why(runId: string, now: Date): Promise<string>;
  snapshotText(position: string): Promise<string>;
  queries: ReturnType<typeof CORPUS_QUERIES>;
  features: { hold: boolean };
}

/** Reads a subscription over SSE until `count` items arrived. */
export async function subscribeFor(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  count: number,
): Promise<Recorded[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 20_000);
  const items: Recorded[] = [];
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query, variables }),
      signal: abort.signal,
    });
    const reader = response.body?.getReader();
    if (!reader) throw new Error('no body');
    const decoder = new TextDecoder();
    let buffer = '';
    while (items.length < count) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trim())
          .join('');
        if (!block.includes('event: next') || !data) continue;
        const payload = JSON.parse(data) as { data?: Recorded; errors?: unknown };
        if (payload.errors) throw new Error(JSON.stringify(payload.errors));
        items.push(payload.data);
      }
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return items;
}

async function pages(
  asker: Asker,
  name: string,
  query: string,
  field: string,
  variables: Record<string, unknown>,
  out: CorpusAnswer[],
): Promise<Recorded[]> {
  const nodes: Recorded[] = [];
  let after: string | null = null;
  for (let page = 0; page < 200; page++) {
    const vars = { ...variables, after };
    const data = await asker.ask(query, vars);
    out.push({ kind: 'query', name: `${name} page ${page}`, query, variables: vars, data });
    nodes.push(...data[field].edges.map((e: Recorded) => e.node));
    if (!data[field].pageInfo.hasNextPage) break;
    after = data[field].pageInfo.endCursor;
  }
  return nodes;
}

/** Asks every question of the corpus; the same function serves recording and checking. */
export async function recordAnswers(asker: Asker, recordedAt = new Date()): Promise<CorpusAnswers> {
  const q = asker.queries;
  const out: CorpusAnswer[] = [];
  const query = async (name: string, text: string, variables: Record<string, unknown> = {}) => {
    const data = await asker.ask(text, variables);
    out.push({ kind: 'query', name, query: text, variables, data });
    return data;
  };

  // Every position of the log, then every instant an event was recorded at and between them.
  const last = BigInt((await asker.ask('{ snapshot { position } }', {})).snapshot.position);
  const times: string[] = [];
  for (let p = 0n; p <= last; p++) {
    const data = await query(`snapshot position ${p}`, q.snapshot, { position: String(p) });
    times.push(data.snapshot.at);
  }
  const instants = new Set<string>([new Date(Date.parse(times[0] ?? recordedAt.toISOString()) - 1000).toISOString()]);
  times.forEach((at, i) => {
    instants.add(at);
    const next = times[i + 1];
    if (next && next !== at) instants.add(new Date((Date.parse(at) + Date.parse(next)) / 2).toISOString());
  });
  for (const at of instants) await query(`snapshot at ${at}`, q.snapshot, { at });

  const runs = await pages(asker, 'runs', q.runs, 'runs', {}, out);
  for (const statuses of [['QUEUED'], ['STARTING', 'STARTED', 'CANCELING'], ['SUCCESS', 'FAILURE', 'CANCELED']]) {
    await pages(asker, `runs ${statuses.join(',')}`, q.runs, 'runs', { statuses }, out);
  }
  for (const run of runs) await query(`run ${run.id}`, q.run, { id: run.id });
  await query('run missing', q.run, { id: 'never-enqueued' });
  const now = await query('now', q.now);
  const poolNames: string[] = now.pools.map((p: Recorded) => p.name);
  for (const name of [...poolNames, 'never-named']) await query(`pool ${name}`, q.pool, { name });

  const decisions = await pages(asker, 'decisions', q.decisions, 'decisions', {}, out);
  for (const run of runs)
    await pages(asker, `decisions of ${run.id}`, q.decisions, 'decisions', { runId: run.id }, out);
  for (const name of poolNames)
    await pages(asker, `decisions of pool ${name}`, q.decisions, 'decisions', { pool: name }, out);
  await pages(asker, 'limitChanges', q.limitChanges, 'limitChanges', {}, out);
  for (const name of poolNames)
    await pages(asker, `limitChanges of pool ${name}`, q.limitChanges, 'limitChanges', { pool: name }, out);

  const streams: Array<[string, Record<string, unknown>, number]> = [
    ['dequeueDecisions from the start', { after: '0' }, decisions.length],
    ['dequeueDecisions after the tenth', { after: decisions[9]?.position ?? '0' }, Math.max(decisions.length - 10, 0)],
  ];
  for (const [name, variables, count] of streams) {
    const items = count === 0 ? [] : await subscribeFor(asker.url, q.dequeueDecisions, variables, count);
    out.push({ kind: 'subscription', name, query: q.dequeueDecisions, variables, items });
  }

  for (const run of runs) {
    out.push({ kind: 'why', name: `why ${run.id}`, runId: run.id, text: await asker.why(run.id, recordedAt) });
  }
  for (let p = 0n; p <= last; p += 7n) {
    const position = String(p);
    out.push({
      kind: 'snapshot-text',
      name: `sluice snapshot ${p}`,
      position,
      text: await asker.snapshotText(position),
    });
  }
  return {
    about: 'A log written by a released Sluice, with every answer that Sluice gave about it.',
    recordedAt: recordedAt.toISOString(),
    features: asker.features,
    answers: out,
  };
}
