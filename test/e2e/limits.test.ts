/**
 * The request limits' defaults let real clients through: every GraphQL operation in
 * the README, and a dashboard page asking for everything at once, pass every limit.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Kind, parse, print } from 'graphql';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import { DEFAULT_REQUEST_LIMITS } from '../../src/auth/settings.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { boundedParseCache, bracketDepth, fieldCost } from '../../src/graphql/limits.js';
import { schema } from '../../src/graphql/schema.js';
import { createSluiceYoga } from '../../src/server.js';
import { CONFIG_FIELDS, DECISION_FIELDS, POOL_FIELDS, RUN_FIELDS } from '../support/e2e-http.js';
import { walkthroughPages } from '../support/readme.js';

const README = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8');
const DOCS = [README, ...walkthroughPages().map((page) => page.text)].join('\n');
const LIMIT_MESSAGES = /limit of|exceeded|over the limit|GRAPHQL_MAX|MAX_/i;

let store: EventStore;
let sluice: Sluice;
let yoga: ReturnType<typeof createSluiceYoga>;

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  sluice = await Sluice.open({ store });
  yoga = createSluiceYoga(sluice);
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

/** Every operation of every ```graphql block of the README and the walk-through pages, printed on its own. */
function readmeOperations(): string[] {
  const blocks = [...DOCS.matchAll(/```graphql\n([\s\S]*?)```/g)].map((match) => match[1] as string);
  return blocks.flatMap((block) =>
    parse(block).definitions.flatMap((definition) =>
      definition.kind === Kind.OPERATION_DEFINITION ? [print(definition)] : [],
    ),
  );
}

async function answer(query: string) {
  const subscription = query.startsWith('subscription');
  const response = await yoga.fetch('http://127.0.0.1/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: subscription ? 'text/event-stream' : 'application/json' },
    body: JSON.stringify({ query }),
  });
  if (subscription) {
    const reader = response.body?.getReader();
    const first = await reader?.read();
    await reader?.cancel();
    return { status: response.status, text: new TextDecoder().decode(first?.value) };
  }
  return { status: response.status, text: await response.text() };
}

describe('the limits let real clients through', () => {
  it('given every GraphQL operation in the documentation, in order, then none is refused by a limit', async () => {
    const operations = readmeOperations();
    expect(operations.length).toBeGreaterThan(15);
    for (const operation of operations) {
      const { status, text } = await answer(operation);
      expect(status, `${operation}\n${text}`).toBe(200);
      expect(text, operation).not.toMatch(LIMIT_MESSAGES);
    }
  });

  it('given a dashboard page asking for the queue with reasons, runs in progress, pools, config and a page of decisions at once, then it answers', async () => {
    const query = `{
      queue { ${RUN_FIELDS} waits { from to reasons { message } } stepClaims { stepKey pool granted reasons { message } } deadline { at status reason } }
      inProgress: runs(first: 100, statuses: [STARTING, STARTED, CANCELING]) { edges { cursor node { ${RUN_FIELDS} deadline { at reason } } } pageInfo { hasNextPage endCursor } }
      pools { ${POOL_FIELDS} }
      concurrencyConfig { ${CONFIG_FIELDS} }
      decisions(first: 100) { edges { cursor node { ${DECISION_FIELDS} } } pageInfo { hasNextPage endCursor } }
      simulate(change: { maxConcurrentRuns: 20 }) { wouldAdmit { id } stillQueued { id blockedBy { message } } }
    }`;
    const { status, text } = await answer(query);
    expect(status, text).toBe(200);
    expect(text).not.toMatch(/"errors"/);
  });
});

describe('the field cost', () => {
  const cost = (query: string, variables: Record<string, unknown> = {}) =>
    fieldCost(schema, parse(query), null, variables);

  it('counts expensive fields through aliases, fragments and variables', () => {
    expect(cost('{ pools { name } concurrencyConfig { maxConcurrentRuns } }')).toBe(0);
    expect(cost('{ a: snapshot { position } b: snapshot { position queue { id } } }')).toBe(210);
    expect(cost('{ runs { edges { cursor } } }')).toBe(10);
    expect(cost('query($n: Int) { decisions(first: $n) { edges { cursor } } }', { n: 1000 })).toBe(100);
    expect(cost('{ ...F ...F } fragment F on Query { simulate(change: {}) { config { maxConcurrentRuns } } }')).toBe(
      200,
    );
  });

  it("prices a run's waits and decisions once per run of the list they are in: a page's size, or the live queue's", () => {
    const perRun = '{ waits { from } decisions { kind } }';
    expect(cost(`{ run(id: "a") ${perRun} }`)).toBe(2);
    expect(cost(`{ runs(first: 1000) { edges { node ${perRun} } } }`)).toBe(100 + 1000 * 2);
    expect(cost(`{ runs(first: 20) { edges { node { id ...W } } } } fragment W on Run ${perRun}`)).toBe(2 + 20 * 2);
    const queue = `{ queue ${perRun} snapshot { inProgress ${perRun} } }`;
    expect(fieldCost(schema, parse(queue), null, {}, { queued: 3000, inProgress: 2 })).toBe(
      10 + 3000 * 2 + 100 + 2 * 2,
    );
    expect(cost('{ runs(first: 1000) { edges { node { id blockedBy { message } } } } }')).toBe(100);
  });

  it('measures bracket nesting outside strings and comments', () => {
    expect(bracketDepth('{ a { b(c: [1, [2]]) } }')).toBe(5);
    expect(bracketDepth('{ a(s: "{{{{[[[(((") # {{{{{\n }')).toBe(2);
    expect(bracketDepth('{ a(s: """ {{{{ \\""" {{ """) }')).toBe(2);
  });
});

describe('the parse cache', () => {
  it('keeps documents up to PARSE_CACHE_BYTES of source, never one over PARSE_CACHE_MAX_DOCUMENT_BYTES, oldest out first', () => {
    const { documentCache } = boundedParseCache({
      ...DEFAULT_REQUEST_LIMITS,
      parseCacheBytes: 1000,
      parseCacheMaxDocumentBytes: 400,
    });
    const doc = parse('{ pools { name } }');
    const key = (n: number, size: number) => `${n}`.padEnd(size, ' ');
    documentCache.set(key(0, 500), doc);
    expect(documentCache.get(key(0, 500))).toBeUndefined();
    for (let i = 1; i <= 4; i++) documentCache.set(key(i, 300), doc);
    expect(documentCache.get(key(1, 300))).toBeUndefined();
    for (let i = 2; i <= 4; i++) expect(documentCache.get(key(i, 300))).toBe(doc);
    expect(documentCache.calculatedSize).toBeLessThanOrEqual(1000);
  });
});
