/**
 * No cross-site access, against a real server: CORS preflights and POSTs from a
 * foreign origin, form and multipart bodies, cross-origin WebSockets and foreign Host headers
 * are refused and append nothing; the same origin and CORS_ORIGINS work.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEFAULT_SECURITY } from '../../src/auth/settings.js';
import { hashToken } from '../../src/auth/tokens.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { tempDir } from '../support/e2e-http.js';
import { type RawAnswer, rawHttp } from '../support/raw-http.js';

const ADMIN = 'cross-site-admin';
const LISTED = 'https://ui.example.com';
const FOREIGN = 'https://attacker.example';
const MUTATE = JSON.stringify({ query: 'mutation { setMaxConcurrentRuns(limit: 0) { __typename } }' });

let server: RunningServer;
let port: number;
let self: string;
let dir: ReturnType<typeof tempDir>;

beforeAll(async () => {
  dir = tempDir('sluice-cross-site-');
  const tokensFile = join(dir.path, 'tokens');
  writeFileSync(tokensFile, `admin admin ${hashToken(ADMIN)}\n`);
  server = await startServer(
    {
      ...DEFAULT_SETTINGS,
      port: 0,
      host: '127.0.0.1',
      eventStoreUrl: 'sqlite::memory:',
      security: { ...DEFAULT_SECURITY, tokensFile, corsOrigins: [LISTED], allowedHosts: ['sluice.internal'] },
    },
    () => {},
  );
  port = Number(new URL(server.url).port);
  self = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  await server?.close();
  dir?.remove();
});

async function revision(): Promise<bigint> {
  await server.sluice.catchUp();
  return server.sluice.state.revision;
}

/** Sends, and checks that nothing was appended whatever the answer. */
async function appendsNothing(send: () => Promise<RawAnswer>): Promise<RawAnswer> {
  const before = await revision();
  const answer = await send();
  expect(await revision()).toBe(before);
  return answer;
}

