/**
 * Sections 17 and 18, against the real server in a process of its own (serve-child.ts, SQLite):
 *
 * 17: live subscribers. 1,000 enqueues from 10 clients with S `dequeueDecisions` subscribers
 *     over SSE (S = 1, then 1,000 on the same server): enqueue p50 and p99, the time until every
 *     subscriber has every decision, how long after it was made a decision reached the subscriber
 *     served last, the server's CPU time per enqueue (delivering its decision to
 *     every subscriber included: steadier than wall time on a shared machine) and its longest
 *     event-loop stall, side by side.
 *     BENCH_SUBSCRIBERS (1,1000), BENCH_FANOUT_ENQUEUES (1000)
 * 18: stalls: the longest a /health request polled every 5 ms waited (the longest gap in its
 *     answers) while 50 clients enqueue, and while the costliest read of runs with their waits
 *     and decisions that the cost limits let through is answered, over a queue held by limits.
 *     BENCH_STALL_MS (5000)
 */
import { Agent } from 'node:http';
import { join } from 'node:path';
import { type Child, startChild } from './child.js';
import { fmt, heading, load, note, now, ratio, size, sizes, stats, table, tempDir } from './harness.js';
import { runLoad, send, startPinger } from './http-load.js';

const ENQUEUE = JSON.stringify({
  query: 'mutation { enqueueRun(input: { jobName: "bench" }) { __typename ... on RunPayload { run { id status } } } }',
});
const accepted = (text: string) => text.includes('"RunPayload"');
const SUBSCRIPTION = JSON.stringify({ query: 'subscription { dequeueDecisions { position at kind runId message } }' });

async function startSluice(dir: string, name: string): Promise<{ child: Child; url: string }> {
  const child = startChild(name, 'serve-child.ts', ['sluice', join(dir, `${name}.db`)]);
  const ready = await child.next('ready', 60_000);
  return { child, url: String(ready.url) };
}

const DATA = Buffer.from('\ndata: {');

interface Subscriber {
  received: () => number;
  close: () => void;
  /** Since `measure()`: for each decision, how long after its `at` it arrived (ms). */
  delays: number[];
  measure: () => void;
}

/**
 * An SSE subscriber counting the decisions it received. It counts `data: {` lines in the raw
 * bytes without decoding them: a thousand of these share the benchmark's process (and its two
 * cores) with the clients that enqueue, so they should cost as little as they can.
 */
async function subscriber(url: string): Promise<Subscriber> {
  const controller = new AbortController();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: SUBSCRIPTION,
    signal: controller.signal,
  });
  let count = 0;
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  // The end of the previous chunk, so a marker split between two chunks is found once.
  let tail = Buffer.alloc(0);
  const delays: number[] = [];
  // Only one subscriber per size decodes what it gets, to time each decision's delivery.
  let measuring = false;
  let text = '';
  const decoder = new TextDecoder();
  const time = (value: Uint8Array) => {
    const arrived = Date.now();
    const lines = (text + decoder.decode(value, { stream: true })).split('\n');
    text = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('data: {')) continue;
      const at = (JSON.parse(line.slice('data: '.length)) as { data: { dequeueDecisions: { at: string } } }).data
        .dequeueDecisions.at;
      delays.push(arrived - Date.parse(at));
    }
  };
  void (async () => {
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) return;
        if (measuring) time(chunk.value);
        const bytes = Buffer.concat([tail, chunk.value]);
        for (let at = bytes.indexOf(DATA); at !== -1; at = bytes.indexOf(DATA, at + DATA.length)) count++;
        tail = bytes.subarray(Math.max(0, bytes.length - (DATA.length - 1)));
      }
    } catch {
      // Closed by the benchmark.
    }
  })();
  return {
    received: () => count,
    close: () => controller.abort(),
    delays,
    measure: () => {
      measuring = true;
    },
  };
}

