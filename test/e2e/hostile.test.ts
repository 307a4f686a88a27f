/**
 * Hostile input: requests of many distinct kinds that once froze or crashed the
 * server, against a real server on a port, with an admin token so that only the limits refuse
 * them. Each must be refused (4xx) or answered with a typed error within a bound, append
 * nothing, and leave the server answering a normal query promptly; over repetitions the heap
 * after GC must not grow.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEFAULT_SECURITY } from '../../src/auth/settings.js';
import { hashToken } from '../../src/auth/tokens.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { tempDir } from '../support/e2e-http.js';
import { closedWithin, type RawAnswer, type RawRequest, rawHttp, rawSocket } from '../support/raw-http.js';

const ADMIN = 'hostile-admin-token';
const MiB = 1024 * 1024;
/** Generous: the machine is shared; a refusal takes milliseconds when it is alone. */
const BOUND_MS = 5_000;

let server: RunningServer;
let port: number;
let dir: ReturnType<typeof tempDir>;

beforeAll(async () => {
  dir = tempDir('sluice-hostile-');
  const tokensFile = join(dir.path, 'tokens');
  writeFileSync(tokensFile, `admin admin ${hashToken(ADMIN)}\n`);
  server = await startServer(
    {
      ...DEFAULT_SETTINGS,
      port: 0,
      host: '127.0.0.1',
      eventStoreUrl: 'sqlite::memory:',
      security: {
        ...DEFAULT_SECURITY,
        tokensFile,
        connections: {
          ...DEFAULT_SECURITY.connections,
          headersTimeoutMs: 1_000,
          requestTimeoutMs: 2_000,
          keepAliveTimeoutMs: 1_000,
          maxConnections: 64,
          maxSubscriptionsPerToken: 5,
        },
      },
    },
    () => {},
  );
  port = Number(new URL(server.url).port);
  // Something to read: a limit and a queued run.
  for (const query of [
    'mutation { setMaxConcurrentRuns(limit: 0) { __typename } }',
    'mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }',
    'mutation { enqueueRun(input: { runId: "r1", jobName: "j", steps: [{ key: "s", pool: "db" }] }) { __typename } }',
  ]) {
    const answer = await gql({ query });
    expect(answer.status, answer.text).toBe(200);
  }
});

afterAll(async () => {
  await server?.close();
  dir?.remove();
});

function post(body: string | Buffer, headers: Record<string, string> = {}, extra: RawRequest = {}): Promise<RawAnswer> {
  return rawHttp(port, {
    body,
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      authorization: `Bearer ${ADMIN}`,
      ...headers,
    },
    ...extra,
  });
}

function gql(payload: unknown, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return post(JSON.stringify(payload), headers);
}

async function revision(): Promise<bigint> {
  await server.sluice.catchUp();
  return server.sluice.state.revision;
}

/** A 4xx, or a mutation's typed error (a union member named ...Error). */
function refused(answer: RawAnswer): boolean {
  if (answer.status >= 400 && answer.status < 500) return true;
  if (answer.status !== 200 || !answer.json?.data) return false;
  return Object.values(answer.json.data as Record<string, { __typename?: string } | null>).every((field) =>
    Boolean(field?.__typename?.endsWith('Error')),
  );
}

function aliases(count: number, field: string): string {
  return `{ ${Array.from({ length: count }, (_, i) => `a${i}: ${field}`).join(' ')} }`;
}

function nested(depth: number): string {
  return `${'{ a '.repeat(depth)}${'}'.repeat(depth)}`;
}

function multipart(query: string): { body: string; type: string } {
  const boundary = 'sluiceboundary';
  const body = `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${JSON.stringify({ query })}\r\n--${boundary}--\r\n`;
  return { body, type: `multipart/form-data; boundary=${boundary}` };
}

const MUTATE = 'mutation { setMaxConcurrentRuns(limit: 5) { __typename } }';
/** The remote crash of the issue: ~3.9 MB of aliases of an unknown field. */
const INVALID_BIG = (() => {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < 3.9 * 1_000_000; i++) {
    const part = `a${i}: nope `;
    parts.push(part);
    size += part.length;
  }
  return `{ ${parts.join('')}}`;
})();

interface HostileCase {
  name: string;
  send: () => Promise<RawAnswer>;
  /** Default: refused (4xx or typed error). */
  check?: (answer: RawAnswer) => void;
}

