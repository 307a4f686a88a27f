import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS, type Settings } from '../../src/settings.js';
import { enqueued, Gql, type Json, mutated, tempDir } from '../support/e2e-http.js';
import { type Browser, browserMissing, buildDashboard, launchBrowser, screenshotPath } from './browser.js';

const missing = browserMissing();
if (missing) console.warn(`browser tests skipped: ${missing}`);

const dir = tempDir('sluice-browser-');
const webDir = join(dir.path, 'web');
let settings: Settings;
let server: RunningServer;
let gql: Gql;
let origin: string;
let browser: Browser;
let page: Page;
/** The state right after seeding, for time travel. */
let seeded: { at: string; position: string };

async function screenshot(name: string): Promise<void> {
  const path = screenshotPath(name);
  await page.screenshot({ path, fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync('docs/screenshots', { recursive: true });
    copyFileSync(path, join('docs/screenshots', `${name}.png`));
  }
}

async function open(path: string): Promise<void> {
  await page.goto(`${origin}${path}`);
  await page.getByTestId('connection').filter({ hasText: 'live' }).waitFor({ timeout: 10_000 });
}

const change = (query: string) => mutated(gql, `mutation { ${query} }`);

/** Waits for the page to show something; a generous bound only so that a broken page fails instead of hanging. */
const poll = <T>(read: () => T | Promise<T>, timeout = 10_000) => expect.poll(read, { timeout, interval: 50 });

describe.skipIf(missing !== null)('the dashboard in Chromium', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    // The page under test is built from the sources of this checkout, not from a stale dist/.
    buildDashboard(webDir);
    settings = {
      ...DEFAULT_SETTINGS,
      port: 0,
      eventStoreUrl: `sqlite:${join(dir.path, 'events.db')}`,
      dashboardDir: webDir,
    };
    server = await startServer(settings, () => {});
    gql = new Gql(server.url);
    origin = new URL(server.url).origin;

    await change('setMaxConcurrentRuns(limit: 2) { __typename }');
    await change(
      'setTagConcurrencyLimits(limits: [{key: "team", applyLimitPerUniqueValue: true, limit: 1}]) { __typename }',
    );
    await change('setPoolLimit(pool: "warehouse", limit: 1) { __typename }');
    await enqueued(gql, {
      runId: 'etl-1',
      jobName: 'nightly_etl',
      tags: [{ key: 'team', value: 'data' }],
      steps: [{ key: 'extract' }, { key: 'load', pool: 'warehouse' }],
    });
    await enqueued(gql, { runId: 'ml-1', jobName: 'train', tags: [{ key: 'team', value: 'ml' }], priority: 5 });
    await enqueued(gql, {
      runId: 'etl-2',
      jobName: 'nightly_etl',
      tags: [{ key: 'team', value: 'data' }],
      steps: [{ key: 'extract' }, { key: 'load', pool: 'warehouse' }],
    });
    await change('markRunStarted(runId: "etl-1") { __typename }');
    await change('claimStepSlot(runId: "etl-1", stepKey: "load") { __typename }');
    seeded = (await gql.data('{ snapshot { at position } }')).snapshot;
    // Time travel picks instants; later events must be at a later instant than the seed.
    await new Promise((resolve) => setTimeout(resolve, 50));

    browser = await launchBrowser();
    page = await browser.context.newPage();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    dir.remove();
  });

  it('the overview renders the live state: runs against the limit, the queue, limit bars, decisions', async () => {
    await open('/');
    await poll(() => page.getByTestId('stat-in-progress').textContent()).toContain('2');
    await poll(() => page.getByTestId('stat-in-progress').textContent()).toContain('of 2');
    await poll(() => page.getByTestId('stat-queued').textContent()).toMatch(/^1/);
    const limits = page.getByTestId('overview-limits');
    await poll(() => limits.textContent()).toContain('max concurrent runs2 / 2 in use · 1 pending');
    expect(await limits.textContent()).toContain('tag team=data (each value)1 / 1 in use · 1 pending');
    expect(await limits.textContent()).toContain('pool warehouse1 / 1 in use');
    const feed = page.getByTestId('decision-feed');
    await poll(() => feed.textContent()).toContain('ADMITTEDetl-1');
    expect(await feed.textContent()).toContain('BLOCKEDetl-2');
    expect(await feed.textContent()).toContain('SLOT GRANTEDetl-1');
    await page.getByTestId('queue-chart').locator('canvas').waitFor();
    await screenshot('overview');
  });

  it('a run enqueued through the API appears in the queue within a second, without a reload', async () => {
    await open('/queue');
    await page.locator('tr[data-run="etl-2"]').waitFor();
    let navigations = 0;
    page.on('framenavigated', () => navigations++);
    await enqueued(gql, {
      runId: 'etl-3',
      jobName: 'nightly_etl',
      tags: [{ key: 'team', value: 'data' }],
    });
    const row = page.locator('tr[data-run="etl-3"]');
    await row.waitFor({ timeout: 1_000 });
    expect(navigations).toBe(0);
    // A chip for every limit that holds it, as the API names them.
    const { run } = await gql.data('{ run(id: "etl-3") { blockedBy { message } } }');
    const chips = await row.locator('.chip').evaluateAll((els) => els.map((e) => e.getAttribute('title')));
    expect(chips).toEqual(run.blockedBy.map((c: Json) => c.message));
    expect(chips.length).toBe(2);
    await page.getByTestId('filter-tag').selectOption('team=data');
    expect(await page.locator('tbody tr').count()).toBe(2);
    await page.getByTestId('filter-tag').selectOption('');
    await screenshot('queue');
  });

  it('the run page shows the waits and their reasons as the log recorded them, then admission', async () => {
    await change('markRunFinished(runId: "ml-1", status: SUCCESS) { __typename }');
    const { run } = await gql.data('{ run(id: "etl-2") { status waits { from to reasons { message } } } }');
    expect(run.waits.length).toBeGreaterThanOrEqual(1);
    await open('/runs/etl-2');
    const waits = page.getByTestId('wait');
    await poll(() => waits.count()).toBe(run.waits.length);
    for (const [i, wait] of run.waits.entries()) {
      const text = await waits.nth(i).textContent();
      for (const reason of wait.reasons) expect(text).toContain(reason.message);
    }
    // etl-2 is still held by team=data; finishing etl-1 admits it, and the page follows.
    await change('markRunFinished(runId: "etl-1", status: SUCCESS) { __typename }');
    await page.getByTestId('timeline').getByText('admitted').waitFor({ timeout: 5_000 });
    await poll(() => page.locator('h1 .status').textContent()).toBe('STARTING');
    await screenshot('run');
  });

  it("an admin's limit edit shows the what-if, then admits exactly the runs it said it would", async () => {
    // Fill the queue: two more data runs and one for ops, all held by max concurrent runs.
    await change('setMaxConcurrentRuns(limit: 1) { __typename }');
    for (const [id, team] of [
      ['ops-1', 'ops'],
      ['ops-2', 'ops'],
      ['bi-1', 'bi'],
    ]) {
      await enqueued(gql, { runId: id, jobName: 'report', tags: [{ key: 'team', value: team }] });
    }
    await open('/limits');
    const maxRuns = page.locator('input[name="maxConcurrentRuns"]');
    await poll(() => maxRuns.inputValue()).toBe('1');
    await maxRuns.fill('4');
    // A live update while the admin edits (another run queued) leaves the edit as typed.
    const pendingNow = async () =>
      Number((await page.locator('.pending-text').first().textContent())?.match(/\d+/)?.[0]);
    const pendingBefore = await pendingNow();
    await enqueued(gql, { runId: 'bi-2', jobName: 'report', tags: [{ key: 'team', value: 'bi' }] });
    await poll(pendingNow).toBe(pendingBefore + 1);
    expect(await maxRuns.inputValue()).toBe('4');
    await page.getByTestId('simulate').click();
    const whatIf = page.getByTestId('whatif');
    await whatIf.waitFor();
    const { simulate } = await gql.data(
      '{ simulate(change: {maxConcurrentRuns: 4}) { wouldAdmit { id } stillQueued { id blockedBy { message } } } }',
    );
    const wouldAdmit: string[] = simulate.wouldAdmit.map((r: Json) => r.id);
    expect(wouldAdmit.length).toBeGreaterThan(0);
    expect(simulate.stillQueued.length).toBeGreaterThan(0);
    const text = (await whatIf.textContent()) ?? '';
    expect(text).toContain(`Would admit: ${wouldAdmit.join(', ')}`);
    for (const held of simulate.stillQueued) expect(text).toContain(held.id);
    await screenshot('limits');
    await page.getByTestId('apply').click();
    await page.getByText(`Admitted: ${wouldAdmit.join(', ')}.`).waitFor();
    const after = await gql.data('{ concurrencyConfig { maxConcurrentRuns } queue { id } }');
    expect(after.concurrencyConfig.maxConcurrentRuns).toBe(4);
    for (const id of wouldAdmit) {
      const { run } = await gql.data(`{ run(id: "${id}") { status } }`);
      expect(run.status).toBe('STARTING');
    }
    expect(after.queue.map((r: Json) => r.id)).toEqual(simulate.stillQueued.map((r: Json) => r.id));
  });

  it('a viewer sees the limits but cannot edit them', async () => {
    // Until tokens are wired, the role comes from what the server tells the page in `viewer`.
    await page.route(`${origin}/graphql`, async (route) => {
      if (!route.request().postData()?.includes('viewer')) return route.fallback();
      await route.fulfill({ json: { data: { viewer: { name: 'dashboard-viewer', role: 'VIEWER' } } } });
    });
    try {
      await open('/limits');
      await page.getByTestId('viewer').filter({ hasText: 'viewer' }).waitFor();
      await page.getByText('Your role (VIEWER) may read the limits but not edit them').waitFor();
      expect(await page.locator('input[name="maxConcurrentRuns"]').isDisabled()).toBe(true);
      expect(await page.getByTestId('simulate').isDisabled()).toBe(true);
      expect(await page.getByTestId('apply').isDisabled()).toBe(true);
      expect(await page.locator('.card input:not([disabled])').count()).toBe(0);
    } finally {
      await page.unroute(`${origin}/graphql`);
    }
  });

  it('time travel shows the state at an earlier instant, as snapshot(at:) does', async () => {
    await open('/time-travel');
    const input = page.getByTestId('travel-input');
    await input.waitFor();
    const local = await page.evaluate((iso) => {
      const ms = Date.parse(iso);
      return new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 23);
    }, seeded.at);
    await input.fill(local);
    const result = page.getByTestId('travel-result');
    await result.getByText(`As of position ${seeded.position}`).waitFor();
    const then = await page
      .getByTestId('travel-queue')
      .locator('li')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-run')));
    expect(then).toEqual(['etl-2']);
    const inProgress = (await page.getByTestId('travel-in-progress').textContent()) ?? '';
    expect(inProgress).toContain('etl-1');
    expect(inProgress).toContain('ml-1');
    expect(await result.textContent()).toContain('max concurrent runs2 / 2 in use');
    await screenshot('time-travel');
  });

  it('after a server restart the page reconnects and resumes after the last event it saw, missing nothing', async () => {
    await open('/');
    const feed = page.getByTestId('decision-feed');
    await feed.waitFor();
    const port = new URL(server.url).port;
    await server.close();
    await page.getByTestId('connection').filter({ hasText: 'reconnecting' }).waitFor({ timeout: 5_000 });
    server = await startServer({ ...settings, port: Number(port) }, () => {});
    gql = new Gql(server.url);
    // Appended before the page is back: it must come from the replay after the page's position.
    await change('setMaxConcurrentRuns(limit: 0) { __typename }');
    await enqueued(gql, { runId: 'after-restart', jobName: 'j' });
    await page.getByTestId('connection').filter({ hasText: 'live' }).waitFor({ timeout: 10_000 });
    await poll(() => feed.textContent()).toContain('BLOCKEDafter-restart');
    const { queue } = await gql.data('{ queue { id } }');
    await poll(() => page.getByTestId('stat-queued').textContent()).toMatch(new RegExp(`^${queue.length}`));
  });

  it('GraphiQL at /graphql runs from local assets, titled Sluice, with the documented query, and answers it', async () => {
    await page.goto(`${origin}/graphql`);
    expect(await page.title()).toBe('Sluice');
    const editor = page.locator('.graphiql-query-editor');
    await poll(() => editor.textContent(), 20_000).toContain('concurrencyConfig');
    await page.locator('.graphiql-execute-button').click();
    const response = page.locator('.graphiql-response');
    await poll(() => response.textContent()).toContain('"maxConcurrentRuns"');
    await screenshot('graphiql');
  });

  it('given a server that answers 401, the page asks for a token, keeps it for the tab and sends it on every request and subscription', async () => {
    // Until tokens are wired into the server, a route stands in for its answer to a missing token.
    const tab = await browser.context.newPage();
    const sent: Array<string | null> = [];
    const frames: string[] = [];
    tab.on('websocket', (socket) => socket.on('framesent', (frame) => frames.push(String(frame.payload))));
    await tab.route(`${origin}/graphql`, async (route) => {
      const authorization = (await route.request().headerValue('authorization')) ?? null;
      sent.push(authorization);
      if (authorization !== 'Bearer s3cret') {
        return route.fulfill({ status: 401, json: { errors: [{ message: 'a token is required' }] } });
      }
      return route.fallback();
    });
    try {
      await tab.goto(`${origin}/queue`);
      await tab.getByTestId('token-input').fill('s3cret');
      await tab.getByTestId('token-input').press('Enter');
      await tab.getByTestId('connection').filter({ hasText: 'live' }).waitFor({ timeout: 10_000 });
      await tab.getByTestId('queue-table').waitFor();
      expect(await tab.evaluate(() => sessionStorage.getItem('sluice.token'))).toBe('s3cret');
      const afterToken = sent.slice(sent.indexOf('Bearer s3cret'));
      expect(afterToken.length).toBeGreaterThan(1);
      expect(afterToken.every((a) => a === 'Bearer s3cret')).toBe(true);
      const init = frames.map((f) => JSON.parse(f)).find((m) => m.type === 'connection_init');
      expect(init?.payload).toEqual({ authorization: 'Bearer s3cret' });
    } finally {
      await tab.close();
    }
  });

  it('no page made a request to any origin but its own', async () => {
    expect(browser.requests.length).toBeGreaterThan(10);
    const ws = origin.replace(/^http/, 'ws');
    const foreign = browser.requests.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith(`${ws}/`));
    expect(foreign).toEqual([]);
  });
});
