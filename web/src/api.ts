/**
 * Talking to the server: queries and mutations over HTTP, subscriptions over one graphql-ws
 * connection, both carrying the token kept for this browser session. A subscription resumes
 * after a reconnect from the last position it saw, so a restart of the server loses nothing.
 */
import { type Client, createClient } from 'graphql-ws';

const TOKEN_KEY = 'sluice.token';

export class NeedsToken extends Error {
  constructor() {
    super('This server asks for a token.');
  }
}

export class GraphQLFailure extends Error {
  constructor(
    message: string,
    readonly codes: string[],
  ) {
    super(message);
  }
}

type Listener = () => void;
const listeners = new Set<Listener>();
function notify() {
  for (const listener of listeners) listener();
}

/** Connection and session facts the header shows. */
export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  needsToken: false,
  connected: false,
  everConnected: false,
  /** Bumped each time the subscription connection opens again after a loss. */
  reconnects: 0,
};

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function authorization(): Record<string, string> {
  return session.token ? { authorization: `Bearer ${session.token}` } : {};
}

export function setToken(token: string | null): void {
  session.token = token;
  session.needsToken = false;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  // The socket sent the old token when it connected: open a new one.
  restartSubscriptions();
  notify();
}

function needToken(): NeedsToken {
  if (!session.needsToken) {
    session.needsToken = true;
    notify();
  }
  return new NeedsToken();
}

/** Runs a query or mutation; throws NeedsToken on 401, GraphQLFailure on errors without data. */
// biome-ignore lint/suspicious/noExplicitAny: each page types the data it selects
export async function gql<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...authorization() },
    body: JSON.stringify({ query, variables }),
  });
  if (response.status === 401) throw needToken();
  const body = (await response.json().catch(() => null)) as {
    data?: T;
    errors?: Array<{ message: string; extensions?: { code?: string } }>;
  } | null;
  if (!body) throw new GraphQLFailure(`The server answered HTTP ${response.status}.`, []);
  if (body.errors?.length && (body.data == null || Object.values(body.data).every((v) => v == null))) {
    throw new GraphQLFailure(
      body.errors.map((e) => e.message).join('; '),
      body.errors.map((e) => e.extensions?.code ?? ''),
    );
  }
  return body.data as T;
}

let client: Client | null = null;
const restarters = new Set<() => void>();

function socket(): Client {
  if (client) return client;
  const url = new URL('/graphql', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  client = createClient({
    url: url.toString(),
    connectionParams: () => authorization(),
    lazy: true,
    keepAlive: 10_000,
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
    // Quick at first, then every 2 s: a restarting server is back in a few seconds.
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 2_000))),
    on: {
      connected: () => {
        if (session.everConnected) session.reconnects++;
        session.connected = session.everConnected = true;
        notify();
      },
      closed: (event) => {
        session.connected = false;
        // 4401/4403: graphql-ws's codes for a missing or refused token.
        const code = (event as CloseEvent | undefined)?.code;
        if (code === 4401 || code === 4403) needToken();
        notify();
      },
    },
  });
  return client;
}

function restartSubscriptions(): void {
  const old = client;
  client = null;
  for (const restart of restarters) restart();
  void old?.dispose();
}

export interface Follow<T> {
  /** The subscription's document; its only variable is $after. */
  query: string;
  /** The position to resume after; null: from now on. Read again at every (re)connection. */
  after: () => string | null;
  /** Each item, in order; a position at or before the last one seen is dropped. */
  next: (item: T) => void;
  position: (item: T) => string;
  error?: (message: string) => void;
}

/** Follows a subscription for the page's lifetime, resuming with `after` on every reconnect. */
export function follow<T>(options: Follow<T>): () => void {
  let stopped = false;
  let last: bigint | null = null;
  let unsubscribe = () => {};
  const payload = { query: options.query, variables: { after: options.after() } };
  const start = () => {
    unsubscribe();
    payload.variables.after = last === null ? options.after() : last.toString();
    unsubscribe = socket().subscribe<Record<string, T>>(payload, {
      next: (result) => {
        if (result.errors?.length) options.error?.(result.errors.map((e) => e.message).join('; '));
        const item = result.data ? Object.values(result.data)[0] : undefined;
        if (item === undefined || item === null) return;
        const position = BigInt(options.position(item));
        if (last !== null && position <= last) return;
        last = position;
        // graphql-ws sends this same payload again when it reconnects: resume after what was seen.
        payload.variables.after = position.toString();
        options.next(item);
      },
      error: (error) => {
        options.error?.(error instanceof Error ? error.message : 'the subscription ended');
        // A server that ended the stream (e.g. a subscriber too far behind): start again from here.
        if (!stopped) setTimeout(() => !stopped && start(), 1_000);
      },
      complete: () => {},
    });
  };
  restarters.add(start);
  start();
  return () => {
    stopped = true;
    restarters.delete(start);
    unsubscribe();
  };
}
