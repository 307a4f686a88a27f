/** Yoga plugins for metrics: the `/metrics` route, and counting open subscriptions. */
import { isAsyncIterable, type Plugin } from 'graphql-yoga';
import type { Registry } from 'prom-client';

export interface MetricsRouteOptions {
  registry: Registry;
  /**
   * Whether the request may read the metrics; default every request may. A refused request
   * answers 401 without an Authorization header, 403 with one.
   */
  authorize?: (request: Request) => boolean | Promise<boolean>;
  path?: string;
}

/** `GET /metrics`: the registry in Prometheus' text format. */
export function useMetricsRoute(options: MetricsRouteOptions): Plugin {
  const path = options.path ?? '/metrics';
  return {
    async onRequest({ request, url, fetchAPI, endResponse }) {
      if (url.pathname !== path) return;
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        endResponse(new fetchAPI.Response('use GET\n', { status: 405, headers: { allow: 'GET, HEAD' } }));
        return;
      }
      if (options.authorize && !(await options.authorize(request))) {
        const status = request.headers.has('authorization') ? 403 : 401;
        endResponse(new fetchAPI.Response(status === 401 ? 'a token is needed\n' : 'not allowed\n', { status }));
        return;
      }
      const body = await options.registry.metrics();
      endResponse(
        new fetchAPI.Response(request.method === 'HEAD' ? null : body, {
          status: 200,
          headers: { 'content-type': options.registry.contentType },
        }),
      );
    },
  };
}

export interface SubscriptionCountOptions {
  opened: () => void;
  closed: () => void;
}

/** Reports each subscription that starts streaming and each that ends, over SSE or WebSocket. */
export function useSubscriptionCount(options: SubscriptionCountOptions): Plugin {
  return {
    onSubscribe() {
      return {
        onSubscribeResult({ result }) {
          if (!isAsyncIterable(result)) return;
          options.opened();
          let closed = false;
          return {
            onEnd() {
              if (closed) return;
              closed = true;
              options.closed();
            },
          };
        },
      };
    },
  };
}
