/**
 * The wall clock stepping back (NTP, or a server whose clock is behind the others'): event
 * times in the log never go backwards, the step is recorded once, and an answer about an
 * instant before the step sees nothing that arrived after it. The clock here is the Sluice's
 * injected one; test/e2e/clock-steps.test.ts moves a real server process's clock. A step
 * forward is seen against the monotonic clock, so that test fakes the wall clock (Date) only.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

const T0 = Date.parse('2026-11-27T12:00:00.000Z');
let clock = T0;
let store: EventStore;
let sluice: Sluice;

beforeEach(async () => {
  clock = T0;
  store = openSqliteStore({ path: ':memory:' });
  sluice = await Sluice.open({ store, clock: () => new Date(clock) });
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const enqueue = (runId: string) =>
  sluice.execute({ type: 'EnqueueRun', input: { runId, jobName: 'job' } } as never, 'test');

describe('a clock that steps back', () => {
  it('given runs enqueued, when the clock steps back an hour, then later events carry the log time, the step is recorded once, and times never go backwards', async () => {
    await enqueue('before');
    clock = T0 + 10_000;
    await enqueue('just-before');
    clock = T0 + 10_000 - 3_600_000;
    await enqueue('after-1');
    clock += 5_000;
    await enqueue('after-2');
    const events = await store.readStream(DEPLOYMENT_STREAM);
    const times = events.map((e) => Date.parse(e.at));
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1] as number);
    const steps = events.filter((e) => e.type === 'ClockSteppedBack');
    expect(steps).toHaveLength(1);
    expect(steps[0]?.data).toEqual({
      clockAt: new Date(T0 + 10_000 - 3_600_000).toISOString(),
      loggedAt: new Date(T0 + 10_000).toISOString(),
      byMs: 3_600_000,
    });
    // An instant before the step knows nothing of what came after it.
    const before = await sluice.stateAt(await sluice.revisionAt(new Date(T0 + 5_000)));
    expect([...before.runs.keys()]).toEqual(['before']);
  });

  it('given the clock caught up with the log after a step back, when it steps back again, then the new step is recorded too', async () => {
    clock = T0 + 60_000;
    await enqueue('a');
    clock = T0;
    await enqueue('b');
    clock = T0 + 120_000;
    await enqueue('c');
    clock = T0 + 30_000;
    await enqueue('d');
    const events = await store.readStream(DEPLOYMENT_STREAM);
    expect(events.filter((e) => e.type === 'ClockSteppedBack').map((e) => (e.data as { byMs: number }).byMs)).toEqual([
      60_000, 90_000,
    ]);
  });

  it('given a clock behind the log by less than a second (skew between servers), then times are clamped but no step is recorded', async () => {
    clock = T0 + 500;
    await enqueue('a');
    clock = T0;
    await enqueue('b');
    const events = await store.readStream(DEPLOYMENT_STREAM);
    expect(events.some((e) => e.type === 'ClockSteppedBack')).toBe(false);
    expect(events.at(-1)?.at).toBe(new Date(T0 + 500).toISOString());
  });
});

describe('a clock that steps forward', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('given a run enqueued, when the clock steps forward an hour before the next enqueue, then the step and the enqueue are each folded once and the live state is the log replayed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(T0);
    const own = openSqliteStore({ path: ':memory:' });
    // No injected clock: the wall clock (faked) is held against the monotonic one.
    const live = await Sluice.open({ store: own });
    try {
      await live.execute({ type: 'EnqueueRun', input: { runId: 'before', jobName: 'job' } } as never, 'test');
      vi.setSystemTime(T0 + 3_600_000);
      await live.execute({ type: 'EnqueueRun', input: { runId: 'after', jobName: 'job' } } as never, 'test');
      const events = await own.readStream(DEPLOYMENT_STREAM);
      expect(events.map((e) => e.type)).toContain('ClockSteppedForward');
      expect(live.state.revision).toBe(events.at(-1)?.revision);
      expect(live.state.runCount).toBe(2);
      const replayed = await Sluice.open({ store: own });
      try {
        expect(serializeState(live.state)).toBe(serializeState(replayed.state));
        expect(live.state.counts).toEqual(replayed.state.counts);
      } finally {
        await replayed.close();
      }
    } finally {
      await live.close();
      await own.close();
    }
  });
});
