/**
 * Time travel: the state of any past revision, rebuilt from checkpoints and the log, is what
 * the live state showed at that revision. A real Sluice (SQLite in memory, a fake clock that
 * moves at every reading, checkpoints every 7 events so they are used) runs a random history;
 * after each command every view a reader has is captured, keyed by revision; at the end each
 * revision is asked for again with stateAt and compared.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { initialState, type State } from '../../projections/state.js';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import type { Command } from '../../src/domain/commands.js';
import { DomainError } from '../../src/domain/errors.js';
import { type CheckpointStore, openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import {
  checkpointModel,
  commandOf,
  FakeClock,
  type Op,
  opArbitrary,
  settle,
  setupCommands,
  type Views,
  views,
} from '../support/audit.js';

const CHECKPOINT_EVERY = 7;

/** A history fast-check found: r1 (priority 1) is admitted before r0, both on pool etl. */
const KNOWN_HISTORY: [Command[], Op[]] = [
  [
    { type: 'SetMaxConcurrentRuns', limit: 1 },
    { type: 'SetTagConcurrencyLimits', limits: [] },
    { type: 'SetPoolGranularity', granularity: 'OP' },
    { type: 'SetDefaultPoolLimit', limit: null },
    { type: 'SetPoolLimit', pool: 'db', limit: 1 },
  ],
  [
    { kind: 'change', change: { maxConcurrentRuns: 0 } },
    { kind: 'enqueue', team: null, env: null, priority: null, steps: [{ pool: 'etl', priority: 0 }], maxSteps: null },
    { kind: 'enqueue', team: null, env: null, priority: 1, steps: [{ pool: 'etl', priority: 0 }], maxSteps: null },
    { kind: 'change', change: { maxConcurrentRuns: 0, poolGranularity: 'RUN' } },
    { kind: 'change', change: { maxConcurrentRuns: -1, tagConcurrencyLimits: [], defaultPoolLimit: 2 } },
    { kind: 'start', pick: 0 },
    { kind: 'claim', pick: 0, step: 0 },
    { kind: 'release', pick: 0, step: 0 },
    { kind: 'finish', pick: 0, status: 'SUCCESS' },
    { kind: 'tick', seconds: 1 },
  ],
];

interface Deployment {
  store: EventStore;
  checkpoints: CheckpointStore;
  clock: FakeClock;
  sluice: Sluice;
  warnings: string[];
  close(): Promise<void>;
}

async function deployment(checkpointEvery = CHECKPOINT_EVERY): Promise<Deployment> {
  const store = openSqliteStore({ path: ':memory:' });
  const checkpoints = openCheckpointStore(':memory:');
  const clock = new FakeClock();
  const warnings: string[] = [];
  const sluice = await Sluice.open({
    store,
    checkpoints,
    checkpointEvery,
    // Every checkpoint kept, so the tests can compare them with the model of when they fall due.
    checkpointsKept: 1_000,
    clock: clock.read,
    warn: (message) => warnings.push(message),
  });
  return {
    store,
    checkpoints,
    clock,
    sluice,
    warnings,
    close: async () => {
      await sluice.close();
      await store.close();
      checkpoints.close();
    },
  };
}

/**
 * Runs a command, then lets the checkpoint it made due be written, as between two requests; a
 * refusal (bad transition, unknown step...) is part of a random history.
 */
async function attempt(sluice: Sluice, command: Command): Promise<void> {
  try {
    await sluice.execute(command, 'test');
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
  }
  await settle();
}

interface Captured {
  views: Views;
  serialized: string;
}

const capture = (state: State): Captured => ({ views: views(state), serialized: serializeState(state) });