function fragmentBomb(levels: number): string {
  const fragments = [`fragment F0 on Query { pools { name } }`];
  for (let i = 1; i <= levels; i++) fragments.push(`fragment F${i} on Query { ...F${i - 1} ...F${i - 1} }`);
  return `{ ...F${levels} } ${fragments.join(' ')}`;
}

const CASES: HostileCase[] = [
  // The examples of the issue
  { name: '3.9 MB invalid query of aliases', send: () => gql({ query: INVALID_BIG }) },
  {
    name: '3.9 MB invalid query as a form POST',
    send: () =>
      post(`query=${encodeURIComponent(INVALID_BIG).slice(0, 3_900_000)}`, {
        'content-type': 'application/x-www-form-urlencoded',
      }),
  },
  {
    name: '3.9 MB invalid query as multipart',
    send: () => {
      const { body, type } = multipart(INVALID_BIG);
      return post(body, { 'content-type': type });
    },
  },
  { name: '800 snapshot aliases', send: () => gql({ query: aliases(800, 'snapshot { position }') }) },
  {
    name: '100 simulate aliases',
    send: () => gql({ query: aliases(100, 'simulate(change: { maxConcurrentRuns: 1 }) { wouldAdmit { id } }') }),
  },
  { name: '1,000 queue aliases', send: () => gql({ query: aliases(1000, 'queue { id }') }) },
  { name: '1,000 __typename aliases', send: () => gql({ query: aliases(1000, '__typename') }) },
  {
    name: '6 snapshots (under the alias limit, over the field cost)',
    send: () => gql({ query: aliases(6, 'snapshot { position queue { id } }') }),
  },
  {
    name: '6 simulations',
    send: () => gql({ query: aliases(6, 'simulate(change: { maxConcurrentRuns: 2 }) { wouldAdmit { id } }') }),
  },
  {
    name: '6 pages of 1,000 runs',
    send: () => gql({ query: aliases(6, 'runs(first: 1000) { edges { cursor } }') }),
  },
  {
    name: '6 pages of 1,000 decisions through a variable',
    send: () =>
      gql({
        query: `query($n: Int) ${aliases(6, 'decisions(first: $n) { edges { cursor } }')}`,
        variables: { n: 1000 },
      }),
  },
  { name: 'a page of 1,001 runs', send: () => gql({ query: '{ runs(first: 1001) { edges { cursor } } }' }) },
  { name: 'a negative page size', send: () => gql({ query: '{ runs(first: -1) { edges { cursor } } }' }) },
  {
    name: '31 aliased mutations',
    send: () => gql({ query: `mutation ${aliases(31, 'setMaxConcurrentRuns(limit: 3) { __typename }')}` }),
  },
  // Depth
  { name: 'nesting 10,000 deep', send: () => gql({ query: nested(10_000) }) },
  { name: 'nesting 2,000 deep (within the token limit)', send: () => gql({ query: nested(2_000) }) },
  { name: 'nesting 3,300 brackets deep with no closing', send: () => gql({ query: '{a'.repeat(3_300) }) },
  {
    name: 'nesting 1,000 lists deep in an argument',
    send: () => gql({ query: `{ pool(name: ${'['.repeat(1000)}"x"${']'.repeat(1000)}) { name } }` }),
  },
  { name: 'nesting 13 deep, over the depth limit', send: () => gql({ query: nested(13) }) },
  // Fragments
  {
    name: 'a fragment cycle',
    send: () => gql({ query: '{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }' }),
  },
  {
    name: 'a fragment spreading itself',
    send: () => gql({ query: '{ ...A } fragment A on Query { pools { name } ...A }' }),
  },
  { name: 'a fragment bomb (2^30 spreads)', send: () => gql({ query: fragmentBomb(30) }) },
  { name: 'an unknown fragment', send: () => gql({ query: '{ ...Nope }' }) },
  // Directives
  {
    name: 'a flood of 1,000 @skip directives',
    send: () => gql({ query: `{ pools ${'@skip(if: false) '.repeat(1000)} { name } }` }),
  },
  {
    name: 'a flood of 1,000 unknown directives',
    send: () => gql({ query: `{ pools ${'@nope '.repeat(1000)} { name } }` }),
  },
  {
    name: '60 @include directives spread over fields',
    send: () =>
      gql({
        query: `{ ${Array.from({ length: 60 }, (_, i) => `p${i}: pools @include(if: true) { name }`).join(' ')} }`,
      }),
  },
  // Variables, lists, strings
  {
    name: 'a 3 MB pool name in a variable',
    send: () =>
      gql({
        query: 'mutation($p: String!) { setPoolLimit(pool: $p, limit: 1) { __typename } }',
        variables: { p: 'x'.repeat(3_000_000) },
      }),
  },
  {
    name: 'a 3 MB pool name as a literal',
    send: () => gql({ query: `mutation { setPoolLimit(pool: "${'x'.repeat(3_000_000)}", limit: 1) { __typename } }` }),
  },
  {
    name: '50,000 tags in an enqueue',
    send: () =>
      gql({
        query: 'mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename } }',
        variables: {
          input: {
            runId: 'many',
            jobName: 'j',
            tags: Array.from({ length: 50_000 }, (_, i) => ({ key: `k${i}`, value: 'v' })),
          },
        },
      }),
  },
  {
    name: '50,000 steps in an enqueue',
    send: () =>
      gql({
        query: 'mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename } }',
        variables: {
          input: { runId: 'steps', jobName: 'j', steps: Array.from({ length: 50_000 }, (_, i) => ({ key: `s${i}` })) },
        },
      }),
  },
  {
    name: '100,000 tag limits in one edit',
    send: () =>
      gql({
        query: 'mutation($l: [TagConcurrencyLimitInput!]!) { setTagConcurrencyLimits(limits: $l) { __typename } }',
        variables: { l: Array.from({ length: 100_000 }, (_, i) => ({ key: `k${i}`, limit: 1 })) },
      }),
  },
  {
    name: 'variables nested 500,000 arrays deep',
    send: () =>
      post(
        `{"query":"query($x: [String]) { pools { name } }","variables":{"x":${'['.repeat(500_000)}${']'.repeat(500_000)}}}`,
      ),
  },
  {
    name: 'a JSON body nested 1,000,000 objects deep',
    send: () => post(`${'{"a":'.repeat(1_000_000)}1${'}'.repeat(1_000_000)}`),
  },
  { name: 'variables that are a string', send: () => gql({ query: '{ pools { name } }', variables: 'x' }) },
  { name: 'an undefined variable', send: () => gql({ query: '{ runs(first: $n) { edges { cursor } } }' }) },
  {
    name: 'an extra variable of 3 MB nobody uses',
    send: () =>
      gql({
        query: MUTATE.replace('5', '$n').replace('mutation', 'mutation($n: Int!)'),
        variables: { n: 'x'.repeat(3_000_000) },
      }),
  },
  // Numbers
  {
    name: 'an Int beyond 2^53 as a literal',
    send: () => gql({ query: 'mutation { setMaxConcurrentRuns(limit: 9007199254740993) { __typename } }' }),
  },
  {
    name: 'an Int beyond 2^31 in a variable',
    send: () =>
      gql({
        query: 'mutation($n: Int!) { setMaxConcurrentRuns(limit: $n) { __typename } }',
        variables: { n: 2 ** 31 },
      }),
  },
  {
    name: 'a 1e308 in a variable',
    send: () =>
      post('{"query":"mutation($n: Int!) { setMaxConcurrentRuns(limit: $n) { __typename } }","variables":{"n":1e308}}'),
  },
  {
    name: 'a 400-digit number in a variable',
    send: () =>
      post(
        `{"query":"mutation($n: Int!) { setMaxConcurrentRuns(limit: $n) { __typename } }","variables":{"n":${'9'.repeat(400)}}}`,
      ),
  },
  {
    name: 'a fraction for an Int',
    send: () =>
      gql({ query: 'mutation($n: Int!) { setMaxConcurrentRuns(limit: $n) { __typename } }', variables: { n: 1.5 } }),
  },
  {
    name: 'a string for an Int',
    send: () =>
      gql({ query: 'mutation($n: Int!) { setMaxConcurrentRuns(limit: $n) { __typename } }', variables: { n: '5' } }),
  },
  {
    name: 'a priority of 2^40',
    send: () =>
      gql({ query: 'mutation { enqueueRun(input: { jobName: "j", priority: 1099511627776 }) { __typename } }' }),
  },
  {
    name: 'a 30-digit position',
    send: () => gql({ query: `{ snapshot(position: "${'9'.repeat(30)}") { position } }` }),
  },
  { name: 'a position past the log', send: () => gql({ query: '{ snapshot(position: "999999999") { position } }' }) },
  { name: 'a negative cursor', send: () => gql({ query: '{ decisions(after: "-1") { edges { cursor } } }' }) },
  { name: 'a date that is not one', send: () => gql({ query: '{ snapshot(at: "yesterday") { position } }' }) },
  // Null bytes and unicode
  { name: 'a null byte in the query text', send: () => gql({ query: '{ pools\u0000 { name } }' }) },
  {
    name: 'a null byte in a pool name',
    send: () =>
      gql({
        query: 'mutation($p: String!) { setPoolLimit(pool: $p, limit: 1) { __typename } }',
        variables: { p: 'a\u0000b' },
      }),
  },
  {
    name: 'a lone surrogate in a job name',
    send: () =>
      post(
        '{"query":"mutation($i: EnqueueRunInput!) { enqueueRun(input: $i) { __typename } }","variables":{"i":{"jobName":"\\ud800"}}}',
      ),
  },
  { name: 'invalid UTF-8 bytes', send: () => post(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0xfd, 0x22, 0x7d])) },
  { name: 'an emoji field name', send: () => gql({ query: '{ 🙂 }' }) },
  {
    name: 'a right-to-left override in an enum',
    send: () => gql({ query: 'mutation { setPoolGranularity(granularity: \u202eOP) { __typename } }' }),
  },
  // Bodies and shapes
  { name: 'invalid JSON', send: () => post('{"query":') },
  { name: 'JSON with trailing garbage', send: () => post('{"query":"{ pools { name } }"} trailing') },
  { name: 'a JSON null body', send: () => post('null') },
  { name: 'a JSON number body', send: () => post('42') },
  { name: 'an empty body', send: () => post('') },
  { name: 'a batch of two operations', send: () => gql([{ query: '{ pools { name } }' }, { query: MUTATE }]) },
  { name: 'a batch of 1,000 operations', send: () => gql(Array.from({ length: 1000 }, () => ({ query: MUTATE }))) },
  { name: 'a query that is a number', send: () => gql({ query: 42 }) },
  { name: 'a query that is null', send: () => gql({ query: null }) },
  { name: 'no query at all', send: () => gql({ variables: {} }) },
  { name: 'two operations and no operationName', send: () => gql({ query: `${MUTATE} query B { pools { name } }` }) },
  { name: 'an unknown operationName', send: () => gql({ query: MUTATE, operationName: 'Nope' }) },
  { name: 'an unknown field', send: () => gql({ query: '{ nope }' }) },
  {
    name: 'a wrong argument type',
    send: () => gql({ query: 'mutation { setMaxConcurrentRuns(limit: "ten") { __typename } }' }),
  },
  {
    name: 'a valid and an invalid mutation together',
    send: () => gql({ query: 'mutation { a: setMaxConcurrentRuns(limit: 5) { __typename } b: nope }' }),
  },
  {
    name: 'an unknown persisted query',
    send: () => gql({ extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } } }),
  },
  // Transport
  {
    name: 'a body over 4 MiB',
    send: () => post(JSON.stringify({ query: `{ pools { name } } #${'x'.repeat(5 * MiB)}` })),
  },
  {
    name: 'a chunked body over 4 MiB',
    send: () => post(JSON.stringify({ query: `{ pools { name } } #${'x'.repeat(5 * MiB)}` }), {}, { chunked: true }),
  },
  {
    name: 'a form POST mutation',
    send: () => post(`query=${encodeURIComponent(MUTATE)}`, { 'content-type': 'application/x-www-form-urlencoded' }),
  },
  {
    name: 'a text/plain POST mutation',
    send: () => post(JSON.stringify({ query: MUTATE }), { 'content-type': 'text/plain' }),
  },
  { name: 'an application/graphql POST mutation', send: () => post(MUTATE, { 'content-type': 'application/graphql' }) },
  {
    name: 'a multipart mutation',
    send: () => {
      const { body, type } = multipart(MUTATE);
      return post(body, { 'content-type': type });
    },
  },
  {
    name: 'a GET mutation',
    send: () =>
      rawHttp(port, {
        method: 'GET',
        path: `/graphql?query=${encodeURIComponent(MUTATE)}`,
        headers: { accept: 'application/json', authorization: `Bearer ${ADMIN}` },
      }),
  },
  {
    name: 'a 40 KB GET query string',
    send: () =>
      rawHttp(port, {
        method: 'GET',
        path: `/graphql?query=${encodeURIComponent(aliases(2000, '__typename'))}`,
        headers: { authorization: `Bearer ${ADMIN}` },
      }),
  },
  {
    name: 'an 8 KB bearer token',
    send: () => gql({ query: '{ pools { name } }' }, { authorization: `Bearer ${'t'.repeat(8192)}` }),
  },
  {
    name: 'a Basic authorization',
    send: () => gql({ query: '{ pools { name } }' }, { authorization: 'Basic YWRtaW46YWRtaW4=' }),
  },
  { name: 'a foreign Host', send: () => gql({ query: MUTATE }, { host: 'attacker.example' }) },
  { name: 'a foreign Origin', send: () => gql({ query: MUTATE }, { origin: 'https://attacker.example' }) },
  { name: 'a null Origin', send: () => gql({ query: MUTATE }, { origin: 'null' }) },
];

