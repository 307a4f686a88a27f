/**
 * Whatever a client sends, the server answers with a typed result or a client error, never an
 * internal one, and the log it keeps still replays to the state it serves.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import { Gql } from '../support/e2e-http.js';

let store: EventStore;
let sluice: Sluice;
let gql: Gql;

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  sluice = await Sluice.open({ store, warn: () => {} });
  gql = new Gql('http://sluice/graphql', createSluiceYoga(sluice).fetch);
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const text = fc.oneof(
  fc.constantFrom('a', 'b', 'db', 'team', '', ' ', 'dagster/priority', 'dagster/max_runtime', '5', '-3', '9999999'),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.constant('x'.repeat(256)),
  fc.constant('nul\u0000byte'),
);
/** Mostly well-formed, sometimes anything: so requests get past validation and reach the rules. */
const name = fc.oneof(
  { arbitrary: fc.constantFrom('a', 'b', 'db', 'team', 'etl'), weight: 5 },
  { arbitrary: text, weight: 1 },
);
const int = fc.oneof(fc.integer({ min: -3, max: 5 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null, freq: 2 });
const runId = fc.constantFrom('r0', 'r1', 'r2', 'r3', 'nope');
const small = fc.integer({ min: -1, max: 3 });
const tag = fc.record({ key: name, value: name });
const step = fc.record({
  key: name,
  pool: maybe(fc.oneof(fc.constantFrom('db', 'gpu'), text)),
  priority: maybe(fc.oneof({ arbitrary: small, weight: 4 }, { arbitrary: int, weight: 1 })),
});
/** Mostly distinct keys (a valid run), sometimes a repeated one (a ValidationError). */
const keyed = <T extends { key: string }>(arb: fc.Arbitrary<T>) =>
  fc.oneof(
    { arbitrary: fc.uniqueArray(arb, { selector: (item) => item.key, maxLength: 3 }), weight: 4 },
    { arbitrary: fc.array(arb, { maxLength: 3 }), weight: 1 },
  );

/** One request: a mutation or query with random, often invalid, arguments. */
const request = fc.oneof(
  fc.record({
    query: fc.constant(
      'mutation($i: EnqueueRunInput!) { enqueueRun(input: $i) { __typename ... on Error { message } } }',
    ),
    variables: fc.record({
      i: fc.record({
        runId: maybe(fc.oneof({ arbitrary: runId, weight: 5 }, { arbitrary: text, weight: 1 })),
        jobName: name,
        tags: maybe(keyed(tag)),
        steps: maybe(keyed(step)),
        priority: maybe(fc.oneof({ arbitrary: small, weight: 4 }, { arbitrary: int, weight: 1 })),
        maxConcurrentSteps: maybe(fc.oneof({ arbitrary: small, weight: 4 }, { arbitrary: int, weight: 1 })),
        leaseSeconds: maybe(fc.oneof({ arbitrary: fc.constant(3600), weight: 4 }, { arbitrary: int, weight: 1 })),
      }),
    }),
  }),
  fc.record({
    query: fc.constantFrom(
      'mutation($r: ID!) { markRunStarted(runId: $r) { __typename } }',
      'mutation($r: ID!) { heartbeat(runId: $r) { __typename } }',
      'mutation($r: ID!, $f: Boolean) { terminateRun(runId: $r, force: $f) { __typename } }',
    ),
    variables: fc.record({ r: runId, f: maybe(fc.boolean()) }),
  }),
  fc.record({
    query: fc.constant('mutation($r: ID!, $s: RunStatus!) { markRunFinished(runId: $r, status: $s) { __typename } }'),
    variables: fc.record({ r: runId, s: fc.constantFrom('SUCCESS', 'FAILURE', 'CANCELED', 'QUEUED', 'STARTED', 'X') }),
  }),
  fc.record({
    query: fc.constantFrom(
      'mutation($r: ID!, $k: String!) { claimStepSlot(runId: $r, stepKey: $k) { __typename } }',
      'mutation($r: ID!, $k: String!) { releaseStepSlot(runId: $r, stepKey: $k) { __typename } }',
    ),
    variables: fc.record({ r: runId, k: name }),
  }),
  fc.record({
    query: fc.constantFrom(
      'mutation($p: String!, $l: Int!) { setPoolLimit(pool: $p, limit: $l) { __typename } }',
      'mutation($p: String!, $l: Int) { deletePoolLimit(pool: $p) { __typename } }',
    ),
    variables: fc.record({ p: fc.oneof(fc.constantFrom('db', 'gpu'), text), l: int }),
  }),
  fc.record({
    query: fc.constantFrom(
      'mutation($l: Int!) { setMaxConcurrentRuns(limit: $l) { __typename } }',
      'mutation($l: Int) { setDefaultPoolLimit(limit: $l) { __typename } }',
    ),
    variables: fc.record({ l: fc.oneof({ arbitrary: small, weight: 4 }, { arbitrary: int, weight: 1 }) }),
  }),
  fc.record({
    query: fc.constant('mutation($g: PoolGranularity!) { setPoolGranularity(granularity: $g) { __typename } }'),
    variables: fc.record({ g: fc.constantFrom('OP', 'RUN', 'op', '') }),
  }),
  fc.record({
    query: fc.constant(
      'mutation($l: [TagConcurrencyLimitInput!]!) { setTagConcurrencyLimits(limits: $l) { __typename } }',
    ),
    variables: fc.record({
      l: fc.array(
        fc.record({ key: text, value: maybe(text), applyLimitPerUniqueValue: maybe(fc.boolean()), limit: int }),
        { maxLength: 3 },
      ),
    }),
  }),
  fc.record({
    query: fc.constantFrom(
      'query($a: String) { decisions(after: $a, first: 5) { edges { cursor } } }',
      'query($a: String) { runs(after: $a) { edges { cursor } } }',
      'query($a: String) { snapshot(position: $a) { position } }',
    ),
    variables: fc.record({ a: maybe(fc.oneof(text, fc.constantFrom('0', '3', '-1', '99999999999999999999'))) }),
  }),
  fc.record({
    query: fc.constant('query($c: ConfigChangeInput!) { simulate(change: $c) { wouldAdmit { id } } }'),
    variables: fc.record({
      c: fc.record({
        maxConcurrentRuns: maybe(int),
        defaultPoolLimit: maybe(int),
        poolLimits: maybe(fc.array(fc.record({ pool: text, limit: maybe(int) }), { maxLength: 2 })),
      }),
    }),
  }),
);

describe('random requests', () => {
  it('given any sequence of requests, then each answers a result or a client error, never an internal one, and the log replays to the served state', async () => {
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 5, maxLength: 40 }), async (requests) => {
        for (const body of requests) {
          const answer = await gql.raw(body);
          for (const value of Object.values(answer.body.data ?? {}) as Array<{ __typename?: string } | null>) {
            const kind = value?.__typename ?? 'data';
            outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
          }
          expect([200, 400], `HTTP ${answer.status} for ${JSON.stringify(body)}: ${answer.text}`).toContain(
            answer.status,
          );
          for (const error of answer.body.errors ?? []) {
            expect(error.message, `internal error for ${JSON.stringify(body)}`).not.toBe('Unexpected error.');
          }
        }
        const replayed = await Sluice.open({ store, warn: () => {} });
        try {
          expect(serializeState(replayed.state)).toBe(serializeState(sluice.state));
        } finally {
          await replayed.close();
        }
      }),
      { numRuns: 60 },
    );
    // The requests reached the rules, not only the validators: some succeeded, some were refused.
    for (const kind of ['RunPayload', 'ValidationError', 'ConflictError', 'NotFoundError', 'ConfigPayload']) {
      expect(outcomes.get(kind) ?? 0, `no ${kind} among ${JSON.stringify([...outcomes])}`).toBeGreaterThan(0);
    }
  }, 60_000);
});
