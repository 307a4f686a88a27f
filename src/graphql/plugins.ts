/** Yoga plugins, one concern each. */
import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

export interface ReadinessRouteOptions {
  /** Null when ready (200); otherwise why not, answered with 503. */
  notReadyBecause: () => string | null;
  /** More to say in the answer either way (e.g. how far the history read model is). */
  details?: () => Record<string, unknown>;
  path?: string;
}

/**
 * `GET /ready`: 200 once the projections have caught up with the log and follow it, else 503
 * with the reason, so a load balancer stops sending commands to a server that lost the store.
 * `details` adds to either answer (the history read model's position while it catches up).
 * `GET /health` (the process serves) is Yoga's own health check, which answers before any plugin.
 */
export function useReadinessRoute(options: ReadinessRouteOptions): Plugin {
  const path = options.path ?? '/ready';
  return {
    onRequest({ request, url, fetchAPI, endResponse }) {
      if ((request.method !== 'GET' && request.method !== 'HEAD') || url.pathname !== path) return;
      const reason = options.notReadyBecause();
      const body = {
        ...(reason === null ? { status: 'ready' } : { status: 'not ready', reason }),
        ...options.details?.(),
      };
      endResponse(
        new fetchAPI.Response(JSON.stringify(body), {
          status: reason === null ? 200 : 503,
          headers: { 'content-type': 'application/json' },
        }),
      );
    },
  };
}

const BAD_REQUEST_CODES = new Set(['GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_USER_INPUT']);
const SERVER_ERROR_CODES = new Set(['INTERNAL_SERVER_ERROR', 'STORE_UNAVAILABLE']);

/**
 * A request that is not a valid GraphQL operation (not JSON, a syntax error, an unknown field,
 * a wrong argument type) answers HTTP 400 whatever the client accepts, so proxies and scripts
 * see a client error. Yoga answers 200 to legacy `application/json` clients; this overrides it.
 */
export function useBadRequestStatus(): Plugin {
  return {
    onResultProcess({ result, setResult }) {
      if (Array.isArray(result) || !('errors' in result) || !result.errors?.length) return;
      if ('data' in result && result.data != null) return;
      // No data at all: refused before execution (a request error), e.g. by a cost or depth limit,
      // unless the error says the server failed.
      const requestError = !('data' in result);
      const errors = result.errors.map((error) => {
        const code = error.extensions?.code;
        const http = error.extensions?.http as { status?: number } | undefined;
        const clientError = http?.status !== undefined && http.status >= 400 && http.status < 500;
        if (typeof code === 'string' && SERVER_ERROR_CODES.has(code)) return error;
        if (!clientError && !requestError && (typeof code !== 'string' || !BAD_REQUEST_CODES.has(code))) return error;
        return new GraphQLError(error.message, {
          nodes: error.nodes,
          source: error.source,
          positions: error.positions,
          path: error.path,
          originalError: error.originalError,
          extensions: { ...error.extensions, http: { status: clientError ? http?.status : 400 } },
        });
      });
      setResult({ ...result, errors });
    },
  };
}

export interface RequestSizeLimitOptions {
  /** Largest request body accepted, in bytes. */
  maxBytes: number;
}

/**
 * Refuses a request body larger than the largest valid command could need (HTTP 413), before
 * it is read, so one client cannot make the server buffer and parse megabytes. A body that
 * declares its Content-Length is refused by it (Node's HTTP parser then delivers exactly that many
 * bytes); only a chunked body, which declares none, is counted as it is read, and refused once
 * past the limit. Yoga's own limit counts every body through a stream pipeline, which was about a
 * twentieth of the server's time per command; it is turned off (see yoga.ts) in favour of this.
 */
export function useRequestSizeLimit(options: RequestSizeLimitOptions): Plugin {
  const tooLarge = () =>
    new GraphQLError(`request body over ${options.maxBytes} bytes`, {
      extensions: { code: 'PAYLOAD_TOO_LARGE', http: { status: 413 } },
    });
  return {
    onRequest({ request, fetchAPI, endResponse }) {
      const length = Number(request.headers.get('content-length') ?? 0);
      if (length > options.maxBytes) {
        endResponse(
          new fetchAPI.Response(
            JSON.stringify({
              errors: [
                { message: `request body over ${options.maxBytes} bytes`, extensions: { code: 'PAYLOAD_TOO_LARGE' } },
              ],
            }),
            { status: 413, headers: { 'content-type': 'application/json' } },
          ),
        );
      }
    },
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      if (request.headers.get('content-length') !== null || request.body === null || requestParser == null) return;
      const parse = requestParser;
      setRequestParser((chunked) => {
        let read = 0;
        const counted = (chunked.body as ReadableStream<Uint8Array>).pipeThrough(
          new fetchAPI.TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              read += chunk.byteLength;
              if (read > options.maxBytes) controller.error(tooLarge());
              else controller.enqueue(chunk);
            },
          }),
        );
        return parse(
          new fetchAPI.Request(chunked.url, {
            method: chunked.method,
            headers: chunked.headers,
            signal: chunked.signal,
            body: counted,
            // @ts-expect-error a streamed request body needs it; the DOM types do not know it
            duplex: 'half',
          }),
        );
      });
    },
  };
}
