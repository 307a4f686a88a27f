/** A warning line for each HTTP request that took longer than a threshold to answer. */
import type { Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';

export interface SlowRequestLogOptions {
  logger: Logger;
  /** Requests answered after this many milliseconds are logged; 0 logs none. */
  thresholdMs: number;
  /** Injected so tests can drive time. */
  now?: () => number;
}

/**
 * Times each request from its arrival to its response (the first byte of a subscription's
 * stream, not its end). It logs the method, path and operation name, never the query's
 * variables or any header.
 */
export function useSlowRequestLog(options: SlowRequestLogOptions): Plugin {
  const now = options.now ?? (() => performance.now());
  const started = new WeakMap<Request, { at: number; operationName: string | null }>();
  return {
    onRequest({ request }) {
      if (options.thresholdMs > 0) started.set(request, { at: now(), operationName: null });
    },
    onParams({ request, params }) {
      const entry = started.get(request);
      if (entry) entry.operationName = params.operationName ?? null;
    },
    onResponse({ request, response }) {
      const entry = started.get(request);
      if (!entry) return;
      const durationMs = now() - entry.at;
      const path = new URL(request.url).pathname;
      if (durationMs < options.thresholdMs) return;
      options.logger.warn(
        {
          method: request.method,
          path,
          operationName: entry.operationName,
          status: response.status,
          durationMs: Math.round(durationMs),
          thresholdMs: options.thresholdMs,
        },
        `slow request: ${request.method} ${path} took ${Math.round(durationMs)} ms`,
      );
    },
  };
}
