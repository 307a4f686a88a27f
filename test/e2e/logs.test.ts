/**
 * Structured logs: a JSON line per command and per timeout with their fields, store trouble and
 * recovery, start and stop, slow requests, LOG_LEVEL, and never a token.
 */
import { createSchema, createYoga } from 'graphql-yoga';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import { StoreUnavailableError } from '../../src/eventstore/errors.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore, Subscription } from '../../src/eventstore/store.js';
import { lineLogger, logCommand } from '../../src/log/logger.js';
import { useSlowRequestLog } from '../../src/log/slow-requests.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS, readSettings, SettingsError } from '../../src/settings.js';
import { enqueued, Gql, type Json, waitFor } from '../support/e2e-http.js';

vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const servers: RunningServer[] = [];
const closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  for (const close of closers.splice(0)) await close();
});

/** Pino's level numbers. */
const INFO = 30;
const WARN = 40;
const ERROR = 50;

async function serve(overrides: Partial<typeof DEFAULT_SETTINGS> = {}) {
  const lines: string[] = [];
  const server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: 'sqlite::memory:', ...overrides },
    (line) => lines.push(line),
  );
  servers.push(server);
  const entries = () => lines.map((line) => JSON.parse(line) as Json);
  return { server, gql: new Gql(server.url), lines, entries };
}

describe('command log lines', () => {
  it('given commands that succeed, change nothing and are refused, then each logs one line with its fields', async () => {
    const { gql, entries } = await serve();
    const actor = { 'x-sluice-actor': 'scheduler-7' };
    await gql.data('mutation { enqueueRun(input: {runId: "r1", jobName: "etl"}) { __typename } }', {}, actor);
    // Enqueue is idempotent by runId: the repeat appends nothing.
    await gql.data('mutation { enqueueRun(input: {runId: "r1", jobName: "etl"}) { __typename } }', {}, actor);
    const refused = await gql.data('mutation { markRunFinished(runId: "r1", status: QUEUED) { __typename } }');
    expect(refused.markRunFinished.__typename).toBe('ValidationError');
    await gql.data('mutation { markRunStarted(runId: "nobody") { __typename } }');

    const commands = entries().filter((e) => e.command !== undefined);
    expect(commands).toHaveLength(4);
    for (const entry of commands) {
      expect(typeof entry.durationMs).toBe('number');
      expect(entry.durationMs).toBeGreaterThanOrEqual(0);
      expect(typeof entry.time).toBe('string');
      expect(typeof entry.msg).toBe('string');
    }
    expect(
      commands.map(({ level, command, run, actor, outcome, errorCode, events }) => ({
        level,
        command,
        run,
        actor,
        outcome,
        errorCode,
        events,
      })),
    ).toEqual([
      {
        level: INFO,
        command: 'EnqueueRun',
        run: 'r1',
        actor: 'anonymous (on behalf of scheduler-7)',
        outcome: 'ok',
        errorCode: undefined,
        events: 2,
      },
      {
        level: INFO,
        command: 'EnqueueRun',
        run: 'r1',
        actor: 'anonymous (on behalf of scheduler-7)',
        outcome: 'ok',
        errorCode: undefined,
        events: 0,
      },
      {
        level: INFO,
        command: 'MarkRunFinished',
        run: 'r1',
        actor: 'anonymous',
        outcome: 'rejected',
        errorCode: 'InvalidInputError',
        events: 0,
      },
      {
        level: INFO,
        command: 'MarkRunStarted',
        run: 'nobody',
        actor: 'anonymous',
        outcome: 'rejected',
        errorCode: 'RunNotFoundError',
        events: 0,
      },
    ]);
  });

  it('given a store that cannot take the write, then the command logs an error line', async () => {
    const inner = openSqliteStore({ path: ':memory:' });
    const store = Object.create(inner) as EventStore;
    store.append = () => Promise.reject(new StoreUnavailableError('disk full'));
    const lines: string[] = [];
    const logger = lineLogger((line) => lines.push(line));
    const sluice = await Sluice.open({ store, onCommand: (record) => logCommand(logger, record) });
    closers.push(async () => {
      await sluice.close();
      await inner.close();
    });
    await expect(sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 3 }, 'admin')).rejects.toThrow('disk full');
    expect(lines.map((line) => JSON.parse(line))).toMatchObject([
      {
        level: ERROR,
        command: 'SetMaxConcurrentRuns',
        run: null,
        actor: 'admin',
        outcome: 'error',
        errorCode: 'StoreUnavailableError',
        events: 0,
      },
    ]);
  });

  it('given LOG_LEVEL warn, then commands that went well log nothing', async () => {
    const { gql, entries } = await serve({ logLevel: 'warn' });
    await enqueued(gql, { runId: 'quiet', jobName: 'etl' });
    expect(entries().filter((e) => e.command !== undefined)).toEqual([]);
  });
});

