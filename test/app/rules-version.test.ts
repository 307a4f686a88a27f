/**
 * Rules and defaults are versioned in the log. A log written before the root-step hold (whose
 * default is on) is opened by a server that has it: the server records RulesVersionRecorded,
 * naming the hold and the position it applies from. Snapshots of moments before that position
 * stay as the old server answered them (no run held for its root steps, nothing promised),
 * decisions after it follow the hold, and a restart records nothing more. The record is kept
 * beside the log, in a stream of its own: no position of the log moves.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { poolViews } from '../../projections/pools.js';
import type { RunRecord } from '../../projections/state.js';
import { recordRulesVersion, rulesStream } from '../../src/app/rules-version.js';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { currentHolds } from '../../src/domain/admission.js';
import { LOG_FORMAT } from '../../src/domain/events.js';
import { CURRENT_RULES, ROOT_STEP_HOLD_RULES, RULES_VERSIONS } from '../../src/domain/rules.js';
import { type CheckpointStore, openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import type { CorpusAnswers, CorpusEvent, Recorded } from '../support/log-corpus.js';

const dir = join(import.meta.dirname, '../fixtures/logs');
const read = (format: string, name: string) => JSON.parse(readFileSync(join(dir, format, name), 'utf8'));

async function storeWith(events: CorpusEvent[]): Promise<EventStore> {
  const store = openSqliteStore({ path: ':memory:' });
  const list = events.map(({ type, schemaVersion, data, actor, at }) => ({ type, schemaVersion, data, actor, at }));
  if (list.length > 0) await store.append(DEPLOYMENT_STREAM, list, 'no_stream');
  return store;
}

/** What a snapshot at a revision says of each queued run and each pool, from the state at that revision. */
async function snapshotAt(sluice: Sluice, revision: bigint) {
  const state = await sluice.stateAt(revision);
  return {
    queue: [...state.queue.inOrder()].map((id) => {
      const run = state.runs.get(id) as RunRecord;
      return { id, blockedBy: currentHolds(state, run) };
    }),
    pools: poolViews(state).map(({ name, inUse, pending, promised }) => ({ name, inUse, pending, promised })),
  };
}