describe('stateAt', () => {
  it('given a random history on a checkpointed Sluice, when every revision is asked for again, then each state shows what the live state showed then, and equals a replay without checkpoints', async () => {
    await fc.assert(
      fc.asyncProperty(
        setupCommands,
        fc.array(opArbitrary(), { minLength: 5, maxLength: 45 }),
        async (setup, ops: Op[]) => {
          const d = await deployment();
          let plain: Sluice | null = null;
          try {
            const live = new Map<bigint, Captured>([[-1n, capture(d.sluice.state)]]);
            const commandEnds: bigint[] = [];
            let nextRun = 0;
            const record = () => {
              commandEnds.push(d.sluice.state.revision);
              const now = capture(d.sluice.state);
              const earlier = live.get(d.sluice.state.revision);
              // A command that appends nothing leaves the state as it was.
              if (earlier) expect(now.views).toEqual(earlier.views);
              else live.set(d.sluice.state.revision, now);
            };
            for (const command of setup) {
              await attempt(d.sluice, command);
              record();
            }
            for (const op of ops) {
              if (op.kind === 'tick') d.clock.advance(op.seconds);
              const command = commandOf(op, d.sluice.state, () => `r${nextRun++}`);
              if (command) await attempt(d.sluice, command);
              record();
            }
            const last = d.sluice.state.revision;

            // Checkpoints were written after the commands that made them due, 7 events apart at
            // least (a quarter of the log once that is more), so time travel starts from them.
            const written = d.checkpoints.atOrBefore(last, 1_000).map((c) => c.revision);
            expect(written.reverse()).toEqual(checkpointModel(commandEnds, CHECKPOINT_EVERY));

            for (const [revision, captured] of live) {
              const past = await d.sluice.stateAt(revision);
              expect(past.revision, `revision ${revision}`).toBe(revision);
              expect(views(past), `views at revision ${revision}`).toEqual(captured.views);
              expect(serializeState(past), `state at revision ${revision}`).toBe(captured.serialized);
            }

            // Every revision, mid-command ones included: checkpoints or a full replay, the same state.
            plain = await Sluice.open({ store: d.store, clock: d.clock.read });
            for (let revision = -1n; revision <= last; revision++) {
              const fromCheckpoint = await d.sluice.stateAt(revision);
              const replayed = await plain.stateAt(revision);
              expect(serializeState(fromCheckpoint), `revision ${revision}`).toBe(serializeState(replayed));
              expect(views(fromCheckpoint), `views at revision ${revision}`).toEqual(views(replayed));
            }
            expect(d.warnings).toEqual([]);
          } finally {
            await plain?.close();
            await d.close();
          }
        },
      ),
      // First, a history that once failed (runs admitted out of enqueue order, RUN granularity).
      { numRuns: 25, examples: [KNOWN_HISTORY] },
    );
  });

  it('given runs admitted out of enqueue order at RUN granularity, when a revision that has a checkpoint is asked for, then the pool lists its active runs in the order the live state did', async () => {
    const d = await deployment(3);
    try {
      // Revisions: 0 granularity, 1-2 maxRuns 0 and its record, 3-5 a enqueued and held (with the
      // record of its root-step counter), 6-8 b the same, 9-12 maxRuns 5 admitting b (priority 5)
      // then a, and the record. Checkpoints are written after 2, 5, 8 and 12.
      await attempt(d.sluice, { type: 'SetPoolGranularity', granularity: 'RUN' });
      await attempt(d.sluice, { type: 'SetMaxConcurrentRuns', limit: 0 });
      await attempt(d.sluice, {
        type: 'EnqueueRun',
        input: { runId: 'a', jobName: 'j', steps: [{ key: 's', pool: 'db' }] },
      });
      await attempt(d.sluice, {
        type: 'EnqueueRun',
        input: { runId: 'b', jobName: 'j', steps: [{ key: 's', pool: 'db' }], priority: 5 },
      });
      await attempt(d.sluice, { type: 'SetMaxConcurrentRuns', limit: 5 });
      expect(d.sluice.state.revision).toBe(12n);
      const live = views(d.sluice.state);
      const liveSerialized = serializeState(d.sluice.state);
      expect(live.pools).toEqual([
        { name: 'db', limit: null, explicitLimit: null, inUse: 2, pending: 0, activeRunIds: ['b', 'a'], promised: 0 },
      ]);
      await attempt(d.sluice, { type: 'EnqueueRun', input: { runId: 'c', jobName: 'j' } });
      expect(d.checkpoints.atOrBefore(12n, 10).map((c) => c.revision)).toEqual([12n, 8n, 5n, 2n]);

      const past = await d.sluice.stateAt(12n);
      // The serialized state agrees (it does not record the order of runs in progress)...
      expect(serializeState(past)).toBe(liveSerialized);
      // ...but the pool view, which lists them, must too.
      expect(views(past).pools).toEqual(live.pools);
    } finally {
      await d.close();
    }
  });

  it('given revision -1, when it is asked for, then it is the empty state of a new deployment', async () => {
    const d = await deployment();
    try {
      await d.sluice.execute({ type: 'EnqueueRun', input: { runId: 'a', jobName: 'j' } }, 'test');
      expect(serializeState(await d.sluice.stateAt(-1n))).toBe(serializeState(initialState()));
      // At or beyond the last revision: the live state itself.
      expect(await d.sluice.stateAt(d.sluice.state.revision)).toBe(d.sluice.state);
      expect(await d.sluice.stateAt(d.sluice.state.revision + 10n)).toBe(d.sluice.state);
    } finally {
      await d.close();
    }
  });
});

