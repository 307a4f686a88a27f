import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenCreate } from '../../src/cli/token.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql, type Json, tempDir } from '../support/e2e-http.js';
import {
  axeViolations,
  type Browser,
  browserMissing,
  buildDashboard,
  launchBrowser,
  screenshotPath,
} from './browser.js';

const missing = browserMissing();
if (missing) console.warn(`browser tests skipped: ${missing}`);

const dir = tempDir('sluice-browser-actions-');
const webDir = join(dir.path, 'web');
let server: RunningServer;
let gql: Gql;
let origin: string;
let browser: Browser;
const tokens: Record<'admin' | 'worker' | 'viewer', string> = { admin: '', worker: '', viewer: '' };
const poll = <T>(read: () => T | Promise<T>, timeout = 10_000) => expect.poll(read, { timeout, interval: 50 });

async function as(role: keyof typeof tokens, query: string): Promise<Json> {
  const data = await gql.data(query, {}, { authorization: `Bearer ${tokens[role]}` });
  for (const value of Object.values(data) as Json[]) {
    if (value?.__typename?.endsWith('Error')) throw new Error(`${value.__typename}: ${value.message}`);
  }
  return data;
}

/** A tab holding a role's token, as the token prompt would leave it. */
async function tabOf(role: keyof typeof tokens): Promise<Page> {
  const page = await browser.context.newPage();
  await page.addInitScript((token) => sessionStorage.setItem('sluice.token', token), tokens[role]);
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  const path = screenshotPath(name);
  await page.screenshot({ path, fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync('docs/screenshots', { recursive: true });
    copyFileSync(path, join('docs/screenshots', `${name}.png`));
  }
}

const statusOf = async (id: string) => (await as('viewer', `{ run(id: "${id}") { status } }`)).run.status;

describe.skipIf(missing !== null)('acting from the dashboard, by role', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    buildDashboard(webDir);
    const file = join(dir.path, 'tokens');
    tokens.admin = (await tokenCreate('ops', 'admin', file)).token;
    tokens.worker = (await tokenCreate('dagster-daemon', 'worker', file)).token;
    tokens.viewer = (await tokenCreate('dashboard', 'viewer', file)).token;
    server = await startServer(
      {
        ...DEFAULT_SETTINGS,
        port: 0,
        eventStoreUrl: `sqlite:${join(dir.path, 'events.db')}`,
        dashboardDir: webDir,
        security: { ...(DEFAULT_SETTINGS.security as NonNullable<typeof DEFAULT_SETTINGS.security>), tokensFile: file },
      },
      () => {},
    );
    gql = new Gql(server.url);
    origin = new URL(server.url).origin;
    await as('admin', 'mutation { setMaxConcurrentRuns(limit: 1) { __typename } }');
    await as('admin', 'mutation { setPoolLimit(pool: "warehouse", limit: 1) { __typename } }');
    await as('admin', 'mutation { setPoolLimit(pool: "api", limit: 3) { __typename } }');
    await as(
      'worker',
      'mutation { enqueueRun(input: {runId: "etl-1", jobName: "nightly_etl", steps: [{key: "load", pool: "warehouse"}]}) { __typename } }',
    );
    await as('worker', 'mutation { enqueueRun(input: {runId: "etl-2", jobName: "nightly_etl"}) { __typename } }');
    await as('worker', 'mutation { markRunStarted(runId: "etl-1") { __typename } }');
    await as('worker', 'mutation { claimStepSlot(runId: "etl-1", stepKey: "load") { __typename } }');
    browser = await launchBrowser();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    dir.remove();
  });

  it('a viewer sees the run but no action button', async () => {
    const page = await tabOf('viewer');
    await page.goto(`${origin}/runs/etl-1`);
    await page.getByTestId('viewer').filter({ hasText: 'viewer' }).waitFor();
    await page.getByRole('heading', { name: /etl-1/ }).waitFor();
    expect(await page.getByTestId('run-actions').count()).toBe(0);
    expect(await page.getByRole('button', { name: /Terminate|Free/ }).count()).toBe(0);
    expect(await axeViolations(page)).toEqual([]);
    await page.close();
  });

  it("a worker's action the server refuses shows the server's reason, and changes nothing", async () => {
    const page = await tabOf('worker');
    await page.goto(`${origin}/runs/etl-1`);
    await page.getByRole('button', { name: "Free step load's slot" }).click();
    await poll(() => page.getByRole('alert').textContent()).toMatch(/admin/i);
    const claims = (await as('viewer', '{ run(id: "etl-1") { stepClaims { released } } }')).run.stepClaims;
    expect(claims).toEqual([{ released: false }]);
    await page.close();
  });

  it("an admin frees a step's slot, terminates a queued run, and force-terminates a started one after confirming", async () => {
    const page = await tabOf('admin');
    await page.goto(`${origin}/runs/etl-1`);
    await page.getByRole('button', { name: "Free step load's slot" }).click();
    await poll(() => page.getByRole('status').textContent()).toContain('free load: done');
    const claims = (await as('viewer', '{ run(id: "etl-1") { stepClaims { released } } }')).run.stepClaims;
    expect(claims).toEqual([{ released: true }]);
    expect(await axeViolations(page)).toEqual([]);

    await page.getByRole('button', { name: 'Force terminate…' }).click();
    await screenshot(page, 'run-actions');
    expect(await statusOf('etl-1')).toBe('STARTED');
    await page.getByRole('button', { name: 'Yes, force it' }).click();
    await poll(() => statusOf('etl-1')).toBe('CANCELED');

    await page.goto(`${origin}/runs/etl-2`);
    await poll(() => statusOf('etl-2')).toBe('STARTING');
    await page.getByRole('button', { name: 'Terminate', exact: true }).click();
    await poll(() => statusOf('etl-2')).toBe('CANCELING');
    await page.close();
  });

  it('the audit page lists every limit edit with who made it, and filters by pool', async () => {
    const page = await tabOf('viewer');
    await page.goto(`${origin}/audit`);
    const table = page.getByTestId('limit-changes');
    await poll(() => table.locator('tbody tr').count()).toBe(3);
    expect(await table.textContent()).toContain('ops');
    await page.getByLabel('Pool').fill('warehouse');
    await page.getByRole('button', { name: 'Filter' }).click();
    await poll(() => table.locator('tbody tr').count()).toBe(1);
    expect(await table.textContent()).toContain('warehouse');
    expect(await axeViolations(page)).toEqual([]);
    await screenshot(page, 'audit');
    await page.close();
  });

  it('an admin terminates and force-terminates with the keyboard alone', async () => {
    await as('worker', 'mutation { enqueueRun(input: {runId: "kb-1", jobName: "train"}) { __typename } }');
    const page = await tabOf('admin');
    await page.goto(`${origin}/runs/kb-1`);
    await page.getByRole('button', { name: 'Force terminate…' }).waitFor();
    const focusedText = () => page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
    for (let i = 0; i < 40 && (await focusedText()) !== 'Force terminate…'; i++) await page.keyboard.press('Tab');
    expect(await focusedText()).toBe('Force terminate…');
    await page.keyboard.press('Enter');
    // The focus moves to the safe answer; one step back is the forced one.
    await poll(focusedText).toBe('No');
    expect(await statusOf('kb-1')).toBe('QUEUED');
    await page.keyboard.press('Shift+Tab');
    expect(await focusedText()).toBe('Yes, force it');
    await page.keyboard.press('Enter');
    await poll(() => statusOf('kb-1')).toBe('CANCELED');
    await page.close();
  });
});
