/**
 * Subscriptions executed once per event, not once per subscriber. graphql-js's `subscribe`
 * executes the operation's selection for every event of every subscriber, and Yoga serializes
 * each result again: with a thousand subscribers on `dequeueDecisions`, each decision was turned
 * into the same JSON a thousand times, behind the commands that made it.
 *
 * Here the source stream is made as graphql-js makes it (createSourceEventStream), and each
 * event is executed once per distinct operation: the same event object (the decision streams
 * hand the same object to every subscriber) with the same document, operation, role and the
 * variables the selection uses gives the same result object, and the same JSON text (Yoga's
 * SSE writer uses a result's own `stringify`). Variables used only by the subscription field's
 * arguments (`runId`, `pool`, `after`) choose the events and do not change what one looks like.
 */
import {
  type ASTNode,
  createSourceEventStream,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  execute,
  getOperationAST,
  Kind,
  visit,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { GraphQLContext } from './builder.js';

type Result = ExecutionResult & { stringify?: (result: unknown) => string };

/** Per event object: the result of each distinct operation, executed once. */
const resultsByEvent = new WeakMap<object, Map<string, Promise<Result>>>();

/** Per document: its text and the variables its selection uses outside the root field's arguments. */
const documentKeys = new WeakMap<DocumentNode, { text: string; selectionVariables: string[] }>();

function documentKeyOf(document: DocumentNode, operationName: string | null | undefined) {
  let known = documentKeys.get(document);
  if (!known) {
    // Every variable the document uses, except in the arguments of the operation's root fields
    // (fragments are counted whole: at worst a variable too many, and less sharing).
    const used = new Set<string>();
    const collect = (node: ASTNode | undefined) => {
      if (!node) return;
      visit(node, {
        Variable: (variable) => {
          used.add(variable.name.value);
        },
      });
    };
    const operation = getOperationAST(document, operationName);
    for (const selection of operation?.selectionSet.selections ?? []) {
      if (selection.kind === Kind.FIELD) {
        for (const directive of selection.directives ?? []) collect(directive);
        collect(selection.selectionSet);
      } else {
        collect(selection);
      }
    }
    for (const definition of document.definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) collect(definition);
    }
    const text = document.loc?.source.body ?? JSON.stringify(document);
    known = { text, selectionVariables: [...used].sort() };
    documentKeys.set(document, known);
  }
  return known;
}

function operationKey(args: ExecutionArgs): string {
  const { text, selectionVariables } = documentKeyOf(args.document, args.operationName);
  const variables = args.variableValues ?? {};
  const role = (args.contextValue as GraphQLContext | undefined)?.principal?.role ?? '';
  return JSON.stringify([
    role,
    args.operationName ?? null,
    text,
    selectionVariables.map((name) => variables[name] ?? null),
  ]);
}

/** The result of one event for one operation, executed by the first subscriber that needs it. */
function sharedResult(args: ExecutionArgs, key: string, event: unknown): Promise<Result> {
  if (event === null || typeof event !== 'object') return Promise.resolve(executeEvent(args, event));
  let results = resultsByEvent.get(event);
  if (!results) resultsByEvent.set(event, (results = new Map()));
  let result = results.get(key);
  if (!result) {
    result = Promise.resolve(executeEvent(args, event));
    results.set(key, result);
  }
  return result;
}

function executeEvent(args: ExecutionArgs, event: unknown): Promise<Result> | Result {
  const outcome = execute({ ...args, rootValue: event });
  const withText = (result: Result): Result => {
    let text: string | null = null;
    // Yoga's writers call a result's own stringify when it has one: the text is made once.
    Object.defineProperty(result, 'stringify', {
      enumerable: false,
      value: (value: unknown) => (value === result ? (text ??= JSON.stringify(result)) : JSON.stringify(value)),
    });
    return result;
  };
  return outcome instanceof Promise ? outcome.then(withText) : withText(outcome);
}

/** graphql-js's mapping of a source stream to results (subscribe's), with return and throw passed on. */
function mapEvents(
  events: AsyncIterable<unknown>,
  toResult: (event: unknown) => Promise<Result>,
): AsyncIterableIterator<Result> {
  const iterator = events[Symbol.asyncIterator]();
  const map = async (step: IteratorResult<unknown>): Promise<IteratorResult<Result>> => {
    if (step.done) return step as IteratorResult<Result>;
    try {
      return { value: await toResult(step.value), done: false };
    } catch (error) {
      await iterator.return?.().catch(() => undefined);
      throw error;
    }
  };
  return {
    next: async () => map(await iterator.next()),
    return: async () =>
      iterator.return ? map(await iterator.return()) : { value: undefined as unknown as Result, done: true },
    throw: async (error?: unknown) => {
      if (iterator.throw) return map(await iterator.throw(error));
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

export function useSharedSubscriptionResults(): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(async (args: ExecutionArgs) => {
        const source = await createSourceEventStream(args);
        if (!(Symbol.asyncIterator in Object(source))) return source as ExecutionResult;
        const key = operationKey(args);
        return mapEvents(source as AsyncIterable<unknown>, (event) => sharedResult(args, key, event));
      });
    },
  };
}