describe('the rules a log is written under', () => {
  it('given a log from before the root-step hold, when a server with the hold opens it, then it records the change and past snapshots answer as the old server did', async () => {
    const events: CorpusEvent[] = read('pre-root-step-hold', 'events.json');
    const answers: CorpusAnswers = read('pre-root-step-hold', 'answers.json');
    const store = await storeWith(events);
    const checkpoints: CheckpointStore = openCheckpointStore(':memory:');
    const sluice = await Sluice.open({ store, checkpoints, checkpointEvery: 10 });
    try {
      const last = BigInt(events.length - 1);
      expect(await recordRulesVersion(sluice)).toBe(true);
      // Beside the log, whose positions it leaves as they were; the log's format is raised first
      // (one event at its end), so that a server with the old rules stops there.
      expect(await store.streamRevision(DEPLOYMENT_STREAM)).toBe(last + 1n);
      const [raised] = await store.readStream(DEPLOYMENT_STREAM, { fromRevision: last + 1n });
      expect(raised).toMatchObject({ type: 'LogFormatRaised', actor: 'sluice', data: { format: LOG_FORMAT } });
      expect(RULES_VERSIONS.at(-1)?.logFormat).toBe(LOG_FORMAT);
      const [recorded] = await store.readStream(rulesStream(DEPLOYMENT_STREAM));
      expect(recorded).toMatchObject({
        type: 'RulesVersionRecorded',
        actor: 'sluice:rules',
        data: { rules: CURRENT_RULES, previous: 1, from: String(last + 2n) },
      });
      expect(((recorded as { data: Recorded }).data.changes as Recorded[]).map((c) => c.name)).toEqual([
        'ROOT_STEP_HOLD',
      ]);

      // Every recorded snapshot of the old server, position by position, is what the state gives now.
      let compared = 0;
      for (const answer of answers.answers) {
        if (answer.kind !== 'query' || !answer.name.startsWith('snapshot position ')) continue;
        const then = answer.data.snapshot;
        const now = await snapshotAt(sluice, BigInt(then.position));
        expect(now.queue, `queue at ${then.position}`).toEqual(
          then.queue.map((r: Recorded) => ({
            id: r.id,
            blockedBy: r.blockedBy.map((c: Recorded) => expect.objectContaining(c)),
          })),
        );
        expect(now.pools.every((p) => p.promised === 0)).toBe(true);
        compared++;
      }
      expect(compared).toBe(events.length);

      // After the record, the hold decides: db's slots are all taken (in use or waited for), so a
      // run whose only root step is in db waits for it.
      const outcome = await sluice.execute(
        { type: 'EnqueueRun', input: { runId: 'after', jobName: 'j', steps: [{ key: 's', pool: 'db' }] } },
        'test',
      );
      const blocked = outcome.events.find((e) => e.type === 'RunBlocked');
      expect(blocked?.data).toMatchObject({
        reasons: expect.arrayContaining([expect.objectContaining({ kind: 'ROOT_STEP_POOLS', pool: 'db' })]),
      });
      expect(await snapshotAt(sluice, last)).toEqual(await snapshotAt(sluice, last));
      expect(
        (await snapshotAt(sluice, last)).queue.flatMap((r) => r.blockedBy).some((c) => c.kind === 'ROOT_STEP_POOLS'),
      ).toBe(false);
    } finally {
      await sluice.close();
    }

    // A restart (from a checkpoint taken after the record) records nothing more and answers the same.
    const again = await Sluice.open({ store, checkpoints });
    try {
      expect(await recordRulesVersion(again)).toBe(false);
      expect(again.rulesRecord?.rulesAt(0n)).toBe(1);
      expect(again.rulesRecord?.rulesAt(BigInt(events.length))).toBe(1);
      expect(again.rulesRecord?.rulesAt(BigInt(events.length + 1))).toBe(CURRENT_RULES);
      const before = await snapshotAt(again, BigInt(events.length - 1));
      expect(before.queue.flatMap((r) => r.blockedBy).some((c) => c.kind === 'ROOT_STEP_POOLS')).toBe(false);
    } finally {
      await again.close();
      await store.close();
      checkpoints.close();
    }
  });

  it('given a log written with the root-step hold but recording no rules, when opened, then it is recorded as written under the hold, with nothing changed', async () => {
    const store = await storeWith(read('v0.1-root-step-hold', 'events.json'));
    const sluice = await Sluice.open({ store });
    try {
      expect(await recordRulesVersion(sluice)).toBe(true);
      expect(sluice.rulesRecord?.rulesAt(0n)).toBe(ROOT_STEP_HOLD_RULES);
      const events = await store.readStream(rulesStream(DEPLOYMENT_STREAM));
      expect(events.at(-1)?.data).toMatchObject({ rules: CURRENT_RULES, previous: ROOT_STEP_HOLD_RULES, changes: [] });
      // The same rules: servers of that release may go on beside this one, so the format stays.
      expect((await store.readStream(DEPLOYMENT_STREAM)).some((e) => e.type === 'LogFormatRaised')).toBe(false);
    } finally {
      await sluice.close();
      await store.close();
    }
  });

  it('given an empty log, when a server opens it, then the record beside the log says the rules it is written under from its first position', async () => {
    const store = await storeWith([]);
    const sluice = await Sluice.open({ store });
    try {
      expect(await recordRulesVersion(sluice)).toBe(true);
      expect(await store.streamRevision(DEPLOYMENT_STREAM)).toBe(-1n);
      const [first] = await store.readStream(rulesStream(DEPLOYMENT_STREAM));
      expect(first).toMatchObject({
        type: 'RulesVersionRecorded',
        revision: 0n,
        data: { rules: CURRENT_RULES, previous: null, from: '0', changes: [] },
      });
      expect(await recordRulesVersion(sluice)).toBe(false);
    } finally {
      await sluice.close();
      await store.close();
    }
  });
});
