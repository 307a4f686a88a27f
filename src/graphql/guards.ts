/**
 * Yoga plugins that make the API safe to expose, one concern each: which site may
 * call, who is calling, what their role allows, how many streams it may hold, and what errors
 * may say. The limits on one request's cost are in limits.ts.
 */
import {
  type DocumentNode,
  type ExecutionArgs,
  type FieldNode,
  GraphQLError,
  getOperationAST,
  Kind,
  type SelectionSetNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { type Principal, roleAllows, roleNeeded } from '../auth/roles.js';
import { corsAllowed, type SitePolicy, siteRefusal } from '../auth/site.js';
import type { Tokens } from '../auth/tokens.js';
import type { GraphQLContext } from './builder.js';

function jsonError(
  fetchAPI: { Response: typeof Response },
  status: number,
  code: string,
  message: string,
  headers = {},
) {
  return new fetchAPI.Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}

/**
 * Refuses a request whose Host is not this server's (DNS rebinding) or whose Origin is another
 * site's (403), and a POST whose body is not JSON (415): forms and multipart bodies are what a
 * page on another site can send without asking first, so they never reach GraphQL.
 */
export function useSiteChecks(policy: SitePolicy): Plugin {
  return {
    onRequest({ request, url, fetchAPI, endResponse }) {
      const refusal = siteRefusal(policy, request.headers.get('host') ?? url.host, request.headers.get('origin'));
      if (refusal !== null) return endResponse(jsonError(fetchAPI, 403, 'FORBIDDEN', refusal));
      if (request.method === 'POST') {
        const type = (request.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase();
        if (type !== 'application/json' && type !== 'application/graphql-response+json') {
          endResponse(
            jsonError(
              fetchAPI,
              415,
              'UNSUPPORTED_MEDIA_TYPE',
              'POST bodies must be JSON (content-type: application/json)',
            ),
          );
        }
      }
    },
  };
}

/** Yoga's `cors` option: CORS headers only for CORS_ORIGINS, naming the one origin asking. */
export function corsFor(policy: SitePolicy) {
  return (request: Request) => {
    const origin = request.headers.get('origin');
    if (!corsAllowed(policy, origin)) return false as const;
    return {
      origin,
      credentials: true,
      methods: ['GET', 'POST'],
      allowedHeaders: ['authorization', 'content-type', 'accept', 'x-sluice-actor'],
      maxAge: 600,
    };
  };
}

/**
 * A request to the GraphQL endpoint without a known bearer token answers 401 UNAUTHENTICATED
 * before anything is parsed. GraphiQL's page itself holds no data and is served before this.
 */
export function useAuthentication(tokens: Tokens, endpoint: string): Plugin {
  return {
    onRequest({ request, url, fetchAPI, endResponse }) {
      if (url.pathname !== endpoint || request.method === 'OPTIONS') return;
      if (tokens.authenticate(request) !== null) return;
      const given = request.headers.get('authorization') !== null;
      endResponse(
        jsonError(
          fetchAPI,
          401,
          'UNAUTHENTICATED',
          given ? 'unknown token' : 'send a token: Authorization: Bearer TOKEN',
          { 'www-authenticate': 'Bearer realm="sluice"' },
        ),
      );
    },
  };
}

/** The root fields an operation selects, through fragments. */
function* rootFields(
  document: DocumentNode,
  selectionSet: SelectionSetNode,
  seen = new Set<string>(),
): Generator<FieldNode> {
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) yield selection;
    else if (selection.kind === Kind.INLINE_FRAGMENT) yield* rootFields(document, selection.selectionSet, seen);
    else if (!seen.has(selection.name.value)) {
      seen.add(selection.name.value);
      const fragment = document.definitions.find(
        (d) => d.kind === Kind.FRAGMENT_DEFINITION && d.name.value === selection.name.value,
      );
      if (fragment?.kind === Kind.FRAGMENT_DEFINITION) yield* rootFields(document, fragment.selectionSet, seen);
    }
  }
}

function forbidden(args: ExecutionArgs): GraphQLError[] {
  const principal = (args.contextValue as GraphQLContext).principal;
  const operation = getOperationAST(args.document, args.operationName);
  if (!operation) return [];
  const errors: GraphQLError[] = [];
  for (const field of rootFields(args.document, operation.selectionSet)) {
    const needed = roleNeeded(operation.operation, field.name.value);
    if (roleAllows(principal.role, needed)) continue;
    errors.push(
      new GraphQLError(
        `${field.name.value} needs the ${needed} role; ${principal.name} has the ${principal.role} role`,
        {
          nodes: [field],
          path: [field.alias?.value ?? field.name.value],
          extensions: { code: 'FORBIDDEN', http: { status: 403 } },
        },
      ),
    );
  }
  return errors;
}

/**
 * Every root field needs the role `roleNeeded` names. When one is beyond the caller's role the
 * operation answers FORBIDDEN for that field and runs nothing, so nothing is appended.
 */
export function useRoles(): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const errors = forbidden(args);
      if (errors.length > 0) setResultAndStopExecution({ data: null, errors });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const errors = forbidden(args);
      if (errors.length > 0) setResultAndStopExecution({ data: null, errors });
    },
  };
}

/**
 * At most `max` live subscriptions per token (SSE and WebSocket together), so one client
 * cannot hold the server's memory with streams it never reads.
 */
export function useSubscriptionBudget(max: number): Plugin {
  const live = new Map<string, number>();
  const release = (name: string) => {
    const left = (live.get(name) ?? 1) - 1;
    if (left <= 0) live.delete(name);
    else live.set(name, left);
  };
  return {
    onSubscribe({ args, subscribeFn, setSubscribeFn, setResultAndStopExecution }) {
      const principal: Principal = (args.contextValue as unknown as GraphQLContext).principal;
      const name = principal.name;
      const count = live.get(name) ?? 0;
      if (count >= max) {
        setResultAndStopExecution({
          errors: [
            new GraphQLError(`${name} already has ${count} live subscriptions (MAX_SUBSCRIPTIONS_PER_TOKEN)`, {
              extensions: { code: 'TOO_MANY_SUBSCRIPTIONS', http: { status: 429 } },
            }),
          ],
        });
        return;
      }
      live.set(name, count + 1);
      let released = false;
      const releaseOnce = () => {
        if (released) return;
        released = true;
        release(name);
      };
      setSubscribeFn(async (subscribeArgs) => {
        try {
          return await subscribeFn(subscribeArgs);
        } catch (error) {
          releaseOnce();
          throw error;
        }
      });
      return {
        onSubscribeResult({ result }) {
          if (!(Symbol.asyncIterator in Object(result))) {
            releaseOnce();
            return;
          }
          return { onEnd: releaseOnce };
        },
      };
    },
  };
}

/**
 * Nothing internal reaches a client in any mode: no original error (Yoga adds a JSON parser's
 * message to "POST body sent invalid JSON."), no stack, no file path.
 */
export function useQuietErrors(): Plugin {
  return {
    onResultProcess({ result, setResult }) {
      if (Array.isArray(result) || !('errors' in result) || !result.errors?.length) return;
      let changed = false;
      const errors = result.errors.map((error) => {
        const extensions = error.extensions as Record<string, unknown> | undefined;
        if (!extensions || !('originalError' in extensions || 'stack' in extensions)) return error;
        changed = true;
        const { originalError: _originalError, stack: _stack, ...rest } = extensions;
        return new GraphQLError(error.message, {
          nodes: error.nodes,
          source: error.source,
          positions: error.positions,
          path: error.path,
          extensions: rest,
        });
      });
      if (changed) setResult({ ...result, errors });
    },
  };
}
