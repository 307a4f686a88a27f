/**
 * Section 7: enqueue throughput over HTTP, the real server against a bare graphql-yoga server
 * answering one trivial mutation, with the same load generator and the same request body, in
 * alternating rounds; and how long the server's event loop stalls meanwhile (a /health ping
 * every 50 ms on a connection of its own, and monitorEventLoopDelay inside the server).
 */
import { join } from 'node:path';
import { type Child, startChild } from './child.js';
import { heading, load, note, size, sizes, stats, table, tempDir } from './harness.js';
import { runLoad, startPinger } from './http-load.js';

const BODY = JSON.stringify({
  query: 'mutation { enqueueRun(input: { jobName: "bench" }) { __typename ... on RunPayload { run { id status } } } }',
});
const accepted = (text: string) => text.includes('"RunPayload"');

interface Server {
  name: string;
  child: Child;
  url: string;
}

interface Tally {
  latencies: number[];
  requests: number;
  errors: number;
  firstError: string | null;
  wallMs: number;
  pings: number[];
  loopMaxMs: number;
  loopP99Ms: number[];
  cpuMs: number;
}

const emptyTally = (): Tally => ({
  latencies: [],
  requests: 0,
  errors: 0,
  firstError: null,
  wallMs: 0,
  pings: [],
  loopMaxMs: 0,
  loopP99Ms: [],
  cpuMs: 0,
});

async function start(name: string, args: string[]): Promise<Server> {
  const child = startChild(name, 'serve-child.ts', args);
  const ready = await child.next('ready', 60_000);
  return { name, child, url: String(ready.url) };
}

async function round(server: Server, clients: number, durationMs: number, into: Tally): Promise<void> {
  await server.child.ask({ type: 'loop' });
  const pinger = startPinger(new URL('/health', server.url).toString(), 50);
  const result = await runLoad({ url: server.url, body: BODY, clients, durationMs, accept: accepted });
  const pings = await pinger.stop();
  const loop = await server.child.ask({ type: 'loop' });
  for (const l of result.latencies) into.latencies.push(l);
  into.requests += result.latencies.length;
  into.errors += result.errors;
  into.firstError ??= result.firstError;
  into.wallMs += result.wallMs;
  for (const p of pings) into.pings.push(p);
  into.loopMaxMs = Math.max(into.loopMaxMs, Number(loop.maxMs));
  into.loopP99Ms.push(Number(loop.p99Ms));
  into.cpuMs += Number(loop.cpuMs);
}

export async function throughputSection(): Promise<void> {
  heading('7. Enqueue throughput over HTTP: Sluice (startServer, SQLite FULL) vs a bare graphql-yoga server');
  // Client counts are what is compared, so BENCH_SCALE leaves them alone.
  const clientCounts = process.env.BENCH_HTTP_CLIENTS ? sizes('BENCH_HTTP_CLIENTS', []) : [1, 10, 50];
  const rounds = size('BENCH_HTTP_ROUNDS', 3, 2);
  const roundMs = size('BENCH_HTTP_ROUND_MS', 3_000, 1_000);
  const dir = tempDir();
  const sluice = await start('sluice server', ['sluice', join(dir, 'events.db')]);
  const bare = await start('bare yoga server', ['bare']);
  try {
    note(`${rounds} rounds of ${roundMs / 1000} s per server and client count, alternating which server goes first;`);
    note('closed loop: each client sends its next request when the last one is answered (keep-alive, node:http).');
    note(`Each server runs in a process of its own; the load generator in this one. ${load()} at start.`);
    // Untimed warm-up: JIT, the SQLite file and WAL, the agents' connections.
    for (const server of [sluice, bare]) {
      await runLoad({ url: server.url, body: BODY, clients: 10, durationMs: 1_000, accept: accepted });
    }
    const rows: Array<Array<string | number>> = [];
    const ratios: Array<Array<string | number>> = [];
    for (const clients of clientCounts) {
      const tallies = new Map<Server, Tally>([
        [sluice, emptyTally()],
        [bare, emptyTally()],
      ]);
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? [sluice, bare] : [bare, sluice];
        for (const server of order) await round(server, clients, roundMs, tallies.get(server) as Tally);
      }
      const figures = new Map<Server, { rps: number; p99: number; cpu: number }>();
      for (const [server, t] of tallies) {
        const s = stats(t.latencies);
        const pings = stats(t.pings);
        const rps = (t.requests / t.wallMs) * 1000;
        figures.set(server, { rps, p99: s.p99, cpu: t.cpuMs / Math.max(1, t.requests) });
        rows.push([
          `${server.name}, ${clients} client${clients === 1 ? '' : 's'}`,
          rps,
          s.p50,
          s.p99,
          s.max,
          (t.cpuMs / Math.max(1, t.requests)) * 1000,
          t.errors,
          pings.p99,
          pings.max,
          Math.max(...t.loopP99Ms),
          t.loopMaxMs,
        ]);
        if (t.firstError) note(`${server.name}, ${clients} clients: first failure: ${t.firstError}`);
      }
      const a = figures.get(sluice) as { rps: number; p99: number; cpu: number };
      const b = figures.get(bare) as { rps: number; p99: number; cpu: number };
      ratios.push([
        `${clients}`,
        `${(a.rps / b.rps).toFixed(2)}×`,
        `${(a.p99 / b.p99).toFixed(1)}×`,
        `${(a.cpu / b.cpu).toFixed(1)}×`,
      ]);
    }
    console.log();
    table(
      [
        'server, clients',
        'req/s',
        'p50 ms',
        'p99 ms',
        'max ms',
        'CPU µs/req',
        'errors',
        'ping p99',
        'ping max',
        'loop p99',
        'loop max',
      ],
      rows,
    );
    console.log();
    table(['clients', 'Sluice/bare req/s', 'Sluice/bare p99', 'Sluice/bare CPU/req'], ratios);
    const memory = await sluice.child.ask({ type: 'memory' });
    note('');
    note("CPU µs/req: the server process's CPU time (user + system) per answered request, which a");
    note('shared machine distorts less than the wall-clock figures.');
    note('ping: GET /health every 50 ms on its own connection during the load, ms from send to answer.');
    note("loop: the server process's event-loop delay (monitorEventLoopDelay, 10 ms resolution), ms;");
    note('"loop p99" is the worst round\'s p99. Goals: Sluice/bare ≥ 0.7× at 50 clients,');
    note('p99 ≤ 50 ms, longest stall (ping max) ≤ 50 ms.');
    note(
      `Sluice process after the section: heap ${(Number(memory.heapUsed) / 2 ** 20).toFixed(0)} MiB, ` +
        `RSS ${(Number(memory.rss) / 2 ** 20).toFixed(0)} MiB (every enqueued run stays queued); ${load()}.`,
    );
  } finally {
    await sluice.child.stop();
    await bare.child.stop();
  }
}
