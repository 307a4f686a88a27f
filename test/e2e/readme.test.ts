/**
 * The documentation's walk-through cannot drift: every GraphQL request the API and dashboard pages
 * show is sent, in order, to a real server on a fresh log, and the answer must be the one the page
 * shows, positions and all. Each section is also run alone on a fresh server, so that each stands
 * on its own.
 */
import { parse, validate } from 'graphql';
import { afterEach, describe, expect, it } from 'vitest';
import { schema } from '../../src/graphql/schema.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql } from '../support/e2e-http.js';
import { type ReadmeRequest, readmeRequests, walkthroughPages } from '../support/readme.js';

const requests = walkthroughPages().flatMap((page) =>
  readmeRequests(page.text).map((request) => ({ ...request, section: `${page.path}: ${request.section}` })),
);
const where = (request: ReadmeRequest) => `${request.section.split(':')[0]} line ${request.line}`;

let server: RunningServer | null = null;

afterEach(async () => {
  await server?.close();
  server = null;
});

async function freshServer(): Promise<Gql> {
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, host: '127.0.0.1', eventStoreUrl: 'sqlite::memory:' },
    () => {},
  );
  return new Gql(server.url);
}

/** Sends each request with an answer and compares; subscriptions are only checked to be valid. */
async function follow(gql: Gql, list: readonly ReadmeRequest[]): Promise<void> {
  for (const request of list) {
    if (request.answerText === null) {
      // A subscription streams: it is checked against the schema here, and run in subscriptions.test.ts.
      expect(validate(schema, parse(request.query)), where(request)).toEqual([]);
      continue;
    }
    const answer = await gql.answer(request.query);
    expect(answer.body.errors, `${where(request)}: ${request.query}`).toBeUndefined();
    expect(answer.body.data, `${where(request)}: ${request.query}`).toEqual(request.answer);
  }
}

describe('the documentation walk-through', () => {
  it('has requests with answers in each of its sections', () => {
    const sections = new Set(requests.map((r) => r.section));
    expect([...sections]).toEqual([
      'docs/api.md: A session in GraphiQL',
      'docs/api.md: Worker protocol: claim, heartbeat, release, finish',
      'docs/dashboard.md: How it stays live',
    ]);
    expect(requests.filter((r) => r.answerText !== null).length).toBeGreaterThanOrEqual(15);
    expect(requests.every((r) => r.answerText !== 'ANSWER')).toBe(true);
  });

  it('answers every request, in order on one fresh server, as the pages show', async () => {
    await follow(await freshServer(), requests);
  });

  it.each([...new Set(requests.map((r) => r.section))])(
    'section "%s" works alone on a fresh server',
    async (section) => {
      await follow(
        await freshServer(),
        requests.filter((r) => r.section === section),
      );
    },
  );
});
