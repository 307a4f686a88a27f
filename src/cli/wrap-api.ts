/**
 * How `sluice run` and `sluice slot` talk to Sluice: GraphQL over HTTP that tells an
 * unreachable server from a refusal (a wrapper exits 69 for one, reports the other), retries
 * with backoff where the caller asks, and subscriptions over graphql-ws that reconnect on their
 * own. Both carry the token (`Authorization: Bearer`, and in the connection_init payload).
 */
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';

/** Sluice could not be reached, or answered that it cannot take the request now. */
export class Unreachable extends Error {
  override readonly name = 'Unreachable';
}

/** Sluice answered with an error: retrying the same request would not help. */
export class Refused extends Error {
  override readonly name = 'Refused';
  constructor(
    message: string,
    /** The result union member (ValidationError, ConflictError, ...) or the GraphQL error code. */
    readonly kind: string,
  ) {
    super(message);
  }
}

export interface ApiOptions {
  url: string;
  token: string | null;
  /** Recorded as the actor of every event the wrapper's mutations append. */
  actor: string;
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

/** 0.25 s, doubling, at most 5 s: quick after a blip, gentle during an outage. */
export const backoff = (attempt: number): number => Math.min(5_000, 250 * 2 ** Math.min(attempt, 5));

export class SluiceApi {
  constructor(readonly options: ApiOptions) {}

  private headers(): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json',
      'x-sluice-actor': this.options.actor,
    };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    return headers;
  }

  /** One attempt. Throws Unreachable (network, HTTP 5xx, store unavailable) or Refused. */
  async request<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const { url } = this.options;
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: this.headers(),
        body: JSON.stringify({ query, variables }),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (error) {
      const cause = (error as Error).cause as { code?: string; message?: string } | undefined;
      throw new Unreachable(
        `cannot reach Sluice at ${url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
      );
    }
    const text = await response.text().catch(() => '');
    if (response.status >= 500) throw new Unreachable(`Sluice at ${url} answered HTTP ${response.status}`);
    let body: { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
    try {
      body = JSON.parse(text);
    } catch {
      throw new Unreachable(`Sluice at ${url} answered HTTP ${response.status} with a body that is not JSON`);
    }
    const error = body.errors?.[0];
    if (error) {
      const code = error.extensions?.code ?? `HTTP ${response.status}`;
      if (code === 'STORE_UNAVAILABLE') throw new Unreachable(error.message);
      throw new Refused(error.message, code);
    }
    if (!body.data) throw new Refused(`Sluice at ${url} answered HTTP ${response.status} without data`, 'NO_DATA');
    return body.data;
  }

  /**
   * Retries while Sluice is unreachable, with backoff, until `giveUpAt` (epoch ms; default
   * never) or `stopped()` says to stop; then throws the last Unreachable. Refusals are thrown at once.
   */
  async retrying<T>(
    query: string,
    variables: Record<string, unknown>,
    options: { giveUpAt?: number; stopped?: () => boolean; onRetry?: (error: Unreachable) => void } = {},
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request<T>(query, variables);
      } catch (error) {
        if (!(error instanceof Unreachable)) throw error;
        const wait = backoff(attempt);
        if (options.stopped?.() || Date.now() + wait > (options.giveUpAt ?? Number.POSITIVE_INFINITY)) throw error;
        options.onRetry?.(error);
        await sleep(wait);
      }
    }
  }

  /** A mutation field's result union: the payload, or a Refused naming the error member. */
  async mutate<T>(
    field: string,
    query: string,
    variables: Record<string, unknown>,
    options?: Parameters<SluiceApi['retrying']>[2],
  ): Promise<T> {
    const data = await this.retrying<Record<string, { __typename: string; message?: string } & T>>(
      query,
      variables,
      options,
    );
    const result = data[field];
    if (!result) throw new Refused(`no ${field} in the answer`, 'NO_DATA');
    if (result.__typename.endsWith('Error')) throw new Refused(result.message ?? result.__typename, result.__typename);
    return result;
  }

  /**
   * Follows a subscription, reconnecting with backoff whenever the connection drops;
   * `variables()` is asked again on every (re)subscription, so a caller can resume with `after`.
   * Ends when the server completes the stream, on a GraphQL error (`onError`), or on close().
   */
  follow<T>(
    query: string,
    variables: () => Record<string, unknown>,
    handlers: { next: (data: T) => void; error: (error: Refused) => void; complete?: () => void; dropped?: () => void },
  ): { close: () => void } {
    let closed = false;
    let client: Client | null = null;
    let attempt = 0;
    let timer: NodeJS.Timeout | null = null;
    const token = this.options.token;
    const connect = () => {
      if (closed) return;
      const current = createClient({
        url: this.options.url.replace(/^http/, 'ws'),
        webSocketImpl: WebSocket,
        connectionParams: token ? { authorization: `Bearer ${token}` } : {},
        retryAttempts: 0,
        lazy: true,
        keepAlive: 10_000,
        on: { connected: () => (attempt = 0) },
      });
      client = current;
      current.subscribe<T>(
        { query, variables: variables() },
        {
          next: (payload) => {
            if (closed) return;
            if (payload.errors?.length) {
              const first = payload.errors[0] as { message: string; extensions?: { code?: string } };
              handlers.error(new Refused(first.message, first.extensions?.code ?? 'GRAPHQL'));
              close();
              return;
            }
            if (payload.data) handlers.next(payload.data as T);
          },
          error: (error: unknown) => {
            void current.dispose();
            if (closed) return;
            if (Array.isArray(error)) {
              const first = error[0] as { message?: string; extensions?: { code?: string } } | undefined;
              handlers.error(
                new Refused(first?.message ?? 'subscription refused', first?.extensions?.code ?? 'GRAPHQL'),
              );
              close();
              return;
            }
            // Bad request, unauthorized, forbidden (a bad or missing token): retrying would not help.
            const code = (error as { code?: number }).code;
            if (code === 4400 || code === 4401 || code === 4403) {
              const reason = (error as { reason?: string }).reason || `closed with code ${code}`;
              handlers.error(
                new Refused(`Sluice at ${this.options.url} refused the subscription: ${reason}`, 'CLOSED'),
              );
              close();
              return;
            }
            handlers.dropped?.();
            timer = setTimeout(connect, backoff(attempt++));
          },
          complete: () => {
            void current.dispose();
            if (closed) return;
            closed = true;
            handlers.complete?.();
          },
        },
      );
    };
    const close = () => {
      closed = true;
      if (timer) clearTimeout(timer);
      void client?.dispose();
    };
    connect();
    return { close };
  }
}