describe('hostile input', () => {
  it('has at least 60 distinct kinds of request', () => {
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
    expect(CASES.length).toBeGreaterThanOrEqual(60);
  });

  for (const hostile of CASES) {
    it(`given ${hostile.name}, when it is sent, then it is refused in time, nothing is appended, and a normal query answers`, async () => {
      const before = await revision();
      const started = Date.now();
      let answer: RawAnswer;
      try {
        answer = await hostile.send();
      } catch (error) {
        // A server may close the connection on a body it refuses before reading it all.
        expect(String(error)).toMatch(/ECONNRESET|EPIPE|socket hang up/);
        answer = { status: 400, headers: {}, text: '', json: null };
      }
      expect(Date.now() - started).toBeLessThan(BOUND_MS);
      expect(refused(answer), `HTTP ${answer.status}: ${answer.text.slice(0, 500)}`).toBe(true);
      const messages = JSON.stringify(answer.json ?? {});
      expect(messages).not.toMatch(/\bat \S+ \(|node_modules|\/src\/|SyntaxError|stack|Unexpected error/);
      expect(await revision()).toBe(before);
      await normalQueryAnswers();
    });
  }
});

describe('request bodies without a declared length', () => {
  it('given a chunked body over the limit, it is refused with 413 and the limit named, and nothing is appended', async () => {
    const before = await revision();
    const answer = await post(JSON.stringify({ query: `${MUTATE} #${'x'.repeat(5 * MiB)}` }), {}, { chunked: true });
    expect(answer.status, answer.text).toBe(413);
    expect(answer.text).toMatch(/request body over 4194304 bytes/);
    expect(await revision()).toBe(before);
  });

  it('given a chunked body under the limit, it is answered as any other', async () => {
    const answer = await post(
      JSON.stringify({ query: `{ pools { name } } #${'x'.repeat(64 * 1024)}` }),
      {},
      { chunked: true },
    );
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.data.pools).toEqual(expect.any(Array));
  });
});

