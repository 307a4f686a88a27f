/**
 * A small closed-loop HTTP load generator: `clients` keep-alive connections, each sending one
 * request, waiting for its answer, and sending the next, until the round's time is up. The same
 * generator drives every server compared, so its own cost is the same on both sides.
 */
import { Agent, request } from 'node:http';
import { now } from './harness.js';

export interface LoadOptions {
  url: string;
  /** The POST body, sent as is with content-type application/json. */
  body: string;
  clients: number;
  durationMs: number;
  /** An answer counts as a success only when this holds (status 200 is checked first). */
  accept: (text: string) => boolean;
}

export interface LoadResult {
  /** Milliseconds from sending each successful request to its whole answer. */
  latencies: number[];
  errors: number;
  /** The first error seen, to print. */
  firstError: string | null;
  wallMs: number;
}

export interface Answer {
  status: number;
  text: string;
}

/** One request on an agent's connection; answers the status and the body as text. */
export function send(agent: Agent, url: URL, method: 'GET' | 'POST', body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        agent,
        method,
        headers:
          body === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body).toString() },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    // A hung server must not hang the benchmark.
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs one round of load; never throws for a failed request (it is counted). */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const url = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: options.clients });
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  const t0 = now();
  const deadline = t0 + options.durationMs;
  const client = async () => {
    while (now() < deadline) {
      const sent = now();
      try {
        const answer = await send(agent, url, 'POST', options.body);
        if (answer.status === 200 && options.accept(answer.text)) {
          latencies.push(now() - sent);
          continue;
        }
        firstError ??= `HTTP ${answer.status}: ${answer.text.slice(0, 200)}`;
      } catch (error) {
        firstError ??= (error as Error).message;
      }
      errors++;
    }
  };
  await Promise.all(Array.from({ length: options.clients }, client));
  const wallMs = now() - t0;
  agent.destroy();
  return { latencies, errors, firstError, wallMs };
}

/**
 * Pings a GET route every `everyMs` on a connection of its own until stopped, recording each
 * answer's latency: how long the server's event loop kept a trivial request waiting. A ping
 * that takes longer than the interval delays the next one instead of piling up.
 */
export function startPinger(pingUrl: string, everyMs = 50): { stop: () => Promise<number[]> } {
  const url = new URL(pingUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    let next = now();
    while (running) {
      const sent = now();
      try {
        const answer = await send(agent, url, 'GET');
        if (answer.status === 200) latencies.push(now() - sent);
      } catch {
        // A failed ping is not a latency; the load round reports failures.
      }
      next += everyMs;
      const wait = next - now();
      if (wait > 0) await new Promise((done) => setTimeout(done, wait));
      else next = now();
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      agent.destroy();
      return latencies;
    },
  };
}