/** Sends `total` enqueues from `clients` closed-loop clients; answers each one's latency. */
async function enqueueMany(url: string, total: number, clients: number): Promise<number[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const target = new URL(url);
  const latencies: number[] = [];
  let left = total;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (left > 0) {
        left--;
        const sent = now();
        const answer = await send(agent, target, 'POST', ENQUEUE);
        if (answer.status !== 200 || !accepted(answer.text)) throw new Error(`enqueue failed: ${answer.text}`);
        latencies.push(now() - sent);
      }
    }),
  );
  agent.destroy();
  return latencies;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = now() + timeoutMs;
  while (!condition()) {
    if (now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

export async function subscribersSection(): Promise<void> {
  heading('17. Enqueues with many live subscribers (dequeueDecisions over SSE)');
  const counts = sizes('BENCH_SUBSCRIBERS', [1, 1000]);
  const enqueues = size('BENCH_FANOUT_ENQUEUES', 1000);
  const dir = tempDir();
  const server = await startSluice(dir, 'fan-out');
  const subscribers: Subscriber[] = [];
  const rows: Array<Array<string | number>> = [];
  const p50s: number[] = [];
  const cpus: number[] = [];
  try {
    for (const count of counts) {
      while (subscribers.length < count) subscribers.push(await subscriber(server.url));
      // The last to subscribe is the last served in each round of the fan-out: its delays are the longest.
      const timed = subscribers.at(-1) as Subscriber;
      timed.measure();
      const before = subscribers.map((s) => s.received());
      await server.child.ask({ type: 'loop' });
      const t0 = now();
      const latencies = await enqueueMany(server.url, enqueues, 10);
      const enqueuedMs = now() - t0;
      // Each enqueue is admitted (no limits): one decision per enqueue to every subscriber.
      const delivered = await waitFor(
        () => subscribers.every((s, i) => s.received() - (before[i] ?? 0) >= enqueues),
        120_000,
      );
      const allMs = now() - t0;
      const loop = await server.child.ask({ type: 'loop' });
      const cpuPerEnqueue = Number(loop.cpuMs) / enqueues;
      cpus.push(cpuPerEnqueue);
      if (!delivered) {
        const short = subscribers.map((sub, i) => sub.received() - (before[i] ?? 0)).filter((n) => n < enqueues);
        note(`${short.length} subscribers short of ${enqueues}: ${short.slice(0, 5).join(', ')}`);
      }
      const s = stats(latencies);
      const delivery = stats(timed.delays);
      p50s.push(s.p50);
      rows.push([
        String(count),
        fmt(s.p50),
        fmt(s.p99),
        fmt(enqueuedMs),
        delivered ? fmt(allMs) : 'not all within 120 s',
        `${fmt(delivery.p50)} / ${fmt(delivery.p99)}`,
        fmt(cpuPerEnqueue),
        fmt(Number(loop.maxMs)),
      ]);
    }
  } finally {
    for (const s of subscribers) s.close();
    await server.child.stop();
  }
  table(
    [
      'subscribers',
      'enqueue p50 ms',
      'p99 ms',
      'all enqueued ms',
      'all delivered to all ms',
      'delivery p50 / p99 ms (last subscriber)',
      'server CPU per enqueue ms',
      'longest loop stall ms',
    ],
    rows,
  );
  if (p50s.length > 1) {
    note(
      `at ${counts.at(-1)} vs ${counts[0]} subscribers: enqueue p50 ${ratio(p50s.at(-1) as number, p50s[0] as number)} (goal ≤1.5×), server CPU per enqueue (its decision delivered to every subscriber included) ${ratio(cpus.at(-1) as number, cpus[0] as number)}; ${enqueues} enqueues from 10 clients. ${load()}.`,
    );
  }
}

const gql = (url: string, agent: Agent, query: string) =>
  send(agent, new URL(url), 'POST', JSON.stringify({ query })).then((answer) => {
    if (answer.status !== 200 || answer.text.includes('"errors"')) throw new Error(answer.text.slice(0, 300));
    return answer.text;
  });

export async function stallsSection(): Promise<void> {
  heading('18. Stalls: the longest wait of a /health polled every 5 ms');
  const durationMs = size('BENCH_STALL_MS', 5000);
  const dir = tempDir();
  const server = await startSluice(dir, 'stalls');
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const health = new URL('/health', server.url).toString();
  const rows: Array<Array<string | number>> = [];
  const row = (what: string, pings: number[]) => {
    const s = stats(pings);
    rows.push([what, String(s.n), fmt(s.p99), fmt(s.max)]);
  };
  try {
    const idle = startPinger(health, 5);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    row('idle', await idle.stop());

    // A queue held by limits that change as runs finish, so queued runs wait in many stretches.
    await gql(
      server.url,
      agent,
      'mutation { changeConcurrencyConfig(change: { maxConcurrentRuns: 10, tagConcurrencyLimits: [{ key: "team", applyLimitPerUniqueValue: true, limit: 2 }] }) { __typename } }',
    );
    const growing = startPinger(health, 5);
    const enqueueTeam = (i: number) =>
      gql(
        server.url,
        agent,
        `mutation { enqueueRun(input: { jobName: "bench", tags: [{ key: "team", value: "t${i % 8}" }] }) { __typename ... on RunPayload { run { id status } } } }`,
      );
    const inProgress = async () =>
      (
        JSON.parse(
          await gql(server.url, agent, '{ runs(first: 20, statuses: [STARTING]) { edges { node { id } } } }'),
        ) as { data: { runs: { edges: Array<{ node: { id: string } }> } } }
      ).data.runs.edges.map((e) => e.node.id);
    for (let i = 0; i < 600; i++) {
      await enqueueTeam(i);
      if (i % 3 === 2) {
        const [runId] = await inProgress();
        if (runId) {
          await gql(
            server.url,
            agent,
            `mutation { markRunFinished(runId: "${runId}", status: SUCCESS) { __typename } }`,
          );
        }
      }
    }
    row('while the log grows (600 enqueues and 200 finishes, one client)', await growing.stop());

    const loaded = startPinger(health, 5);
    const result = await runLoad({ url: server.url, body: ENQUEUE, clients: 50, durationMs, accept: accepted });
    row(`while 50 clients enqueue (${result.latencies.length} in ${fmt(durationMs / 1000)} s)`, await loaded.stop());

    const reading = startPinger(health, 5);
    const t0 = now();
    const text = await gql(
      server.url,
      agent,
      '{ runs(first: 200) { edges { node { id waits { from to reasons { message } } decisions { kind message reasons { message } } blockedBy { message } } } } }',
    );
    const readMs = now() - t0;
    row(
      `while runs(first: 200) { waits decisions blockedBy } is answered (${fmt(readMs)} ms, ${fmt(text.length / 1e6)} MB)`,
      await reading.stop(),
    );
  } finally {
    agent.destroy();
    await server.child.stop();
  }
  table(['while', 'pings', 'p99 ms', 'longest ms'], rows);
  note('Goal: longest ≤50 ms. The largest page the cost limits let through with waits and decisions is 200 runs.');
}