async function normalQueryAnswers(): Promise<void> {
  const started = Date.now();
  const answer = await gql({ query: '{ concurrencyConfig { maxConcurrentRuns } pools { name inUse } queue { id } }' });
  expect(answer.status, answer.text).toBe(200);
  expect(answer.json.data.concurrencyConfig.maxConcurrentRuns).toBe(0);
  expect(Date.now() - started).toBeLessThan(BOUND_MS);
}

describe('memory', () => {
  it('given every hostile request three times over, then the heap after GC has not grown', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const settle = async () => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((done) => setTimeout(done, 50));
      }
      return process.memoryUsage().heapUsed;
    };
    const round = async () => {
      for (const hostile of CASES) await hostile.send().catch(() => undefined);
    };
    await round();
    const first = await settle();
    await round();
    await round();
    const last = await settle();
    // Caches are full after the first round; what is left must not grow with repetitions.
    expect(last - first).toBeLessThan(24 * MiB);
  }, 180_000);
});

describe('WebSocket', () => {
  function wsClient(token = ADMIN) {
    return createClient({
      url: `ws://127.0.0.1:${port}/graphql`,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams: { authorization: `Bearer ${token}` },
    });
  }

  function firstResult(
    client: ReturnType<typeof wsClient>,
    query: string,
  ): Promise<{ result?: unknown; error?: unknown }> {
    return new Promise((resolve) => {
      client.subscribe(
        { query },
        {
          next: (result) => resolve({ result }),
          error: (error) => resolve({ error }),
          complete: () => resolve({}),
        },
      );
    });
  }

  it('given a message over 4 MiB, when it is sent, then the socket is closed (1009) and nothing is appended', async () => {
    const before = await revision();
    const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws');
    await new Promise((done) => socket.once('open', done));
    const closed = new Promise<number>((done) => socket.once('close', (code) => done(code)));
    socket.send(
      JSON.stringify({
        type: 'connection_init',
        payload: { authorization: `Bearer ${ADMIN}`, pad: 'x'.repeat(5 * MiB) },
      }),
    );
    expect(await closed).toBe(1009);
    expect(await revision()).toBe(before);
    await normalQueryAnswers();
  });

  it('given a 3.9 MB invalid query over WebSocket, when it is subscribed, then it answers an error naming the limit', async () => {
    const before = await revision();
    const client = wsClient();
    const started = Date.now();
    const outcome = await firstResult(client, INVALID_BIG);
    expect(Date.now() - started).toBeLessThan(BOUND_MS);
    expect(JSON.stringify(outcome.error ?? outcome.result)).toMatch(/Token limit/);
    await client.dispose();
    expect(await revision()).toBe(before);
    await normalQueryAnswers();
  });

  it('given no token in connection_init, when it connects, then it is closed 4403 Forbidden', async () => {
    const client = wsClient('not-a-token');
    const outcome = await firstResult(client, '{ pools { name } }');
    expect((outcome.error as { code?: number }).code).toBe(4403);
    await client.dispose();
  });

  it('given text that is not JSON, when it is sent, then the socket is closed 4400', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws');
    await new Promise((done) => socket.once('open', done));
    const closed = new Promise<number>((done) => socket.once('close', (code) => done(code)));
    socket.send('{"type":');
    expect(await closed).toBe(4400);
    await normalQueryAnswers();
  });

  it('given more subscriptions than MAX_SUBSCRIPTIONS_PER_TOKEN, when one more is made, then it is refused while the others live', async () => {
    const client = wsClient();
    const errors: unknown[] = [];
    const stops: Array<() => void> = [];
    for (let i = 0; i < 5; i++) {
      stops.push(
        client.subscribe(
          { query: 'subscription { dequeueDecisions { position } }' },
          { next: () => {}, error: (e) => errors.push(e), complete: () => {} },
        ),
      );
    }
    await new Promise((done) => setTimeout(done, 300));
    const extra = await firstResult(client, 'subscription { dequeueDecisions { position } }');
    expect(JSON.stringify(extra.result ?? extra.error)).toMatch(/MAX_SUBSCRIPTIONS_PER_TOKEN/);
    expect(errors).toEqual([]);
    for (const stop of stops) stop();
    await client.dispose();
    // Ended subscriptions free their places.
    await new Promise((done) => setTimeout(done, 300));
    const again = wsClient();
    const outcome = await Promise.race([
      firstResult(again, 'subscription { dequeueDecisions { position } }'),
      new Promise<{ result: 'live' }>((done) => setTimeout(() => done({ result: 'live' }), 500)),
    ]);
    expect(outcome.result).toBe('live');
    await again.dispose();
  });
});

