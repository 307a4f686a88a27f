import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { enqueued, Gql, mutated, tempDir } from '../support/e2e-http.js';
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

const dir = tempDir('sluice-browser-insights-');
const webDir = join(dir.path, 'web');
let server: RunningServer;
let gql: Gql;
let origin: string;
let browser: Browser;
let page: Page;

const change = (query: string) => mutated(gql, `mutation { ${query} }`);
const poll = <T>(read: () => T | Promise<T>, timeout = 10_000) => expect.poll(read, { timeout, interval: 50 });

async function screenshot(name: string): Promise<void> {
  const path = screenshotPath(name);
  // From the top: a full-page shot of a scrolled page draws the sticky header where it scrolled to.
  // With no field focused: a selected date part is not part of the page.
  await page.evaluate(() => {
    (document.activeElement as HTMLElement | null)?.blur();
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path, fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync('docs/screenshots', { recursive: true });
    copyFileSync(path, join('docs/screenshots', `${name}.png`));
  }
}

/** A server of its own over a fresh store in `name`, serving the dashboard built once. */
async function serve(name: string): Promise<void> {
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: `sqlite:${join(dir.path, `${name}.db`)}`, dashboardDir: webDir },
    () => {},
  );
  gql = new Gql(server.url);
  origin = new URL(server.url).origin;
}

