/**
 * Yoga plugins that make the API safe to expose (issue 13), one concern each: which site may
 * call, who is calling, what their role allows, and how much one request may cost.
 */
import {
  type DocumentNode,
  type ExecutionArgs,
  type FieldNode,
  GraphQLError,
  type GraphQLSchema,
  getNamedType,
  getOperationAST,
  isCompositeType,
  isInterfaceType,
  isObjectType,
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

/** What one occurrence of an expensive field costs, given its arguments. */
export const FIELD_COSTS: Record<string, (args: Record<string, unknown>) => number> = {
  // Rebuilds the whole live state as of a past position.
  'Query.snapshot': () => 100,
  // Runs an admission pass over the whole queue.
  'Query.simulate': () => 100,
  // Every queued run, with what holds it.
  'Query.queue': () => 10,
  'QueueSnapshot.queue': () => 10,
  // A page of runs or decisions: one unit per 10 items (default page 100).
  'Query.runs': (args) => Math.ceil(pageSize(args.first) / 10),
  'Query.decisions': (args) => Math.ceil(pageSize(args.first) / 10),
};

function pageSize(first: unknown): number {
  return typeof first === 'number' && first >= 0 ? first : 100;
}

function argumentValues(field: FieldNode, variables: Record<string, unknown>): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const arg of field.arguments ?? []) {
    const value = arg.value;
    if (value.kind === Kind.INT) values[arg.name.value] = Number(value.value);
    else if (value.kind === Kind.VARIABLE) values[arg.name.value] = variables[value.name.value];
  }
  return values;
}

/** The summed cost of the expensive fields an operation selects, through fragments and aliases. */
export function fieldCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown>,
): number {
  const operation = getOperationAST(document, operationName);
  const root = operation ? schema.getRootType(operation.operation) : undefined;
  if (!operation || !root) return 0;
  const fragments = new Map(
    document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])),
  );
  const walk = (selectionSet: SelectionSetNode, typeName: string, depth: number): number => {
    // Validation has bounded depth and refused fragment cycles; this guards against both anyway.
    if (depth > 64) return 0;
    const type = schema.getType(typeName);
    let cost = 0;
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        const cost1 = FIELD_COSTS[`${typeName}.${selection.name.value}`];
        if (cost1) cost += cost1(argumentValues(selection, variables));
        if (!selection.selectionSet || !(isObjectType(type) || isInterfaceType(type))) continue;
        const field = type.getFields()[selection.name.value];
        const fieldType = field ? getNamedType(field.type) : undefined;
        if (fieldType && isCompositeType(fieldType)) cost += walk(selection.selectionSet, fieldType.name, depth + 1);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        cost += walk(selection.selectionSet, selection.typeCondition?.name.value ?? typeName, depth + 1);
      } else {
        const fragment = fragments.get(selection.name.value);
        if (fragment) cost += walk(fragment.selectionSet, fragment.typeCondition.name.value, depth + 1);
      }
    }
    return cost;
  };
  return walk(operation.selectionSet, root.name, 0);
}

/**
 * The expensive fields (FIELD_COSTS) of one operation may cost at most `maxFieldCost`, counted
 * with the request's variables; more answers 400 before anything runs.
 */
export function useFieldCost(maxFieldCost: number): Plugin {
  const check = (args: ExecutionArgs, stop: (result: { errors: GraphQLError[] }) => void) => {
    const cost = fieldCost(args.schema, args.document, args.operationName, args.variableValues ?? {});
    if (cost <= maxFieldCost) return;
    stop({
      errors: [
        new GraphQLError(
          `Field cost limit of ${maxFieldCost} exceeded, found ${cost} (snapshot and simulate cost 100, queue 10, a page of runs or decisions 1 per 10 items; GRAPHQL_MAX_FIELD_COST)`,
          { extensions: { code: 'COST_LIMIT', http: { status: 400 } } },
        ),
      ],
    });
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      check(args, setResultAndStopExecution);
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      check(args, setResultAndStopExecution);
    },
  };
}

/** With the u flag a surrogate pair is one code point, so this matches only lone surrogates. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Why a request's variables are refused, or null: a list too long, or a string that is not Unicode. */
export function variablesRefusal(variables: unknown, maxListLength: number): string | null {
  const stack: unknown[] = [variables];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value === 'string') {
      // A lone surrogate would be stored as U+FFFD: the log would not say what was decided on.
      if (LONE_SURROGATE.test(value)) return 'a string in the variables is not well-formed Unicode (a lone surrogate)';
    } else if (Array.isArray(value)) {
      if (value.length > maxListLength) {
        return `a list of ${value.length} items in the variables is over the limit of ${maxListLength} (GRAPHQL_MAX_LIST_LENGTH)`;
      }
      stack.push(...value);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) {
        if (LONE_SURROGATE.test(key)) return 'a key in the variables is not well-formed Unicode (a lone surrogate)';
        stack.push(item);
      }
    }
  }
  return null;
}

/**
 * Refuses, before graphql-js coerces them, variables with a list longer than any input needs
 * (the domain's own caps are 1,000) or a string that is not well-formed Unicode.
 */
export function useVariableChecks(maxListLength: number): Plugin {
  const check = (args: ExecutionArgs, stop: (result: { errors: GraphQLError[] }) => void) => {
    const refusal = variablesRefusal(args.variableValues, maxListLength);
    if (refusal === null) return;
    stop({ errors: [new GraphQLError(refusal, { extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } } })] });
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      check(args, setResultAndStopExecution);
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      check(args, setResultAndStopExecution);
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
