/**
 * Start-up refusals (open mode only on loopback), SIGHUP reload of the tokens file in a real
 * `sluice serve` process, GraphiQL on and off, and errors that carry nothing internal in any mode.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { DEFAULT_SECURITY } from '../../src/auth/settings.js';
import { hashToken } from '../../src/auth/tokens.js';
import { runCli } from '../../src/cli/run.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { createSluiceYoga, IN_PROCESS_SECURITY, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS, type Settings, SettingsError } from '../../src/settings.js';
import { freePort, tempDir, waitFor } from '../support/e2e-http.js';
import { type ServerProcess, startServerProcess } from '../support/server-process.js';

const ROOT = resolve(import.meta.dirname, '../..');

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir('sluice-startup-');
});
afterEach(() => dir.remove());

function settings(host: string, security: Partial<Settings['security']> = {}): Settings {
  return {
    ...DEFAULT_SETTINGS,
    port: 0,
    host,
    eventStoreUrl: 'sqlite::memory:',
    security: { ...DEFAULT_SECURITY, ...security },
  };
}

describe('open mode', () => {
  it('given no tokens file and a non-loopback address, when the server starts, then it refuses, naming SLUICE_TOKENS_FILE', async () => {
    const attempt = startServer(settings('0.0.0.0'), () => {});
    await expect(attempt).rejects.toThrow(SettingsError);
    await expect(startServer(settings('0.0.0.0'), () => {})).rejects.toThrow(/SLUICE_TOKENS_FILE/);
  });

  it('given SLUICE_ALLOW_ANONYMOUS=1, when it starts on a non-loopback address, then it serves with a warning', async () => {
    const logs: string[] = [];
    const server = await startServer(settings('0.0.0.0', { allowAnonymous: true }), (line) => logs.push(line));
    try {
      expect(logs.join('\n')).toMatch(/WARNING: SLUICE_ALLOW_ANONYMOUS=1 and no SLUICE_TOKENS_FILE/);
    } finally {
      await server.close();
    }
  });

  it('given no tokens file on loopback, when it starts, then it says it is in open mode', async () => {
    const logs: string[] = [];
    const server = await startServer(settings('127.0.0.1'), (line) => logs.push(line));
    await server.close();
    expect(logs.join('\n')).toMatch(/open mode: no SLUICE_TOKENS_FILE/);
  });

  it('given a tokens file, when it starts on a non-loopback address, then it serves', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `ops admin ${hashToken('t')}\n`);
    const logs: string[] = [];
    const server = await startServer(settings('0.0.0.0', { tokensFile: file }), (line) => logs.push(line));
    await server.close();
    expect(logs.join('\n')).toMatch(/tokens: 1 from/);
  });

  it('given a broken tokens file, when it starts, then it refuses, naming the line', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `ops admin ${hashToken('t')}\nops2 superuser ${hashToken('u')}\n`);
    await expect(startServer(settings('127.0.0.1', { tokensFile: file }), () => {})).rejects.toThrow(
      /tokens:2: role must be viewer, worker or admin, got "superuser"/,
    );
  });

  it('given `sluice serve` on 0.0.0.0 without tokens, then the process exits 1 naming SLUICE_TOKENS_FILE', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '0.0.0.0',
        EVENT_STORE_URL: 'sqlite::memory:',
        SLUICE_TOKENS_FILE: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += String(chunk)));
    const code = await new Promise<number | null>((done) => child.once('exit', (exit) => done(exit)));
    expect(code).toBe(1);
    expect(stderr).toMatch(/refusing to serve 0\.0\.0\.0 without tokens.*SLUICE_TOKENS_FILE/);
  });
});

describe('the CLI with a token', () => {
  it('sends --token or SLUICE_TOKEN as a bearer token; the edit is recorded under the token name; without one it says why', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `ops admin ${hashToken('ops-secret')}\nui viewer ${hashToken('ui-secret')}\n`);
    const server = await startServer(settings('127.0.0.1', { tokensFile: file }), () => {});
    try {
      const url = ['--url', server.url];
      expect(await runCli(['concurrency', 'set', 'db', '2', ...url, '--token', 'ops-secret'], {})).toBe(
        'set db: 0 / 2 in use',
      );
      expect((await server.store.readStream(DEPLOYMENT_STREAM)).at(-1)).toMatchObject({
        type: 'PoolLimitSet',
        actor: 'ops',
      });
      expect(await runCli(['concurrency', 'get', 'db', ...url], { SLUICE_TOKEN: 'ui-secret' })).toMatch(/db: 0 \/ 2/);
      await expect(runCli(['concurrency', 'set', 'db', '3', ...url], { SLUICE_TOKEN: 'ui-secret' })).rejects.toThrow(
        /setPoolLimit needs the admin role; ui has the viewer role/,
      );
      await expect(runCli(['concurrency', 'get', 'db', ...url], {})).rejects.toThrow(
        /needs a token \(HTTP 401\): give --token TOKEN or set SLUICE_TOKEN/,
      );
      await expect(runCli(['concurrency', 'get', 'db', ...url, '--token', 'wrong'], {})).rejects.toThrow(
        /does not know this token \(HTTP 401\)/,
      );
    } finally {
      await server.close();
    }
  });
});

describe('SIGHUP', () => {
  let server: ServerProcess | null = null;
  afterEach(async () => {
    await server?.stop();
    server = null;
  });

  it('given a running server, when the tokens file changes and SIGHUP comes, then new tokens work, removed ones do not, and a broken file keeps the old set', async () => {
    const file = join(dir.path, 'tokens');
    writeFileSync(file, `one admin ${hashToken('first')}\n`);
    server = await startServerProcess({
      name: 'hup',
      dbPath: join(dir.path, 'events.db'),
      env: { SLUICE_TOKENS_FILE: file },
    });
    const running = server;
    const status = async (token: string) =>
      (
        await running.gql.answer(
          '{ concurrencyConfig { maxConcurrentRuns } }',
          {},
          { authorization: `Bearer ${token}` },
        )
      ).status;
    expect(await status('first')).toBe(200);
    expect(await status('second')).toBe(401);

    writeFileSync(file, `one admin ${hashToken('first')}\ntwo viewer ${hashToken('second')}\n`);
    running.child.kill('SIGHUP');
    await waitFor(async () => (await status('second')) === 200, 'the second token to work after SIGHUP', 10_000);

    writeFileSync(file, `one admin ${hashToken('first')}\nbroken\n`);
    running.child.kill('SIGHUP');
    await waitFor(() => /kept the tokens in force: .*tokens:2/.test(running.stderr), 'the reload error', 10_000);
    expect(await status('second')).toBe(200);

    writeFileSync(file, `two viewer ${hashToken('second')}\n`);
    running.child.kill('SIGHUP');
    await waitFor(async () => (await status('first')) === 401, 'the removed token to be refused', 10_000);
    expect(await status('second')).toBe(200);
  }, 60_000);
});

describe('GraphiQL and errors', () => {
  async function yogaWith(security = IN_PROCESS_SECURITY) {
    const store = openSqliteStore({ path: ':memory:' });
    const sluice = await Sluice.open({ store });
    return { yoga: createSluiceYoga(sluice, security), sluice, close: () => sluice.close().then(() => store.close()) };
  }

  it('serves GraphiQL to a browser, and not with GRAPHIQL=false', async () => {
    const on = await yogaWith();
    const page = await on.yoga.fetch('http://127.0.0.1/graphql', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/graphiql/i);
    await on.close();
    const off = await yogaWith({ ...IN_PROCESS_SECURITY, graphiql: false });
    const none = await off.yoga.fetch('http://127.0.0.1/graphql', { headers: { accept: 'text/html' } });
    expect(await none.text()).not.toMatch(/graphiql/i);
    await off.close();
  });

  it('answers introspection to a viewer', async () => {
    const { yoga, close } = await yogaWith();
    const answer = await yoga.fetch('http://127.0.0.1/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __schema { types { name } } }' }),
    });
    expect(answer.status).toBe(200);
    await close();
  });

  it('given NODE_ENV=development, when a request is broken or a resolver fails, then nothing internal reaches the client', async () => {
    const previous = process.env.NODE_ENV;
    process.env.NODE_ENV = 'development';
    const { yoga, sluice, close } = await yogaWith();
    try {
      const post = async (body: string) => {
        const response = await yoga.fetch('http://127.0.0.1/graphql', {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body,
        });
        return { status: response.status, text: await response.text() };
      };
      const invalid = await post('{"query":');
      expect(invalid.status).toBe(400);
      expect(JSON.parse(invalid.text)).toEqual({
        errors: [{ message: 'POST body sent invalid JSON.', extensions: { code: 'BAD_REQUEST' } }],
      });
      const deep = await post(JSON.stringify({ query: `${'{ a '.repeat(5000)}${'}'.repeat(5000)}` }));
      expect(deep.status).toBe(400);
      expect(deep.text).toMatch(/brackets nested \d+ deep, over the limit/);
      // Fault injection: the projections fail with an internal message.
      sluice.catchUp = () => Promise.reject(new Error('disk /var/lib/sluice/secret.db is corrupt'));
      const failed = await post(JSON.stringify({ query: '{ pools { name } }' }));
      expect(failed.text).toMatch(/Unexpected error/);
      for (const answer of [invalid, deep, failed]) {
        expect(answer.text).not.toMatch(
          /stack|originalError|\/var\/lib|secret|node_modules|\.ts:\d|SyntaxError|at \w+ \(/,
        );
      }
    } finally {
      process.env.NODE_ENV = previous;
      await close();
    }
  });
});
