/**
 * A bounded cost per request: graphql-armor's limits on tokens, depth, aliases,
 * directives and structural cost; ours on bracket nesting, expensive fields and variables; and a
 * parse cache bounded in bytes.
 */
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import {
  BREAK,
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
  type Source,
  visit,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';
import type { RequestLimits } from '../auth/settings.js';

/** The deepest nesting of brackets in a GraphQL document, strings and comments skipped. */
export function bracketDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x23 /* # */) {
      while (i < text.length && text.charCodeAt(i) !== 0x0a && text.charCodeAt(i) !== 0x0d) i++;
    } else if (c === 0x22 /* " */) {
      if (text.startsWith('"""', i)) {
        // A block string ends at the first triple quote that is not escaped (\""").
        let end = text.indexOf('"""', i + 3);
        while (end !== -1 && text.charCodeAt(end - 1) === 0x5c) end = text.indexOf('"""', end + 3);
        i = end === -1 ? text.length : end + 2;
      } else {
        for (i++; i < text.length && text.charCodeAt(i) !== 0x22 && text.charCodeAt(i) !== 0x0a; i++) {
          if (text.charCodeAt(i) === 0x5c /* \ */) i++;
        }
      }
    } else if (c === 0x7b || c === 0x28 || c === 0x5b /* { ( [ */) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if (c === 0x7d || c === 0x29 || c === 0x5d /* } ) ] */) {
      depth--;
    }
  }
  return deepest;
}

/**
 * graphql-js parses recursively: a few thousand nested brackets overflow the stack before any
 * limit sees the document. Nesting beyond what any valid operation needs is refused first.
 */
export function useNestingLimit(maxNesting: number): Plugin {
  return {
    onParse({ parseFn, setParseFn }) {
      setParseFn((source: string | Source, options) => {
        const text = typeof source === 'string' ? source : source.body;
        const depth = bracketDepth(text);
        if (depth > maxNesting) {
          throw new GraphQLError(
            `Syntax Error: brackets nested ${depth} deep, over the limit of ${maxNesting} (4 x GRAPHQL_MAX_DEPTH)`,
            { extensions: { code: 'GRAPHQL_PARSE_FAILED' } },
          );
        }
        return parseFn(source, options);
      });
    },
  };
}

/** What one occurrence of an expensive field costs, given its arguments. */
export const FIELD_COSTS: Record<string, (args: Record<string, unknown>) => number> = {
  // Rebuilds the whole live state as of a past position.
  'Query.snapshot': () => 100,
  // Runs an admission pass over the whole queue.
  'Query.simulate': () => 100,
  // A wait report reads prefix sums and the runs its edges cut through.
  'Query.waitReport': () => 10,
  // Reads one row per run that waited in the window, for exact percentiles.
  'WaitReport.byJob': () => 10,
  // The first page of each share's waitingRuns; once per request and window, however many shares.
  'WaitShare.longestRunIds': () => 10,
  // The runs behind a report's figure: a number per run the figure counts (one index range) and
  // the window's edges, like byJob, plus the page's rows.
  'Query.waitingRuns': (args) => 10 + Math.ceil(pageSize(args.first) / 10),
  // Replays every arrival of the window through the decider.
  'Query.replayWhatIf': () => 100,
  // Every queued run, with what holds it.
  'Query.queue': () => 10,
  'QueueSnapshot.queue': () => 10,
  // Every step holding or waiting for the pool's slots.
  'Pool.claims': () => 10,
  // A page of runs or decisions: one unit per 10 items (default page 100).
  'Query.runs': (args) => Math.ceil(pageSize(args.first) / 10),
  'Query.decisions': (args) => Math.ceil(pageSize(args.first) / 10),
  // Derived from the run's decisions and its counters' limit-state records while it waited: a
  // run that waited long behind shared limits has many stretches. Priced per run, times the
  // runs of the list it is in (LIST_SIZES), so a page of runs with their waits stays small.
  'Run.waits': () => 1,
  'Run.decisions': () => 1,
  // totalCount reads one kept total, except a run's decisions: those are counted from the run's
  // own record, as Run.decisions lists them. The total of runs and of limit changes costs nothing.
  'DecisionConnection.totalCount': () => 1,
};

/** What the server knows before running an operation, for the sizes of lists without `first`. */
export interface CostContext {
  /** Runs queued now. */
  queued: number;
  /** Runs in progress now. */
  inProgress: number;
}

/**
 * How many items a list field gives: what each field under it costs is counted that many times.
 * A list without `first` counts what the live state holds (a past snapshot's queue is priced
 * as the queue now, the best guess before it is rebuilt).
 */
