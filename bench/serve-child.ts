/**
 * A server for the throughput section, in a process of its own (see child.ts):
 *   serve-child.ts sluice DB_PATH   the real server (startServer) on an SQLite file, defaults
 *   serve-child.ts bare             a bare graphql-yoga server with one trivial mutation
 * It reports its URL, then answers `loop` with its event loop's delay (perf_hooks'
 * monitorEventLoopDelay) and the CPU time it used since the last `loop`, and `memory` with its
 * heap and RSS.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createSchema, createYoga } from 'graphql-yoga';
import { DEFAULT_SECURITY } from '../src/auth/settings.js';
import { startServer } from '../src/server.js';
import { DEFAULT_SETTINGS } from '../src/settings.js';
import { failStart, type Message, serveParent, tell } from './child.js';

/**
 * Answers the same request body as Sluice's enqueueRun (`enqueueRun(input: {jobName})` with an
 * inline fragment on RunPayload), doing nothing but counting.
 */
function startBare(): Promise<{ url: string; close: () => Promise<void> }> {
  let enqueued = 0;
  const yoga = createYoga({
    schema: createSchema({
      typeDefs: `
        input EnqueueRunInput { jobName: String! }
        type Run { id: ID! status: String! }
        type RunPayload { run: Run! }
        type Query { enqueued: Int! }
        type Mutation { enqueueRun(input: EnqueueRunInput!): RunPayload! }
      `,
      resolvers: {
        Query: { enqueued: () => enqueued },
        Mutation: { enqueueRun: () => ({ run: { id: `run-${++enqueued}`, status: 'QUEUED' } }) },
      },
    }),
    graphqlEndpoint: '/graphql',
    landingPage: false,
    graphiql: false,
    logging: 'info',
  });
  const http = createServer(yoga);
  return new Promise((done, fail) => {
    http.once('error', fail);
    http.listen(0, '127.0.0.1', () => {
      const { port } = http.address() as AddressInfo;
      done({
        url: `http://127.0.0.1:${port}/graphql`,
        close: () =>
          new Promise<void>((closed) => {
            http.close(() => closed());
            http.closeAllConnections();
          }),
      });
    });
  });
}

async function main(): Promise<void> {
  const [mode, dbPath] = process.argv.slice(2);
  const delay = monitorEventLoopDelay({ resolution: 10 });
  let server: { url: string; close: () => Promise<void> };
  if (mode === 'bare') server = await startBare();
  else if (mode === 'sluice' && dbPath) {
    server = await startServer(
      {
        ...DEFAULT_SETTINGS,
        port: 0,
        host: '127.0.0.1',
        eventStoreUrl: `sqlite:${dbPath}`,
        // Room for the subscribers section's thousand SSE streams (all anonymous in open mode).
        security: {
          ...DEFAULT_SECURITY,
          connections: { ...DEFAULT_SECURITY.connections, maxConnections: 5_000, maxSubscriptionsPerToken: 5_000 },
        },
      },
      () => {},
    );
  } else throw new Error('usage: serve-child.ts sluice DB_PATH | bare');
  delay.enable();
  let cpuFrom = process.cpuUsage();
  serveParent(
    async (message: Message) => {
      if (message.type === 'loop') {
        const cpu = process.cpuUsage(cpuFrom);
        const answer = {
          type: 'loop',
          maxMs: delay.max / 1e6,
          p99Ms: delay.percentile(99) / 1e6,
          cpuMs: (cpu.user + cpu.system) / 1000,
        };
        delay.reset();
        cpuFrom = process.cpuUsage();
        return answer;
      }
      if (message.type === 'memory') {
        const usage = process.memoryUsage();
        return { type: 'memory', heapUsed: usage.heapUsed, rss: usage.rss };
      }
      throw new Error(`unknown request ${message.type}`);
    },
    () => server.close(),
  );
  tell({ type: 'ready', url: server.url });
}

main().catch(failStart);