describe('revisionAt', () => {
  it('given a random history, when instants before, at, between and after the events are asked for, then each finds the last event at or before it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArbitrary(), { minLength: 1, maxLength: 30 }), async (ops) => {
        const d = await deployment();
        try {
          let nextRun = 0;
          for (const op of ops) {
            if (op.kind === 'tick') d.clock.advance(op.seconds);
            const command = commandOf(op, d.sluice.state, () => `r${nextRun++}`);
            if (command) await attempt(d.sluice, command);
          }
          const events = await d.store.readStream(DEPLOYMENT_STREAM);
          const times = events.map((e) => Date.parse(e.at));
          const expected = (instant: number): bigint => {
            let found = -1n;
            for (const [i, t] of times.entries()) if (t <= instant) found = BigInt(i);
            return found;
          };
          const instants = new Set<number>([0, Date.parse('2100-01-01T00:00:00Z')]);
          for (const t of times) for (const delta of [-1, 0, 1, 500]) instants.add(t + delta);
          for (const instant of instants) {
            expect(await d.sluice.revisionAt(new Date(instant)), new Date(instant).toISOString()).toBe(
              expected(instant),
            );
          }
        } finally {
          await d.close();
        }
      }),
      { numRuns: 20 },
    );
  });

  it('given commands one second apart, several events each, when an instant is asked for, then it is the last event of the last command at or before it', async () => {
    const d = await deployment();
    try {
      expect(await d.sluice.revisionAt(new Date())).toBe(-1n);
      const start = Date.parse('2024-06-01T00:00:00.000Z');
      await d.sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 1 }, 'test'); // 0 at +0s
      // a is admitted and fills maxConcurrentRuns (a LimitStatesChanged records it): 1-3 at +1s
      await d.sluice.execute({ type: 'EnqueueRun', input: { runId: 'a', jobName: 'j' } }, 'test');
      await d.sluice.execute({ type: 'EnqueueRun', input: { runId: 'b', jobName: 'j' } }, 'test'); // 4-5 at +2s
      d.clock.advance(60);
      await d.sluice.execute({ type: 'MarkRunFinished', runId: 'a', status: 'SUCCESS' }, 'test'); // 6-7 at +63s
      const at = (seconds: number) => d.sluice.revisionAt(new Date(start + seconds * 1000));
      expect(await at(-0.001)).toBe(-1n);
      expect(await at(0)).toBe(0n);
      expect(await at(0.999)).toBe(0n);
      expect(await at(1)).toBe(3n);
      expect(await at(2)).toBe(5n);
      expect(await at(62.999)).toBe(5n);
      expect(await at(63)).toBe(7n);
      expect(await at(10_000)).toBe(7n);
    } finally {
      await d.close();
    }
  });
});
