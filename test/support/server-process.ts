/**
 * A real `sluice serve` in a child process (`node --import tsx src/cli.ts serve`), for the
 * end-to-end tests that need several servers on one store: a free port, wait for /ready, a
 * small GraphQL client, and a stop() that sends SIGTERM and kills for sure after a deadline.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { freePort, Gql, type GqlAnswer, type Json } from './e2e-http.js';

const ROOT = resolve(import.meta.dirname, '../..');

export interface ServerProcessOptions {
  /** A name for messages and for the actor header, e.g. 'A'. */
  name: string;
  /** The SQLite file every server of the test shares; or give `eventStoreUrl`. */
  dbPath?: string;
  /** The store every server of the test shares, as EVENT_STORE_URL (e.g. a postgres:// URL). */
  eventStoreUrl?: string;
  /** This process's checkpoint file (CHECKPOINT_PATH); default: derived from the store by the server. */
  checkpointPath?: string;
  /** How long to wait for GET /ready to answer 200; the first tsx start can be slow. */
  readyTimeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Serve on this port (a restart where clients expect the old one); default: a free one. */
  port?: number;
}

/** One answer of a mutation field: the union member's typename and the rest of its selection. */
export interface FieldAnswer {
  __typename: string;
  message?: string;
  // biome-ignore lint/suspicious/noExplicitAny: the selection decides the shape
  [field: string]: any;
}

export class ServerProcess {
  readonly gql: Gql;
  private stdoutText = '';
  private stderrText = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly port: number,
    readonly child: ChildProcess,
  ) {
    this.gql = new Gql(`http://127.0.0.1:${port}/graphql`);
    child.stdout?.on('data', (chunk) => (this.stdoutText += String(chunk)));
    child.stderr?.on('data', (chunk) => (this.stderrText += String(chunk)));
    this.exited = new Promise((done) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        done();
      });
    });
  }

  get url(): string {
    return this.gql.url;
  }

  get stderr(): string {
    return this.stderrText;
  }

  get stdout(): string {
    return this.stdoutText;
  }

  /** Null while the process runs. */
  get exit(): { code: number | null; signal: NodeJS.Signals | null } | null {
    return this.exitInfo;
  }

  /** What the process wrote, for failure messages. */
  describe(): string {
    const exit = this.exitInfo ? ` (exited: code ${this.exitInfo.code}, signal ${this.exitInfo.signal})` : '';
    return `server ${this.name} on port ${this.port}${exit}\n--- stderr ---\n${this.stderrText}\n--- stdout ---\n${this.stdoutText}`;
  }

  /** POSTs a GraphQL operation, with an actor header naming this server and the caller. */
  answer(query: string, variables?: Record<string, unknown>, actor?: string): Promise<GqlAnswer & { text: string }> {
    return this.gql.answer(query, variables, { 'x-sluice-actor': actor ?? `server-${this.name}` });
  }

  /** The data of an operation that must succeed (HTTP 200, no GraphQL errors). */
  async data(query: string, variables?: Record<string, unknown>, actor?: string): Promise<Json> {
    const { status, body, text } = await this.answer(query, variables, actor);
    if (status !== 200 || body.errors?.length || !body.data) {
      throw new Error(`server ${this.name}: operation failed with HTTP ${status}: ${text}\n${query}`);
    }
    return body.data;
  }

  /** One mutation field's answer (its union member), whatever member it is. */
  async field(query: string, variables?: Record<string, unknown>, actor?: string): Promise<FieldAnswer> {
    const data = await this.data(query, variables, actor);
    const values = Object.values(data) as FieldAnswer[];
    if (values.length !== 1 || !values[0]) throw new Error(`expected one field in ${JSON.stringify(data)}`);
    return values[0];
  }

  /** Waits until GET /ready answers 200; fails early, with the output, if the process exits. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      if (this.exitInfo) throw new Error(`server ${this.name} exited before it was ready\n${this.describe()}`);
      try {
        const { status, text } = await this.gql.get('/ready');
        if (status === 200) return;
        last = `HTTP ${status}: ${text}`;
      } catch (error) {
        last = String(error);
      }
      if (Date.now() > deadline) {
        throw new Error(`server ${this.name} not ready after ${timeoutMs} ms (last: ${last})\n${this.describe()}`);
      }
      await new Promise((done) => setTimeout(done, 100));
    }
  }

  /**
   * SIGTERM, then waits for the exit; SIGKILL after `timeoutMs`. Answers the exit code, or the
   * signal's name when it had to be killed.
   */
  async stop(timeoutMs = 8_000): Promise<number | string | null> {
    if (!this.exitInfo) {
      this.child.kill('SIGTERM');
      const timer = new Promise<'timeout'>((done) => setTimeout(() => done('timeout'), timeoutMs).unref());
      if ((await Promise.race([this.exited.then(() => 'exited' as const), timer])) === 'timeout') {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    return this.exitInfo?.code ?? this.exitInfo?.signal ?? null;
  }
}

/** Spawns `sluice serve` and resolves once it answers GET /ready with 200. */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const eventStoreUrl =
    options.eventStoreUrl ?? (options.dbPath === undefined ? undefined : `sqlite:${options.dbPath}`);
  if (eventStoreUrl === undefined) throw new Error(`server ${options.name}: give a dbPath or an eventStoreUrl`);
  let failure: Error | null = null;
  // A port that was free a moment ago may be taken by now: try another one then.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = options.port ?? (await freePort());
    const env: Record<string, string | undefined> = {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      EVENT_STORE_URL: eventStoreUrl,
      CONCURRENCY_CONFIG: '',
      CHECKPOINT_PATH: options.checkpointPath ?? '',
      NODE_ENV: 'test',
      ...options.env,
    };
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = new ServerProcess(options.name, port, child);
    try {
      await server.waitReady(options.readyTimeoutMs ?? 20_000);
      return server;
    } catch (error) {
      failure = error as Error;
      await server.stop(2_000);
      if (!/EADDRINUSE|already in use/.test(server.stderr)) throw failure;
    }
  }
  throw failure;
}

/** Stops every server, in parallel; never throws (for afterAll). */
export async function stopAll(servers: readonly ServerProcess[]): Promise<Array<number | string | null>> {
  return Promise.all(servers.map((server) => server.stop().catch(() => null)));
}