function post(headers: Record<string, string>, body = MUTATE): Promise<RawAnswer> {
  return rawHttp(port, {
    body,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}`, ...headers },
  });
}

function preflight(origin: string): Promise<RawAnswer> {
  return rawHttp(port, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type',
    },
  });
}

describe('CORS', () => {
  it('given a preflight from a foreign origin, then it is refused with no CORS headers', async () => {
    const answer = await preflight(FOREIGN);
    expect(answer.status).toBe(403);
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(answer.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('given a preflight from a listed origin, then it names that origin, never a wildcard', async () => {
    const answer = await preflight(LISTED);
    expect(answer.status).toBe(204);
    expect(answer.headers['access-control-allow-origin']).toBe(LISTED);
    expect(answer.headers['access-control-allow-credentials']).toBe('true');
    expect(String(answer.headers['access-control-allow-headers'])).toMatch(/authorization/);
  });

  it('given a POST from a foreign origin, even with a valid token, then it is refused and nothing is appended', async () => {
    const answer = await appendsNothing(() => post({ origin: FOREIGN }));
    expect(answer.status).toBe(403);
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('given a POST from a sandboxed page (Origin: null), then it is refused, never answered with null', async () => {
    const answer = await appendsNothing(() => post({ origin: 'null' }));
    expect(answer.status).toBe(403);
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('given a POST from a listed origin, then it runs and the answer is readable by that origin only', async () => {
    const answer = await post(
      { origin: LISTED },
      JSON.stringify({ query: '{ concurrencyConfig { maxConcurrentRuns } }' }),
    );
    expect(answer.status).toBe(200);
    expect(answer.headers['access-control-allow-origin']).toBe(LISTED);
  });

  it('given a POST from the same origin, then it runs', async () => {
    const before = await revision();
    const answer = await post({ origin: self });
    expect(answer.status, answer.text).toBe(200);
    expect(await revision()).toBeGreaterThan(before);
  });
});

describe('bodies a page can send without a preflight', () => {
  const query = 'mutation { setMaxConcurrentRuns(limit: 3) { __typename } }';
  const boundary = 'xyz';
  const cases: Array<[string, string, string]> = [
    ['a form', 'application/x-www-form-urlencoded', `query=${encodeURIComponent(query)}`],
    [
      'multipart',
      `multipart/form-data; boundary=${boundary}`,
      `--${boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\n${query}\r\n--${boundary}--\r\n`,
    ],
    ['text/plain JSON', 'text/plain', JSON.stringify({ query })],
  ];
  for (const [what, type, body] of cases) {
    it(`given ${what} POST from the same origin with a token, then it cannot mutate (415)`, async () => {
      const answer = await appendsNothing(() => post({ 'content-type': type, origin: self }, body));
      expect(answer.status).toBe(415);
    });
  }

  it('given a mutation in a GET, then it cannot mutate (405)', async () => {
    const answer = await appendsNothing(() =>
      rawHttp(port, {
        method: 'GET',
        path: `/graphql?query=${encodeURIComponent(query)}`,
        headers: { accept: 'application/json', authorization: `Bearer ${ADMIN}` },
      }),
    );
    expect(answer.status).toBe(405);
  });
});

describe('Host', () => {
  for (const path of ['/graphql', '/health', '/ready', '/']) {
    it(`given a foreign Host (DNS rebinding) on ${path}, then it is refused`, async () => {
      const answer = await appendsNothing(() =>
        rawHttp(port, {
          method: path === '/graphql' ? 'POST' : 'GET',
          path,
          body: path === '/graphql' ? MUTATE : undefined,
          headers: {
            host: `attacker.example:${port}`,
            origin: `http://attacker.example:${port}`,
            'content-type': 'application/json',
            authorization: `Bearer ${ADMIN}`,
          },
        }),
      );
      expect(answer.status).toBe(403);
      expect(answer.text).toMatch(/ALLOWED_HOSTS/);
    });
  }

  it('given localhost or a name in ALLOWED_HOSTS, then it answers', async () => {
    for (const host of [`localhost:${port}`, 'sluice.internal']) {
      const answer = await rawHttp(port, {
        body: JSON.stringify({ query: '{ concurrencyConfig { maxConcurrentRuns } }' }),
        headers: { host, 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      });
      expect(answer.status, host).toBe(200);
    }
  });
});

describe('WebSocket', () => {
  function upgrade(headers: Record<string, string>): Promise<'open' | number> {
    return new Promise((resolve) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws', { headers });
      socket.once('open', () => {
        socket.close();
        resolve('open');
      });
      socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      socket.once('error', () => undefined);
    });
  }

  it('given an upgrade from a foreign origin or Host, then it is refused', async () => {
    expect(await upgrade({ origin: FOREIGN })).toBe(401);
    expect(await upgrade({ origin: 'null' })).toBe(401);
    expect(await upgrade({ host: 'attacker.example' })).toBe(401);
  });

  it('given an upgrade from the same origin, a listed one, or no browser at all, then it opens', async () => {
    expect(await upgrade({ origin: self })).toBe('open');
    expect(await upgrade({ origin: LISTED })).toBe('open');
    expect(await upgrade({})).toBe('open');
  });

  it('given a token in connection_init, then a subscription streams decisions', async () => {
    const client = createClient({
      url: `ws://127.0.0.1:${port}/graphql`,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${ADMIN}` },
    });
    const first = new Promise<unknown>((resolve, reject) => {
      client.subscribe(
        { query: 'subscription { dequeueDecisions(after: "0") { kind } }' },
        { next: resolve, error: reject, complete: () => undefined },
      );
    });
    await post({}, JSON.stringify({ query: 'mutation { setMaxConcurrentRuns(limit: 1) { __typename } }' }));
    await post({}, JSON.stringify({ query: 'mutation { enqueueRun(input: { jobName: "j" }) { __typename } }' }));
    expect(await first).toMatchObject({ data: { dequeueDecisions: { kind: expect.any(String) } } });
    await client.dispose();
  });
});