export const LIST_SIZES: Record<string, (args: Record<string, unknown>, context: CostContext) => number> = {
  'Query.runs': (args) => pageSize(args.first),
  'Query.queue': (_args, context) => context.queued,
  'QueueSnapshot.queue': (_args, context) => context.queued,
  'QueueSnapshot.inProgress': (_args, context) => context.inProgress,
  'Simulation.wouldAdmit': (_args, context) => context.queued,
  'Simulation.stillQueued': (_args, context) => context.queued,
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

/** The field names of FIELD_COSTS and LIST_SIZES: a document that selects none of them costs 0. */
const COSTED_FIELD_NAMES = new Set(
  [...Object.keys(FIELD_COSTS), ...Object.keys(LIST_SIZES)].map((key) => key.slice(key.indexOf('.') + 1)),
);
/** Per parsed document (the parse cache hands the same one back for the same text). */
const selectsCostedField = new WeakMap<DocumentNode, boolean>();

/**
 * Whether a document selects any field whose name a costed field has, on whatever type: when it
 * does not (an enqueue, a claim), its cost is 0 without walking it against the schema each time.
 */
function namesCostedField(document: DocumentNode): boolean {
  let names = selectsCostedField.get(document);
  if (names === undefined) {
    names = false;
    visit(document, {
      Field(node) {
        if (!COSTED_FIELD_NAMES.has(node.name.value)) return undefined;
        names = true;
        return BREAK;
      },
    });
    selectsCostedField.set(document, names);
  }
  return names;
}

/** The summed cost of the expensive fields an operation selects, through fragments and aliases. */
export function fieldCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown>,
  context: CostContext = { queued: 0, inProgress: 0 },
): number {
  if (!namesCostedField(document)) return 0;
  const operation = getOperationAST(document, operationName);
  const root = operation ? schema.getRootType(operation.operation) : undefined;
  if (!operation || !root) return 0;
  const fragments = new Map(
    document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])),
  );
  const walk = (selectionSet: SelectionSetNode, typeName: string, depth: number, times: number): number => {
    // Validation has bounded depth and refused fragment cycles; this guards against both anyway.
    if (depth > 64) return 0;
    const type = schema.getType(typeName);
    let cost = 0;
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = `${typeName}.${selection.name.value}`;
        const cost1 = FIELD_COSTS[name];
        const listSize = LIST_SIZES[name];
        if (!cost1 && !listSize && !selection.selectionSet) continue;
        const args = argumentValues(selection, variables);
        if (cost1) cost += times * cost1(args);
        if (!selection.selectionSet || !(isObjectType(type) || isInterfaceType(type))) continue;
        const field = type.getFields()[selection.name.value];
        const fieldType = field ? getNamedType(field.type) : undefined;
        const inner = listSize ? times * listSize(args, context) : times;
        if (fieldType && isCompositeType(fieldType))
          cost += walk(selection.selectionSet, fieldType.name, depth + 1, inner);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        cost += walk(selection.selectionSet, selection.typeCondition?.name.value ?? typeName, depth + 1, times);
      } else {
        const fragment = fragments.get(selection.name.value);
        if (fragment) cost += walk(fragment.selectionSet, fragment.typeCondition.name.value, depth + 1, times);
      }
    }
    return cost;
  };
  return walk(operation.selectionSet, root.name, 0, 1);
}

/**
 * The expensive fields (FIELD_COSTS) of one operation may cost at most `maxFieldCost`, counted
 * with the request's variables; more answers 400 before anything runs.
 */
export function useFieldCost(maxFieldCost: number): Plugin {
  const check = (args: ExecutionArgs, stop: (result: { errors: GraphQLError[] }) => void) => {
    type Live = { state: { queue: { size: number }; inProgress: { size: number } } };
    const sluice = (args.contextValue as { sluice?: Live } | undefined)?.sluice;
    const context = { queued: sluice?.state.queue.size ?? 0, inProgress: sluice?.state.inProgress.size ?? 0 };
    const cost = fieldCost(args.schema, args.document, args.operationName, args.variableValues ?? {}, context);
    if (cost <= maxFieldCost) return;
    stop({
      errors: [
        new GraphQLError(
          `Field cost limit of ${maxFieldCost} exceeded, found ${cost} (snapshot, simulate and replayWhatIf cost 100, queue, waitReport and its byJob 10, waitingRuns 10 plus 1 per 10 items, a page of runs or decisions 1 per 10 items, a run's waits or decisions 1 per run listed; GRAPHQL_MAX_FIELD_COST)`,
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

/** The limits of one operation; each refuses with HTTP 400 and a message naming it. */
export function requestLimitPlugins(limits: RequestLimits): Plugin[] {
  return [
    // Parsing stops at the limit, so a 4 MB document costs no more than a small one.
    maxTokensPlugin({ n: limits.maxTokens }),
    // After maxTokensPlugin, which replaces the parser: this one wraps whatever parser is set.
    useNestingLimit(Math.max(32, 4 * limits.maxDepth)),
    maxDepthPlugin({ n: limits.maxDepth, flattenFragments: true }),
    // __typename too: graphql-armor's default allow-list lets 1,000 of them through.
    maxAliasesPlugin({ n: limits.maxAliases, allowList: [] }),
    maxDirectivesPlugin({ n: limits.maxDirectives }),
    costLimitPlugin({ maxCost: limits.maxCost }),
    useFieldCost(limits.maxFieldCost),
    useVariableChecks(limits.maxListLength),
  ] as Plugin[];
}

/**
 * Yoga's parser and validation cache, bounded by the bytes of the documents it keeps: a parsed
 * document costs tens of times its text, and Yoga's default keeps 1,024 of any size for an hour.
 * Larger documents are never kept; validation results are kept per kept document only.
 */
export function boundedParseCache(limits: RequestLimits) {
  const options = {
    maxSize: limits.parseCacheBytes,
    maxEntrySize: limits.parseCacheMaxDocumentBytes,
    sizeCalculation: (_value: unknown, key: string) => Math.max(1, key.length),
    ttl: 3_600_000,
  };
  return {
    documentCache: new LRUCache<string, DocumentNode>(options),
    errorCache: new LRUCache<string, object>(options),
  };
}