describe('slow clients', () => {
  it('given a client that never finishes its headers, then the server closes it within the headers timeout', async () => {
    const socket = await rawSocket(port);
    socket.write('POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const text = await closedWithin(socket, 6_000);
    expect(text).not.toBeNull();
    await normalQueryAnswers();
  });

  it('given a client that sends a body slower than the request timeout, then it answers 408 and closes', async () => {
    const socket = await rawSocket(port);
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Length: 1000\r\n\r\n{"query":`,
    );
    const text = await closedWithin(socket, 8_000);
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    await normalQueryAnswers();
  });

  it('given a request without a Host header, then it is refused', async () => {
    const socket = await rawSocket(port);
    socket.write('GET /graphql?query=%7B__typename%7D HTTP/1.0\r\n\r\n');
    const text = await closedWithin(socket, 6_000);
    expect(text).toMatch(/^HTTP\/1\.[01] (400|403)/);
  });

  it('given more idle connections than MAX_CONNECTIONS, then the extra ones are dropped and the server answers once they time out', async () => {
    const sockets = await Promise.all(Array.from({ length: 80 }, () => rawSocket(port).catch(() => null)));
    const closed = await Promise.all(sockets.map((s) => (s ? closedWithin(s, 8_000) : Promise.resolve(''))));
    expect(closed.every((text) => text !== null)).toBe(true);
    await normalQueryAnswers();
  }, 30_000);
});