describe.skipIf(missing !== null)('the Insights page in Chromium', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    buildDashboard(webDir);
    browser = await launchBrowser();
    page = await browser.context.newPage();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    dir.remove();
  });

  describe('over a short history', () => {
    beforeAll(async () => {
      await serve('events');
      // One run at a time: a runs, b and c wait about a second, then a finishes and b goes.
      await change('setMaxConcurrentRuns(limit: 1) { __typename }');
      await enqueued(gql, { runId: 'a', jobName: 'nightly_etl' });
      await enqueued(gql, { runId: 'b', jobName: 'nightly_etl' });
      await enqueued(gql, { runId: 'c', jobName: 'train' });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await change('markRunFinished(runId: "a", status: SUCCESS) { __typename }');
    }, 120_000);

    afterAll(async () => {
      await server?.close();
    });

    it('shows the waiting of the last day and the share of each limit, as waitReport answers', async () => {
      await page.goto(`${origin}/insights`);
      const shares = page.getByTestId('shares');
      await poll(() => shares.textContent()).toContain('max concurrent runs');
      await poll(() => page.getByTestId('wait-total').textContent()).toMatch(/2 runs waited/);
      // The limit's row links to the runs it held (b and c, about a second each).
      const held = shares.getByRole('link', { name: /held by max concurrent runs/ });
      expect((await held.allTextContents()).sort()).toEqual(['b', 'c']);
      // Every run it held, longest wait first, when its row is opened.
      const every = shares.getByTestId('waiting-runs').first();
      await every.locator('summary').click();
      await poll(() =>
        every
          .getByRole('list')
          .getByRole('link')
          .allTextContents()
          .then((t) => t.sort()),
      ).toEqual(['b', 'c']);
      expect(await every.textContent()).toMatch(/2 of 2 shown/);
      expect(await axeViolations(page)).toEqual([]);
      await page.getByTestId('waiting-chart').locator('canvas').waitFor();
      await page.getByLabel('Last hour').check();
      await poll(() => page.getByTestId('wait-total').textContent()).toMatch(/2 runs waited/);
    });

    it("shows each job's runs, waiting, p50 and p95, and links to the runs that waited longest", async () => {
      await page.goto(`${origin}/insights`);
      const jobs = page.getByTestId('jobs');
      await poll(() => jobs.textContent()).toContain('nightly_etl');
      const rows = await jobs.locator('tbody tr').allTextContents();
      // b (nightly_etl) and c (train) each waited about a second; a never waited.
      expect(rows).toHaveLength(2);
      expect(rows.join('|')).toMatch(/nightly_etl1/);
      expect(rows.join('|')).toMatch(/train1/);
      const data = await gql.data(
        '{ waitReport(from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z") { byJob { jobName runs p95Seconds } } }',
      );
      const byJob = data.waitReport.byJob as Array<{ jobName: string; runs: number }>;
      expect(byJob.map((j) => [j.jobName, j.runs]).sort()).toEqual([
        ['nightly_etl', 1],
        ['train', 1],
      ]);
      // Every run of the job, opened by keyboard alone: each links to its run's page.
      const all = jobs.locator('tr', { hasText: 'nightly_etl' }).getByTestId('waiting-runs');
      await all.locator('summary').focus();
      await page.keyboard.press('Enter');
      await poll(() => all.getByRole('link').allTextContents()).toEqual(['b']);
      expect(await all.textContent()).toMatch(/1 of 1 shown/);
      await jobs.getByRole('link', { name: 'run b of nightly_etl' }).click();
      await poll(() => page.url()).toMatch(/\/runs\/b$/);
    });

    it('replays the window with max concurrent runs raised: before and after side by side, by keyboard alone', async () => {
      await page.goto(`${origin}/insights`);
      await page.getByTestId('shares').waitFor();
      const value = page.getByLabel('New value');
      await value.focus();
      await page.keyboard.type('5');
      await page.keyboard.press('Enter');
      const answer = page.getByTestId('what-if-answer');
      await poll(() => answer.textContent()).toContain('With the change');
      expect(await page.getByTestId('before').textContent()).toContain('max concurrent runs');
      // With room for five, nobody waits, apart from the moment b and c arrived in the record.
      expect(await answer.textContent()).toMatch(/With the change0 s waited by 0 runs/);
    });

    it('shows the server reason when the what-if is refused', async () => {
      await page.goto(`${origin}/insights`);
      await page.getByTestId('shares').waitFor();
      await page.getByLabel('New value').fill('-2');
      await page.getByRole('button', { name: 'Replay the window' }).click();
      await poll(() => page.getByRole('alert').textContent()).toMatch(/max concurrent runs|-1/i);
    });

    it('has no serious or critical accessibility violation, and reads on a narrow screen', async () => {
      await page.goto(`${origin}/insights`);
      await page.getByTestId('shares').waitFor();
      expect(await axeViolations(page)).toEqual([]);
      await page.setViewportSize({ width: 380, height: 800 });
      // The chart follows the new width on its next resize callback: poll.
      const wide = () =>
        page.evaluate(() =>
          [...document.querySelectorAll('main *')]
            .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
            .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)
            .slice(0, 10),
        );
      await poll(wide).toEqual([]);
      await page.setViewportSize({ width: 1280, height: 860 });
    });
  });

  describe('with more runs waiting than one page', () => {
    /** More than two pages of 20: the panel shows 20, 40, then all. */
    const WAITING = 45;
    const ids = Array.from({ length: WAITING }, (_, i) => `w${String(i).padStart(2, '0')}`);

    beforeAll(async () => {
      await serve('paging');
      // One run at a time and it never ends: every run enqueued after it is still waiting, the
      // one enqueued first longest.
      await change('setMaxConcurrentRuns(limit: 1) { __typename }');
      await enqueued(gql, { runId: 'running', jobName: 'backfill' });
      for (const runId of ids) await enqueued(gql, { runId, jobName: 'backfill' });
    }, 120_000);

    afterAll(async () => {
      await server?.close();
    });

    it('shows the next runs on More runs, by mouse and by keyboard, without repeats, until all are shown', async () => {
      await page.goto(`${origin}/insights`);
      const shares = page.getByTestId('shares');
      await poll(() => page.getByTestId('wait-total').textContent()).toMatch(new RegExp(`${WAITING} runs waited`));
      const every = shares.getByTestId('waiting-runs').first();
      await poll(() => every.locator('summary').textContent()).toContain(`All ${WAITING} runs`);
      const links = () => every.getByRole('list').getByRole('link').allTextContents();
      const more = every.getByRole('button', { name: 'More runs' });

      // Opened: the first page only, longest wait first.
      await every.locator('summary').click();
      await poll(links).toEqual(ids.slice(0, 20));
      expect(await every.textContent()).toContain(`20 of ${WAITING} shown`);

      // The next page by mouse, appended after the first.
      await more.click();
      await poll(links).toEqual(ids.slice(0, 40));
      expect(await every.textContent()).toContain(`40 of ${WAITING} shown`);

      // The last by keyboard: the button keeps the focus while its page loads.
      await more.focus();
      await page.keyboard.press('Enter');
      await poll(links).toEqual(ids);
      expect(await every.textContent()).toContain(`${WAITING} of ${WAITING} shown`);
      expect(new Set(await links()).size).toBe(WAITING);
      await poll(() => more.count()).toBe(0);
    });

    it('pages by keyboard alone: Enter on the summary, then Enter and Space on More runs in a row', async () => {
      await page.goto(`${origin}/insights`);
      const every = page.getByTestId('shares').getByTestId('waiting-runs').first();
      await poll(() => every.locator('summary').textContent()).toContain(`All ${WAITING} runs`);
      const links = () => every.getByRole('list').getByRole('link').allTextContents();
      const more = every.getByRole('button', { name: 'More runs' });
      await every.locator('summary').focus();
      await page.keyboard.press('Enter');
      await poll(links).toEqual(ids.slice(0, 20));
      await more.focus();
      await page.keyboard.press('Enter');
      await poll(links).toEqual(ids.slice(0, 40));
      // Pressed again where the focus is: no reaching for the button anew.
      await page.keyboard.press(' ');
      await poll(links).toEqual(ids);
      await poll(() => more.count()).toBe(0);
      expect(await axeViolations(page)).toEqual([]);
    });
  });

  describe('over a busier few seconds (the screenshots)', () => {
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const run = (runId: string, jobName: string, team: string) =>
      enqueued(gql, { runId, jobName, tags: [{ key: 'team', value: team }] });
    const finished = (runId: string) => change(`markRunFinished(runId: "${runId}", status: SUCCESS) { __typename }`);
    let startedMs = 0;

    beforeAll(async () => {
      await serve('busier');
      startedMs = Date.now();
      // Three runs at a time, one per team: runs wait for a place, for their team, or both.
      await change('setMaxConcurrentRuns(limit: 3) { __typename }');
      await change(
        'setTagConcurrencyLimits(limits: [{key: "team", applyLimitPerUniqueValue: true, limit: 1}]) { __typename }',
      );
      for (const [id, job, team] of [
        ['etl-1', 'nightly_etl', 'data'],
        ['train-1', 'train', 'ml'],
        ['etl-2', 'nightly_etl', 'data'],
        ['report-1', 'report', 'bi'],
        ['train-2', 'train', 'ml'],
        ['report-2', 'report', 'bi'],
      ] as const) {
        await run(id, job, team);
      }
      await sleep(1_500);
      await finished('etl-1');
      await run('backup-1', 'backup', 'ops');
      await run('etl-3', 'nightly_etl', 'data');
      await sleep(1_500);
      await finished('train-1');
      await finished('report-1');
      await sleep(1_000);
      await finished('etl-2');
      await run('backup-2', 'backup', 'ops');
      await sleep(1_500);
      await finished('train-2');
      await finished('report-2');
      await sleep(1_000);
    }, 120_000);

    afterAll(async () => {
      await server?.close();
    });

    /** A custom window around the scenario, to the second, in the browser's time zone. */
    async function pickScenarioWindow(): Promise<void> {
      const local = (ms: number) =>
        page.evaluate((at) => new Date(at - new Date(at).getTimezoneOffset() * 60_000).toISOString().slice(0, 19), ms);
      const from = await local(startedMs - 2_000);
      const to = await local(Date.now());
      await page.getByLabel('Custom').check();
      await page.getByLabel('From', { exact: true }).fill(from);
      await page.getByLabel('To', { exact: true }).fill(to);
    }

    it('shows each limit with what it held alone, each job, and the waiting over time', async () => {
      await page.goto(`${origin}/insights`);
      await pickScenarioWindow();
      const shares = page.getByTestId('shares');
      await poll(() => shares.textContent()).toContain('tag team=data');
      expect(await shares.textContent()).toContain('max concurrent runs');
      await poll(() => page.getByTestId('jobs').locator('tbody tr').count()).toBe(4);
      await page.getByTestId('waiting-chart').locator('canvas').waitFor();
      await screenshot('insights');
    });

    it('replays the window with room for more runs: the team limits still hold some', async () => {
      await page.goto(`${origin}/insights`);
      await pickScenarioWindow();
      await page.getByTestId('shares').waitFor();
      await page.getByLabel('New value').fill('10');
      await page.getByRole('button', { name: 'Replay the window' }).click();
      const answer = page.getByTestId('what-if-answer');
      await poll(() => answer.textContent()).toContain('With the change');
      const after = page.getByTestId('after');
      await poll(() => after.textContent()).toContain('tag team=data');
      expect(await after.textContent()).not.toContain('max concurrent runs');
      await page.getByTestId('waiting-chart').locator('canvas').waitFor();
      await screenshot('insights-what-if');
    });
  });
});
