/**
 * Label cardinality: tag values of a per-value limit and pools are capped, the busiest kept and
 * the rest summed into one __other__ series, so a scrape stays small however many values exist.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sluice } from '../../src/app/sluice.js';
import type { EnqueueRunInput } from '../../src/domain/commands.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceMetrics, type SluiceMetrics } from '../../src/metrics/sluice-metrics.js';
import { parseMetrics, seriesOf } from '../support/metrics-text.js';

let store: EventStore;
let sluice: Sluice;
let metrics: SluiceMetrics;

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  metrics = createSluiceMetrics({ caps: { tagValuesPerLimit: 2, pools: 2 }, processMetrics: false });
  sluice = await Sluice.open({ store, onCommand: metrics.recordCommand });
  metrics.follow(sluice);
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const enqueue = (input: Partial<EnqueueRunInput> & { runId: string }) =>
  sluice.execute({ type: 'EnqueueRun', input: { jobName: 'etl', ...input } }, 'test');
const scrape = async () => parseMetrics(await metrics.registry.metrics());

describe('metric label caps', () => {
  it('given more tag values in use than the cap, then the busiest values are kept and the rest summed as __other__', async () => {
    await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: -1 }, 'test');
    await sluice.execute(
      { type: 'SetTagConcurrencyLimits', limits: [{ key: 'team', applyLimitPerUniqueValue: true, limit: 5 }] },
      'test',
    );
    const runs: Array<[string, number]> = [
      ['a', 3],
      ['b', 1],
      ['c', 2],
      ['d', 1],
    ];
    for (const [team, count] of runs) {
      for (let i = 0; i < count; i++) await enqueue({ runId: `${team}${i}`, tags: [{ key: 'team', value: team }] });
    }
    const m = await scrape();
    expect(seriesOf(m, 'sluice_run_limit_in_use')).toEqual({
      'key=,kind=max_concurrent_runs,value=': 7,
      'key=team,kind=tag_per_value,value=a': 3,
      'key=team,kind=tag_per_value,value=c': 2,
      'key=team,kind=tag_per_value,value=__other__': 2,
    });
    expect(seriesOf(m, 'sluice_run_limit')).toEqual({
      'key=,kind=max_concurrent_runs,value=': -1,
      'key=team,kind=tag_per_value,value=a': 5,
      'key=team,kind=tag_per_value,value=c': 5,
      'key=team,kind=tag_per_value,value=__other__': 5,
    });
  });

  it('given more pools than the cap, then the busiest pools are kept and the rest summed as __other__, with no limit', async () => {
    await sluice.execute({ type: 'SetDefaultPoolLimit', limit: 1 }, 'test');
    await sluice.execute({ type: 'SetPoolLimit', pool: 'db', limit: 4 }, 'test');
    await enqueue({
      runId: 'r1',
      steps: [
        { key: 's1', pool: 'db' },
        { key: 's2', pool: 'db' },
        { key: 's3', pool: 'api' },
        { key: 's4', pool: 'api' },
        { key: 's5', pool: 'p1' },
      ],
    });
    await sluice.execute({ type: 'MarkRunStarted', runId: 'r1' }, 'test');
    for (const stepKey of ['s1', 's2', 's3', 's4', 's5']) {
      await sluice.execute({ type: 'ClaimStepSlot', runId: 'r1', stepKey }, 'test');
    }
    // A pool named only by its limit, with nothing in use: the first to go past the cap.
    await sluice.execute({ type: 'SetPoolLimit', pool: 'idle', limit: 9 }, 'test');
    const m = await scrape();
    // db: 2 in use; api: 1 in use + 1 pending; p1: 1 in use; idle: nothing.
    expect(seriesOf(m, 'sluice_pool_slots_in_use')).toEqual({ 'pool=db': 2, 'pool=api': 1, 'pool=__other__': 1 });
    expect(seriesOf(m, 'sluice_pool_slots_pending')).toEqual({ 'pool=db': 0, 'pool=api': 1, 'pool=__other__': 0 });
    expect(seriesOf(m, 'sluice_pool_limit')).toEqual({ 'pool=db': 4, 'pool=api': 1 });
  });
});

describe('sluice_pool_slots_promised', () => {
  it('counts the root steps of admitted runs not yet claiming, per pool, and drops them as they claim', async () => {
    await sluice.execute({ type: 'SetPoolLimit', pool: 'db', limit: 3 }, 'test');
    await enqueue({
      runId: 'r1',
      steps: [
        { key: 'load', pool: 'db' },
        { key: 'copy', pool: 'db' },
        { key: 'report', pool: 'db', dependsOn: ['load'] },
      ],
    });
    // Two root steps promised; report depends on load, so it is not a root step.
    expect(seriesOf(await scrape(), 'sluice_pool_slots_promised')).toEqual({ 'pool=db': 2 });
    await sluice.execute({ type: 'MarkRunStarted', runId: 'r1' }, 'test');
    await sluice.execute({ type: 'ClaimStepSlot', runId: 'r1', stepKey: 'load' }, 'test');
    const m = await scrape();
    expect(seriesOf(m, 'sluice_pool_slots_promised')).toEqual({ 'pool=db': 1 });
    expect(seriesOf(m, 'sluice_pool_slots_in_use')).toEqual({ 'pool=db': 1 });
  });
});
