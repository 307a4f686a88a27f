/**
 * Helpers for the end-to-end tests: a small GraphQL client (over `yoga.fetch` or a real port),
 * SSE and graphql-ws subscription collectors, polling with a deadline, temp dirs, free ports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { keepLogsForVerify } from './verify-logs.js';

/** Loose JSON as the tests read it back. */
// biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field by the tests
export type Json = any;

export interface GraphQLErrorJson {
  message: string;
  extensions?: Record<string, unknown>;
}

export interface GqlAnswer {
  status: number;
  body: { data?: Json; errors?: GraphQLErrorJson[] };
}

export type FetchLike = (input: string, init: RequestInit) => Promise<Response> | Response;

/** A GraphQL client for one endpoint; `fetchImpl` is `yoga.fetch` or the global fetch. */
export class Gql {
  constructor(
    readonly url: string,
    private readonly fetchImpl: FetchLike = fetch,
  ) {}

  /** POSTs any body (a string is sent as is, so it may be broken JSON). */
  async raw(body: unknown, headers: Record<string, string> = {}): Promise<GqlAnswer & { text: string }> {
    const response = await this.fetchImpl(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: GqlAnswer['body'];
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = {};
    }
    return { status: response.status, body: parsed, text };
  }

  async answer(query: string, variables?: Record<string, unknown>, headers?: Record<string, string>) {
    return this.raw({ query, variables }, headers);
  }

  /** The data of a query that must succeed (HTTP 200, no errors). */
  async data(query: string, variables?: Record<string, unknown>, headers?: Record<string, string>): Promise<Json> {
    const { status, body, text } = await this.answer(query, variables, headers);
    if (status !== 200 || body.errors?.length || !body.data) {
      throw new Error(`query failed with HTTP ${status}: ${text}`);
    }
    return body.data;
  }

  async get(path: string): Promise<{ status: number; text: string }> {
    const response = await this.fetchImpl(new URL(path, this.url).toString(), { method: 'GET' });
    return { status: response.status, text: await response.text() };
  }
}

// ---------------------------------------------------------------------------------------------
// Selections shared by the tests

export const RUN_FIELDS = `id jobName status tags { key value } pools priority enqueuedAt admittedAt startedAt finishedAt
  blockedBy { kind key value pool limit inUse message }
  waits { from to reasons { kind key value pool limit inUse message } }
  decisions { position at kind runId stepKey pool reasons { kind key value pool limit inUse message } message }`;

export const DECISION_FIELDS = `position at kind runId stepKey pool reasons { kind key value pool limit inUse message } message`;

export const CONFIG_FIELDS =
  'maxConcurrentRuns tagConcurrencyLimits { key value applyLimitPerUniqueValue limit } poolGranularity defaultPoolLimit';

export const POOL_FIELDS = 'name limit explicitLimit inUse pending activeRunIds';

export const RUN_RESULT = `__typename ... on RunPayload { run { ${RUN_FIELDS} } } ... on Error { message } ... on ValidationError { field }`;
export const POOL_RESULT = `__typename ... on PoolPayload { pool { ${POOL_FIELDS} } } ... on Error { message } ... on ValidationError { field }`;
export const CONFIG_RESULT = `__typename ... on ConfigPayload { config { ${CONFIG_FIELDS} } } ... on Error { message } ... on ValidationError { field }`;

/** Every decision in the log, following the pages to the end. */
/** The data of a mutation whose results must all be payloads: a typed error fails the test. */
export async function mutated(gql: Gql, query: string, variables?: Record<string, unknown>): Promise<Json> {
  const data = await gql.data(query, variables);
  for (const value of Object.values(data) as Json[]) {
    if (value?.__typename?.endsWith('Error')) throw new Error(`${value.__typename}: ${value.message}`);
  }
  return data;
}

/** Enqueues a run that must be accepted; answers the run with RUN_FIELDS. */
export async function enqueued(gql: Gql, input: Record<string, unknown>): Promise<Json> {
  const query = `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { ${RUN_RESULT} } }`;
  return (await mutated(gql, query, { input })).enqueueRun.run;
}

