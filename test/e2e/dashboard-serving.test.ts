/**
 * What the dashboard stands on, over a real port: the built files served with their content
 * types and caching (client-side routes fall back to index.html, nothing outside the folder),
 * GraphiQL from local assets only, `viewer`, and the `events` subscription of the whole log.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { describeErrors, enqueued, Gql, SseCollector, tempDir, waitFor } from '../support/e2e-http.js';

let server: RunningServer;
let gql: Gql;
let origin: string;
const dir = tempDir('sluice-dashboard-');
const INDEX = '<!doctype html><title>Sluice test page</title><div id="app"></div>';
const SCRIPT = `console.log(${JSON.stringify('x'.repeat(4000))});`;

beforeAll(async () => {
  const web = join(dir.path, 'web');
  mkdirSync(join(web, 'assets'), { recursive: true });
  writeFileSync(join(web, 'index.html'), INDEX);
  writeFileSync(join(web, 'assets', 'index-abc123.js'), SCRIPT);
  writeFileSync(join(dir.path, 'secret.txt'), 'outside the folder');
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: `sqlite:${join(dir.path, 'events.db')}`, dashboardDir: web },
    () => {},
  );
  gql = new Gql(server.url);
  origin = new URL(server.url).origin;
});

afterAll(async () => {
  await server.close();
  dir.remove();
});

const html = { accept: 'text/html,application/xhtml+xml' };

describe('the dashboard files', () => {
  it('given GET /, then index.html, revalidated on every load', async () => {
    const response = await fetch(`${origin}/`, { headers: html });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('no-cache');
    expect(await response.text()).toBe(INDEX);
  });

  it('given a client-side route, then index.html; given an unknown file that is not a page, then 404', async () => {
    const route = await fetch(`${origin}/runs/etl-2`, { headers: html });
    expect(route.status).toBe(200);
    expect(await route.text()).toBe(INDEX);
    const missing = await fetch(`${origin}/assets/missing.js`, { headers: { accept: '*/*' } });
    expect(missing.status).toBe(404);
  });

  it('given a hashed asset, then JavaScript cached for a year, gzipped when asked, and 304 for its ETag', async () => {
    const response = await fetch(`${origin}/assets/index-abc123.js`, { headers: { 'accept-encoding': 'gzip' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(response.headers.get('content-encoding')).toBe('gzip');
    expect(await response.text()).toBe(SCRIPT);
    const again = await fetch(`${origin}/assets/index-abc123.js`, {
      headers: { 'if-none-match': response.headers.get('etag') ?? '' },
    });
    expect(again.status).toBe(304);
  });

  it('given a path that climbs out of the folder, then the file outside is not served', async () => {
    for (const path of ['/..%2fsecret.txt', '/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt']) {
      const response = await fetch(`${origin}${path}`, { headers: { accept: '*/*' } });
      expect(await response.text(), path).not.toContain('outside the folder');
    }
  });

  it('given the server routes, then they are not shadowed by the dashboard', async () => {
    expect((await fetch(`${origin}/health`)).status).toBe(200);
    const ready = await fetch(`${origin}/ready`, { headers: html });
    expect(await ready.json()).toEqual({ status: 'ready' });
  });
});

describe('GraphiQL', () => {
  it('given a browser at /graphql, then a page titled Sluice whose every URL is on this server', async () => {
    const response = await fetch(`${origin}/graphql`, { headers: html });
    const page = await response.text();
    expect(response.status).toBe(200);
    expect(page).toContain('<title>Sluice</title>');
    expect(page).not.toMatch(/https?:\/\//);
    expect(page).toContain('"initialQuery":"# Sluice');
    const urls = [...page.matchAll(/(?:src|href)="([^"]+)"|"(\/graphiql\/[^"]+)"/g)].map((m) => m[1] ?? m[2]);
    expect(urls).toContain('/graphiql/yoga-graphiql.umd.js');
    for (const url of urls.filter((u): u is string => !!u && u.startsWith('/graphiql/'))) {
      const asset = await fetch(`${origin}${url}`);
      expect(asset.status, url).toBe(200);
      expect(asset.headers.get('content-type'), url).toMatch(/^text\/(javascript|css)/);
      await asset.arrayBuffer();
    }
  });
});

describe('viewer and events', () => {
  it('given no tokens, then the viewer is an anonymous admin', async () => {
    expect(await gql.data('{ viewer { name role } }')).toEqual({ viewer: { name: 'anonymous', role: 'ADMIN' } });
  });

  it('given events(after: "-1"), then the whole log with actors and data, then live events', async () => {
    await gql.data('mutation { setMaxConcurrentRuns(limit: 1) { __typename } }', undefined, {
      'x-sluice-actor': 'ops',
    });
    await enqueued(gql, { runId: 'a', jobName: 'j' });
    const events = new SseCollector(
      server.url,
      'subscription($after: String) { events(after: $after) { position at actor type data } }',
      { after: '-1' },
    );
    try {
      await waitFor(() => events.items.length >= 3 || events.errors.length > 0, 'the backlog');
      expect(describeErrors(events.errors)).toBe('');
      const first = events.items.slice(0, 3).map((item) => item.events);
      expect(first.map((e) => [e.position, e.type, e.actor])).toEqual([
        ['0', 'MaxConcurrentRunsSet', 'anonymous (on behalf of ops)'],
        ['1', 'RunEnqueued', 'anonymous'],
        ['2', 'RunAdmitted', 'anonymous'],
      ]);
      expect(first[1].data).toMatchObject({ runId: 'a', jobName: 'j', tags: [] });
      await gql.data('mutation { markRunFinished(runId: "a", status: SUCCESS) { __typename } }');
      const finished = () => events.items.find((item) => item.events.type === 'RunFinished')?.events;
      await waitFor(() => finished() !== undefined, 'the live event');
      expect(finished()).toMatchObject({
        type: 'RunFinished',
        data: { runId: 'a', status: 'SUCCESS' },
      });
    } finally {
      await events.close();
    }
  });

  it('given a position that is not one, then a clear error naming after', async () => {
    const answer = await gql.answer('subscription { events(after: "soon") { position } }');
    expect(JSON.stringify(answer.body)).toMatch(/after: must be -1 or a position returned by this API/);
  });

  it('given a position beyond the end of the log, then an error saying so, not a silent gap', async () => {
    const events = new SseCollector(server.url, 'subscription { events(after: "999999") { position } }');
    try {
      await waitFor(() => events.errors.length > 0 || events.done, 'the answer');
      expect(describeErrors(events.errors)).toMatch(/after: position 999999 is not in the log \(the last is \d+\)/);
      expect(events.items).toEqual([]);
    } finally {
      await events.close();
    }
  });
});
