/**
 * A log written before limit states were recorded (one RunBlocked per change of what held a
 * run) still loads, and its waits and decisions answer exactly as the Sluice that wrote it
 * answered them. The fixture was written by that Sluice, with its answers beside the events.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { NewEvent } from '../../src/eventstore/store.js';

interface Fixture {
  events: Array<NewEvent & { revision: string }>;
  runs: Array<{
    id: string;
    status: string;
    waits: unknown[];
    decisions: Array<{ position: string; kind: string; reasons: unknown[]; message: string }>;
  }>;
}

const fixture = JSON.parse(
  readFileSync(join(import.meta.dirname, '../fixtures/log-before-limit-states.json'), 'utf8'),
) as Fixture;

async function openOnFixture(): Promise<Sluice> {
  const store = openSqliteStore({ path: ':memory:' });
  const events = fixture.events.map(({ type, schemaVersion, data, actor, at }) => ({
    type,
    schemaVersion,
    data,
    actor,
    at,
  }));
  await store.append(DEPLOYMENT_STREAM, events, 'no_stream');
  return Sluice.open({ store });
}

describe('a log in the format before limit states', () => {
  it('given its events, when loaded, then every run has the status, waits and decisions the old server answered', async () => {
    const sluice = await openOnFixture();
    try {
      const history = await sluice.readHistory();
      expect(fixture.runs.some((r) => r.waits.length > 1)).toBe(true);
      for (const run of fixture.runs) {
        expect((await sluice.run(run.id))?.status, run.id).toBe(run.status);
        expect(history.waitsOf(run.id), `waits of ${run.id}`).toEqual(run.waits);
        const decisions = history.decisions({ runId: run.id, limit: 1_000 });
        expect(
          decisions.map((d) => ({ ...d, position: String(d.position) })),
          `decisions of ${run.id}`,
        ).toEqual(run.decisions);
      }
    } finally {
      await sluice.close();
      await sluice.store.close();
    }
  });

  it('given the old log, when new commands follow it, then they record limit states and the waits go on from the old records', async () => {
    const sluice = await openOnFixture();
    try {
      // e1 is held by maxConcurrentRuns (1); raising it lets e1 go and records the counter.
      const outcome = await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 10 }, 'test');
      expect(outcome.events.map((e) => e.type)).toEqual(['MaxConcurrentRunsSet', 'RunAdmitted', 'LimitStatesChanged']);
      const history = await sluice.readHistory();
      const waits = history.waitsOf('e1');
      expect(waits).toHaveLength(1);
      expect(waits[0]?.to).not.toBeNull();
    } finally {
      await sluice.close();
      await sluice.store.close();
    }
  });
});