export async function allDecisions(gql: Gql, runId?: string): Promise<Json[]> {
  const out: Json[] = [];
  let after: string | null = null;
  for (;;) {
    const data: Json = await gql.data(
      `query($runId: ID, $after: String) { decisions(runId: $runId, first: 1000, after: $after) {
        edges { cursor node { ${DECISION_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
      { runId: runId ?? null, after },
    );
    for (const edge of data.decisions.edges) out.push(edge.node);
    if (!data.decisions.pageInfo.hasNextPage) return out;
    after = data.decisions.pageInfo.endCursor;
  }
}

/** Every run, following the pages to the end (pages of 200: the field cost prices waits and decisions per run). */
export async function allRuns(gql: Gql): Promise<Json[]> {
  const out: Json[] = [];
  let after: string | null = null;
  for (;;) {
    const data: Json = await gql.data(
      `query($after: String) { runs(first: 200, after: $after) {
        edges { cursor node { ${RUN_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
      { after },
    );
    for (const edge of data.runs.edges) out.push(edge.node);
    if (!data.runs.pageInfo.hasNextPage) return out;
    after = data.runs.pageInfo.endCursor;
  }
}

/** What a reader can see of the whole deployment, for before/after comparisons. */
export async function observable(gql: Gql): Promise<Json> {
  const data = await gql.data(`{
    queue { id }
    pools { ${POOL_FIELDS} }
    concurrencyConfig { ${CONFIG_FIELDS} }
  }`);
  return { ...data, runs: await allRuns(gql), decisions: await allDecisions(gql) };
}

// ---------------------------------------------------------------------------------------------
// Waiting

/**
 * Polls `check` until it returns a truthy value, or fails after `timeoutMs`. An error thrown by
 * `check` fails at once, unless `tolerateErrors` (e.g. while a server is still starting).
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 5_000,
  options: { intervalMs?: number; tolerateErrors?: boolean } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      if (!options.tolerateErrors) throw error;
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
  }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

/** What a subscription has delivered so far. */
export interface Collector {
  /** `data` of each `next` payload that carried data. */
  readonly items: Json[];
  /** Errors: GraphQL errors in payloads, error messages, transport failures. */
  readonly errors: unknown[];
  /** True once the server completed the stream (or the transport ended). */
  readonly done: boolean;
  close(): Promise<void>;
}

/** A subscription over SSE: POST with `accept: text/event-stream`, parsed as `event:`/`data:` blocks. */
export class SseCollector implements Collector {
  readonly items: Json[] = [];
  readonly errors: unknown[] = [];
  done = false;
  status = 0;
  private readonly abort = new AbortController();
  private reading: Promise<void> = Promise.resolve();
  /** Resolves once the response headers arrived. */
  readonly opened: Promise<void>;

  constructor(url: string, query: string, variables: Record<string, unknown> = {}) {
    this.opened = this.start(url, query, variables);
  }

  private async start(url: string, query: string, variables: Record<string, unknown>): Promise<void> {
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query, variables }),
        signal: this.abort.signal,
      });
    } catch (error) {
      this.errors.push(error);
      this.done = true;
      return;
    }
    this.status = response.status;
    this.reading = this.read(response);
  }

  private async read(response: Response): Promise<void> {
    if (response.body) await readSse(response.body.getReader(), this, () => this.abort.signal.aborted);
    this.done = true;
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.opened;
    await this.reading;
  }
}

/** Where a GraphQL-over-SSE stream delivers: each `next` payload's data and errors. */
export interface SseSink {
  items: Json[];
  errors: unknown[];
  done: boolean;
}

/**
 * Reads a GraphQL-over-SSE body block by block into a sink, until a `complete` event or the
 * end of the body. A read error is recorded unless `expected()` says the stream was closed on purpose.
 */
export async function readSse(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  sink: SseSink,
  expected: () => boolean = () => false,
): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
      for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
        sseBlock(buffer.slice(0, end), sink);
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) {
    if (!expected()) sink.errors.push(error);
  }
  sink.done = true;
}

function sseBlock(text: string, sink: SseSink): void {
  let event = 'message';
  const data: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (event === 'complete') sink.done = true;
  if (event !== 'next' || data.length === 0) return;
  const payload = JSON.parse(data.join('\n'));
  if (payload.errors?.length) sink.errors.push(...payload.errors);
  if (payload.data != null) sink.items.push(payload.data);
}

/** A subscription over graphql-ws on the same port (ws://.../graphql). */
export class WsCollector implements Collector {
  readonly items: Json[] = [];
  readonly errors: unknown[] = [];
  done = false;
  readonly client: Client;
  private readonly unsubscribe: () => void;

  constructor(httpUrl: string, query: string, variables: Record<string, unknown> = {}) {
    this.client = createClient({
      url: httpUrl.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
    });
    this.unsubscribe = this.client.subscribe(
      { query, variables },
      {
        next: (payload) => {
          if (payload.errors?.length) this.errors.push(...payload.errors);
          if (payload.data != null) this.items.push(payload.data);
        },
        error: (error) => {
          this.errors.push(error);
          this.done = true;
        },
        complete: () => {
          this.done = true;
        },
      },
    );
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.client.dispose();
  }
}

/** Describes a collector's errors for assertion messages (CloseEvents are not plain objects). */
export function describeErrors(errors: readonly unknown[]): string {
  return errors
    .map((e) => {
      if (e && typeof e === 'object' && 'code' in e && 'reason' in e) {
        return `socket closed ${(e as { code: number }).code}: ${(e as { reason: string }).reason}`;
      }
      if (e && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
      return String(e);
    })
    .join('; ');
}

// ---------------------------------------------------------------------------------------------
// Files and ports

export function tempDir(prefix = 'sluice-e2e-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return {
    path,
    remove: () => {
      keepLogsForVerify(path);
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** A port that was free a moment ago: bind to 0, read it, let it go. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
