import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { enqueued, Gql, mutated, tempDir } from '../support/e2e-http.js';
import { axeViolations, type Browser, browserMissing, buildDashboard, launchBrowser } from './browser.js';

const missing = browserMissing();
if (missing) console.warn(`browser tests skipped: ${missing}`);

const dir = tempDir('sluice-browser-a11y-');
const webDir = join(dir.path, 'web');
let server: RunningServer;
let gql: Gql;
let origin: string;
let browser: Browser;
let page: Page;

const change = (query: string) => mutated(gql, `mutation { ${query} }`);
const poll = <T>(read: () => T | Promise<T>, timeout = 10_000) => expect.poll(read, { timeout, interval: 50 });

const PAGES = [
  { path: '/', name: 'Overview' },
  { path: '/queue', name: 'Queue' },
  { path: '/runs/a', name: 'a run' },
  { path: '/limits', name: 'Limits' },
  { path: '/time-travel', name: 'Time travel' },
  { path: '/insights', name: 'Insights' },
  { path: '/audit', name: 'Audit' },
];

/** Elements whose right edge passes the screen's (a page that scrolls sideways). */
async function overflowing(): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('body *')]
      .filter((e) => {
        const box = e.getBoundingClientRect();
        return box.width > 0 && box.right > window.innerWidth + 1;
      })
      .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)
      .slice(0, 10),
  );
}

/** Opens a page and waits until its first section has a heading (its data came). */
async function open(path: string): Promise<void> {
  await page.goto(`${origin}${path}`);
  await page.locator('main h2').first().waitFor();
  await poll(() => page.locator('main').textContent()).not.toMatch(/Loading/);
}

describe.skipIf(missing !== null)('every dashboard page, for accessibility, in Chromium', { timeout: 90_000 }, () => {
  beforeAll(async () => {
    buildDashboard(webDir);
    server = await startServer(
      { ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: `sqlite:${join(dir.path, 'events.db')}`, dashboardDir: webDir },
      () => {},
    );
    gql = new Gql(server.url);
    origin = new URL(server.url).origin;
    // Something on every page: a pool and a limit edit (Limits, Audit), a running run and a
    // queued one held by max concurrent runs (Overview, Queue, the run, Insights).
    await change('setPoolLimit(pool: "warehouse", limit: 2) { __typename }');
    await change('setMaxConcurrentRuns(limit: 1) { __typename }');
    await enqueued(gql, { runId: 'a', jobName: 'nightly_etl', steps: [{ key: 'load', pool: 'warehouse' }] });
    await enqueued(gql, { runId: 'b', jobName: 'train' });
    browser = await launchBrowser();
    page = await browser.context.newPage();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    dir.remove();
  });

  for (const { path, name } of PAGES) {
    it(`${name} (${path}) has no serious or critical axe-core violation, and keeps to a 380 px screen`, async () => {
      await page.setViewportSize({ width: 1280, height: 860 });
      await open(path);
      expect(await axeViolations(page)).toEqual([]);
      await page.setViewportSize({ width: 380, height: 800 });
      await open(path);
      expect(await overflowing()).toEqual([]);
      expect(await axeViolations(page)).toEqual([]);
    });
  }

  it('the navigation and the run search work with the keyboard alone', async () => {
    await page.setViewportSize({ width: 1280, height: 860 });
    await open('/');
    // Tab from the top of the page to the Queue link, then Enter.
    await page.keyboard.press('Tab');
    for (let i = 0; i < 10; i++) {
      if ((await page.evaluate(() => document.activeElement?.textContent)) === 'Queue') break;
      await page.keyboard.press('Tab');
    }
    await page.keyboard.press('Enter');
    await poll(() => new URL(page.url()).pathname).toBe('/queue');
    expect(await page.locator('header nav a[aria-current="page"]').textContent()).toBe('Queue');
    // Onwards to the run search: type a run id, Enter.
    for (let i = 0; i < 10; i++) {
      if ((await page.evaluate(() => document.activeElement?.getAttribute('aria-label'))) === 'go to run') break;
      await page.keyboard.press('Tab');
    }
    await page.keyboard.type('a');
    await page.keyboard.press('Enter');
    await poll(() => new URL(page.url()).pathname).toBe('/runs/a');
    await page.locator('main h2').first().waitFor();
    // Focus is visible where it lands: the focused control has an outline.
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const e = document.activeElement as HTMLElement | null;
      return { tag: e?.tagName ?? '', outline: e ? getComputedStyle(e).outlineStyle : 'none' };
    });
    expect(focused.tag).not.toBe('BODY');
    expect(focused.outline).not.toBe('none');
  });
});