describe('timeout log lines', () => {
  it('given a lease that expires, then the run monitor logs one warning naming the run, the timeout and the reason', async () => {
    const { gql, entries } = await serve();
    await enqueued(gql, { runId: 'leased', jobName: 'etl', leaseSeconds: 1 });
    const line = await waitFor(() => entries().find((e) => e.timeout !== undefined), 'the timeout line', 10_000, {
      intervalMs: 50,
    });
    expect(line).toMatchObject({
      level: WARN,
      timeout: 'lease_expired',
      run: 'leased',
      status: 'FAILURE',
      reason: 'lease expired: no heartbeat for 1 s',
    });
    expect(Number(line.position)).toBeGreaterThan(0);
    expect(line.msg).toBe('run leased ended as FAILURE: lease expired: no heartbeat for 1 s');
    const expiry = entries().find((e) => e.command === 'ExpireDeadlines' && e.events > 0);
    expect(expiry).toMatchObject({ actor: 'run-monitor', outcome: 'ok' });
  });
});

describe('start, stop and the store', () => {
  it('given a server, then it logs where it serves when it starts and that it stopped', async () => {
    const { server, entries } = await serve();
    expect(entries()).toContainEqual(
      expect.objectContaining({ level: INFO, url: server.url, store: 'sqlite::memory:', position: '-1' }),
    );
    await server.close();
    servers.length = 0;
    expect(entries().at(-1)).toMatchObject({ level: INFO, msg: 'sluice stopped: requests finished, store closed' });
  });

  it('given the live subscription to the log fails, then a warning says so and a line says when it follows again', async () => {
    const inner = openSqliteStore({ path: ':memory:' });
    let failures = 1;
    const store = Object.create(inner) as EventStore;
    store.subscribe = (stream, options, onEvent, onError): Subscription => {
      const subscription = inner.subscribe(stream, options, onEvent, onError);
      if (failures-- > 0) setTimeout(() => onError?.(new StoreUnavailableError('connection reset')), 10);
      return subscription;
    };
    const lines: string[] = [];
    const logger = lineLogger((line) => lines.push(line));
    const sluice = await Sluice.open({
      store,
      warn: (message) => logger.warn(message),
      info: (message) => logger.info(message),
    });
    closers.push(async () => {
      await sluice.close();
      await inner.close();
    });
    const entries = await waitFor(
      () => {
        const parsed = lines.map((line) => JSON.parse(line));
        return parsed.length >= 2 ? parsed : null;
      },
      'the warning and the recovery',
      5_000,
    );
    expect(entries).toMatchObject([
      { level: WARN, msg: 'not following the log: connection reset; trying again in 0.5 s' },
      { level: INFO, msg: 'following the log again from position -1' },
    ]);
    expect(sluice.notReadyBecause()).toBeNull();
  });
});

describe('slow requests', () => {
  const yogaWith = (thresholdMs: number, stepMs: number) => {
    const lines: string[] = [];
    let clock = 0;
    const yoga = createYoga({
      schema: createSchema({ typeDefs: 'type Query { hello(token: String): String }', resolvers: {} }),
      logging: false,
      plugins: [
        useSlowRequestLog({
          logger: lineLogger((line) => lines.push(line)),
          thresholdMs,
          now: () => (clock += stepMs),
        }),
      ],
    });
    const ask = () =>
      yoga.fetch('http://localhost/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer s3cret-token' },
        body: JSON.stringify({
          query: 'query Greeting($t: String) { hello(token: $t) }',
          operationName: 'Greeting',
          variables: { t: 's3cret-token' },
        }),
      });
    return { lines, ask };
  };

  it('given a request slower than the threshold, then one warning with the operation, never the token', async () => {
    const { lines, ask } = yogaWith(50, 100);
    expect((await ask()).status).toBe(200);
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('s3cret');
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      level: WARN,
      method: 'POST',
      path: '/graphql',
      operationName: 'Greeting',
      status: 200,
      durationMs: 100,
      thresholdMs: 50,
    });
  });

  it('given a request faster than the threshold, then no line', async () => {
    const { lines, ask } = yogaWith(1000, 100);
    await ask();
    expect(lines).toEqual([]);
  });
});

describe('secrets and settings', () => {
  it('given an object carrying a token or an Authorization header, then the line says [redacted]', () => {
    const lines: string[] = [];
    const logger = lineLogger((line) => lines.push(line));
    logger.info(
      { token: 'tok-1', headers: { authorization: 'Bearer tok-2' }, request: { authorization: 'tok-3' } },
      'x',
    );
    expect(lines[0]).not.toMatch(/tok-\d/);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      token: '[redacted]',
      headers: { authorization: '[redacted]' },
      request: { authorization: '[redacted]' },
    });
  });

  it('given LOG_LEVEL and SLOW_REQUEST_MS, then they are read, and a bad value is refused with its name', () => {
    expect(readSettings({ LOG_LEVEL: 'DEBUG', SLOW_REQUEST_MS: '250' })).toMatchObject({
      logLevel: 'debug',
      slowRequestMs: 250,
    });
    expect(readSettings({})).toMatchObject({ logLevel: 'info', slowRequestMs: 1000 });
    expect(() => readSettings({ LOG_LEVEL: 'loud' })).toThrow(SettingsError);
    expect(() => readSettings({ LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL must be one of fatal, error/);
    expect(() => readSettings({ SLOW_REQUEST_MS: '-5' })).toThrow(/SLOW_REQUEST_MS/);
    expect(readSettings({ CHECKPOINT_WORKER_FROM_BYTES: '0' })).toMatchObject({ checkpointWorkerFromBytes: 0 });
    expect(() => readSettings({ CHECKPOINT_WORKER_FROM_BYTES: '1.5' })).toThrow(/CHECKPOINT_WORKER_FROM_BYTES/);
  });
});
