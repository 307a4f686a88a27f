/**
 * Events handed over by the appending process are delivered without a read only when they are
 * exactly the next ones; any gap, however it arises, falls back to reading the log, so what a
 * subscriber sees is always the log in order, once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReadingSubscription } from '../../src/eventstore/reading-subscription.js';
import type { RecordedEvent } from '../../src/eventstore/store.js';

function recorded(revision: number, writer: string): RecordedEvent {
  return {
    stream: 's',
    revision: BigInt(revision),
    position: BigInt(revision),
    type: 'E',
    schemaVersion: 1,
    data: { writer },
    actor: 'test',
    at: '2026-01-01T00:00:00.000Z',
  } as RecordedEvent;
}

const PAGE = 4;

/** A log written by this process (handing its events over) and by others (only woken). */
function setUp() {
  const log: RecordedEvent[] = [];
  let reads = 0;
  const delivered: RecordedEvent[] = [];
  const subscription = new ReadingSubscription(
    's',
    -1n,
    -1n,
    (from) => {
      reads += 1;
      return log.slice(Number(from), Number(from) + PAGE);
    },
    PAGE,
    async (event) => {
      delivered.push(event);
      await Promise.resolve();
    },
    undefined,
    () => {},
  );
  return {
    delivered,
    reads: () => reads,
    subscription,
    appendHere(count: number) {
      const events = Array.from({ length: count }, (_, i) => recorded(log.length + i, 'here'));
      log.push(...events);
      subscription.handOver(events);
    },
    appendElsewhere(count: number) {
      for (let i = 0; i < count; i++) log.push(recorded(log.length, 'elsewhere'));
      subscription.wake();
    },
    log,
  };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('a reading subscription given events handed over by their writer', () => {
  it('delivers this process’s own appends without reading them back', async () => {
    const { appendHere, delivered, reads, subscription } = setUp();
    await subscription.caughtUp;
    appendHere(3);
    await settle();
    appendHere(2);
    await settle();

    expect(delivered.map((e) => e.revision)).toEqual([0n, 1n, 2n, 3n, 4n]);
    expect(reads()).toBe(0);
    await subscription.close();
  });

  it('reads the log when another writer’s events come between, and never skips or repeats', async () => {
    const { appendHere, appendElsewhere, delivered, log, subscription } = setUp();
    appendHere(2);
    // Another process commits; its wake is late (a poll), and this process appends after it.
    log.push(recorded(log.length, 'elsewhere'));
    appendHere(2);
    await settle();
    appendElsewhere(1);
    await settle();

    expect(delivered).toEqual(log);
    await subscription.close();
  });

  it('given any interleaving of writers, handed-over batches and late wakes, delivers the log in order, once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            here: fc.boolean(),
            count: fc.integer({ min: 1, max: 6 }),
            wakeLate: fc.boolean(),
            settleAfter: fc.boolean(),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        async (steps) => {
          const { appendHere, delivered, log, subscription } = setUp();
          let lateWakes = 0;
          for (const step of steps) {
            if (step.here) appendHere(step.count);
            else if (step.wakeLate) {
              for (let i = 0; i < step.count; i++) log.push(recorded(log.length, 'elsewhere'));
              lateWakes += 1;
            } else {
              for (let i = 0; i < step.count; i++) log.push(recorded(log.length, 'elsewhere'));
              subscription.wake();
            }
            if (step.settleAfter) await settle();
          }
          // The poll that eventually notices the other writers' commits.
          if (lateWakes > 0) subscription.wake();
          await settle();
          expect(delivered).toEqual(log);
          await subscription.close();
        },
      ),
      { numRuns: 200 },
    );
  });
});
