/**
 * Checkpoints of the projections: written as the log grows (checkpointEvery events apart at
 * least, a quarter of the log once that is more), used at start-up and for time travel, never
 * the source of truth. A checkpoint whose event no longer matches the log, or of another
 * format, is ignored and deleted; a checkpoint store that fails stops nothing.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { STATE_FORMAT, serializeState } from '../../projections/serialize.js';
import { DEPLOYMENT_STREAM, eventHash, Sluice } from '../../src/app/sluice.js';
import type { Command } from '../../src/domain/commands.js';
import { DomainError } from '../../src/domain/errors.js';
import { type CheckpointStore, openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { type HistoryStore, openHistoryStore } from '../../src/history/history-store.js';
import {
  checkpointModel,
  commandOf,
  FakeClock,
  type Op,
  opArbitrary,
  revisionsBetween,
  settle,
  views,
} from '../support/audit.js';
import { tempDir, waitFor } from '../support/e2e-http.js';
import { fingerprint } from '../support/scenario.js';

let dir: ReturnType<typeof tempDir>;
/** Everything opened by a test, closed after it (closing twice is harmless). */
let opened: Array<() => Promise<void> | void>;

beforeEach(() => {
  dir = tempDir('sluice-checkpoints-');
  opened = [];
});

afterEach(async () => {
  for (const close of opened.reverse()) {
    try {
      await close();
    } catch {
      // already closed
    }
  }
  dir.remove();
});

function store(name = 'events.db'): EventStore {
  const s = openSqliteStore({ path: join(dir.path, name) });
  opened.push(() => s.close());
  return s;
}

function checkpointStore(name = 'checkpoints.db'): CheckpointStore {
  const c = openCheckpointStore(join(dir.path, name));
  opened.push(() => c.close());
  return c;
}

interface Opened {
  sluice: Sluice;
  warnings: string[];
}

async function open(
  eventStore: EventStore,
  checkpoints: CheckpointStore | undefined,
  options: { every?: number; clock?: FakeClock; kept?: number; history?: HistoryStore } = {},
): Promise<Opened> {
  const warnings: string[] = [];
  const sluice = await Sluice.open({
    store: eventStore,
    checkpoints,
    history: options.history,
    checkpointEvery: options.every ?? 5,
    // Most tests here look at every checkpoint written; pruning has a test of its own.
    checkpointsKept: options.kept ?? 1_000,
    clock: (options.clock ?? new FakeClock()).read,
    warn: (message) => warnings.push(message),
  });
  opened.push(() => sluice.close());
  return { sluice, warnings };
}

/** The state a Sluice without checkpoints rebuilds from the whole log. */
async function fullReplay(eventStore: EventStore): Promise<{ serialized: string; fingerprint: string }> {
  const sluice = await Sluice.open({ store: eventStore });
  try {
    return { serialized: serializeState(sluice.state), fingerprint: fingerprint(sluice.state) };
  } finally {
    await sluice.close();
  }
}

/** A fixed random history: about a hundred events of every kind. */
const HISTORY: Op[] = fc.sample(fc.array(opArbitrary({ time: false }), { minLength: 60, maxLength: 60 }), {
  seed: 20_240_601,
  numRuns: 1,
})[0] as Op[];

const SETUP: Command[] = [
  { type: 'SetMaxConcurrentRuns', limit: 2 },
  { type: 'SetTagConcurrencyLimits', limits: [{ key: 'team', limit: 1 }] },
  { type: 'SetPoolLimit', pool: 'db', limit: 1 },
];

/**
 * Runs the setup and a history, letting each command's checkpoint be written before the next
 * command, as between two requests. Returns the revision after each command.
 */
async function play(sluice: Sluice, ops: readonly Op[] = HISTORY, setup = SETUP): Promise<bigint[]> {
  let nextRun = 0;
  const ends: bigint[] = [];
  const run = async (command: Command) => {
    try {
      await sluice.execute(command, 'test');
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
    }
    await settle();
    ends.push(sluice.state.revision);
  };
  for (const command of setup) await run(command);
  for (const op of ops) {
    const command = commandOf(op, sluice.state, () => `r${nextRun++}`);
    if (command) await run(command);
  }
  return ends;
}

/** Checkpoint revisions, oldest first. */
const revisions = (checkpoints: CheckpointStore) =>
  checkpoints
    .atOrBefore(2n ** 62n, 10_000)
    .map((c) => c.revision)
    .reverse();

/** Every checkpoint holds the hash of its event, this format, and the state a replay gives there. */
async function expectCheckpointsMatch(checkpoints: CheckpointStore, events: EventStore): Promise<void> {
  const log = await events.readStream(DEPLOYMENT_STREAM);
  const plain = await Sluice.open({ store: events });
  try {
    for (const checkpoint of checkpoints.atOrBefore(2n ** 62n, 10_000)) {
      const event = log[Number(checkpoint.revision)];
      expect(event?.revision).toBe(checkpoint.revision);
      expect(checkpoint.eventHash, `checkpoint ${checkpoint.revision}`).toBe(eventHash(event!));
      expect(checkpoint.format).toBe(STATE_FORMAT);
      expect(checkpoints.load(checkpoint.revision), `checkpoint ${checkpoint.revision}`).toBe(
        serializeState(await plain.stateAt(checkpoint.revision)),
      );
    }
  } finally {
    await plain.close();
  }
}

/** A log on disk with checkpoints, the server that wrote them closed. */
async function written(every = 5): Promise<{ events: EventStore; checkpoints: CheckpointStore; last: bigint }> {
  const events = store();
  const checkpoints = checkpointStore();
  const first = await open(events, checkpoints, { every });
  await play(first.sluice);
  const last = first.sluice.state.revision;
  await first.sluice.close();
  return { events, checkpoints, last };
}

// ---------------------------------------------------------------------------------------------

describe('writing checkpoints', () => {
  it('given checkpointEvery 5, when commands append events, then a checkpoint is written after the command that makes one due: 5 events apart, a quarter of the log once that is more', async () => {
    const events = store();
    const checkpoints = checkpointStore();
    const { sluice, warnings } = await open(events, checkpoints, { every: 5 });
    const ends = await play(sluice);
    const last = sluice.state.revision;
    expect(last).toBeGreaterThan(50n);

    const expected = checkpointModel(ends, 5);
    expect(revisions(checkpoints)).toEqual(expected);
    // Both rules show up in this history.
    const gaps = expected.slice(1).map((r, i) => r - (expected[i] as bigint));
    expect(gaps.every((gap, i) => gap >= 5n && gap >= ((expected[i] as bigint) + 1n) / 4n)).toBe(true);
    expect(gaps.some((gap) => gap > 6n)).toBe(true);
    await expectCheckpointsMatch(checkpoints, events);
    expect(warnings).toEqual([]);
  });

  it('given a command that makes a checkpoint due, when it answers, then the checkpoint is not written yet, and it is once the command has answered', async () => {
    const events = store();
    const checkpoints = checkpointStore();
    const { sluice } = await open(events, checkpoints, { every: 2 });
    await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 1 }, 'test');
    await sluice.execute({ type: 'EnqueueRun', input: { runId: 'a', jobName: 'j' } }, 'test');
    expect(revisions(checkpoints)).toEqual([]);
    await settle();
    // RunEnqueued, RunAdmitted and the record that maxConcurrentRuns is now full: 1 to 3.
    expect(revisions(checkpoints)).toEqual([3n]);
  });

  it('given a log replayed at start-up, when no checkpoint exists, then checkpoints are taken during the replay as they fall due, and written once it has answered', async () => {
    const { events, checkpoints, last } = await written();
    for (const revision of revisions(checkpoints)) checkpoints.delete(revision);
    const restarted = await open(events, checkpoints, { every: 5 });
    // Off the path to answering: nothing is written before the open has returned.
    expect(revisions(checkpoints)).toEqual([]);
    await settle();
    expect(restarted.warnings).toEqual([]);
    expect(revisions(checkpoints)).toEqual(checkpointModel(revisionsBetween(0n, last), 5));
    await expectCheckpointsMatch(checkpoints, events);
  });

  it('given a log replayed at start-up, when the server closes before the checkpoints it took are written, then they are written at close, and match the log', async () => {
    const { events, checkpoints, last } = await written();
    for (const revision of revisions(checkpoints)) checkpoints.delete(revision);
    const restarted = await open(events, checkpoints, { every: 5, kept: 3 });
    await restarted.sluice.close();
    expect(restarted.warnings).toEqual([]);
    expect(revisions(checkpoints)).toEqual(checkpointModel(revisionsBetween(0n, last), 5).slice(-3));
    await expectCheckpointsMatch(checkpoints, events);
  });

  it('given a log replayed at start-up, when a command comes right after the open, then the checkpoints the replay took and the ones after the command are all written and match the log', async () => {
    const { events, checkpoints } = await written();
    for (const revision of revisions(checkpoints)) checkpoints.delete(revision);
    const restarted = await open(events, checkpoints, { every: 5, kept: 1_000 });
    const replayed = restarted.sluice.state.revision;
    for (let i = 0; i < 12; i++)
      await restarted.sluice.execute({ type: 'EnqueueRun', input: { runId: `after-${i}`, jobName: 'job' } }, 'test');
    await settle();
    expect(restarted.warnings).toEqual([]);
    const written_ = revisions(checkpoints);
    expect(written_.some((r) => r <= replayed)).toBe(true);
    expect(written_.some((r) => r > replayed)).toBe(true);
    await expectCheckpointsMatch(checkpoints, events);
  });

  it('given a log replayed at start-up that keeps 2 checkpoints, when many fall due on the way, then only the 2 it keeps are written, at the positions they fall due', async () => {
    const { events, checkpoints, last } = await written();
    for (const revision of revisions(checkpoints)) checkpoints.delete(revision);
    const saved: bigint[] = [];
    const counting = new Proxy(checkpoints, {
      get(target, property) {
        if (property === 'save') {
          return (c: Parameters<CheckpointStore['save']>[0]) => {
            saved.push(c.revision);
            target.save(c);
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const due = checkpointModel(revisionsBetween(0n, last), 5);
    expect(due.length).toBeGreaterThan(4);
    const restarted = await open(events, counting, { every: 5, kept: 2 });
    await settle();
    expect(restarted.warnings).toEqual([]);
    expect(saved).toEqual(due.slice(-2));
    expect(revisions(checkpoints)).toEqual(due.slice(-2));
    await expectCheckpointsMatch(checkpoints, events);
  });

  it('given two servers on one store, when one appends, then the other, following the log, writes checkpoints of its own that match the log', async () => {
    const events = store();
    const writerCheckpoints = checkpointStore('writer.db');
    const followerCheckpoints = checkpointStore('follower.db');
    const writer = await open(events, writerCheckpoints, { every: 4 });
    const follower = await open(events, followerCheckpoints, { every: 4 });
    await play(writer.sluice, HISTORY.slice(0, 25));
    const last = writer.sluice.state.revision;
    await waitFor(() => follower.sluice.state.revision === last, 'the follower to catch up');
    await settle();
    expect(revisions(followerCheckpoints).length).toBeGreaterThan(2);
    await expectCheckpointsMatch(followerCheckpoints, events);
    expect(follower.warnings).toEqual([]);
  });
});

describe('restart from a checkpoint', () => {
  it('given a log and its checkpoints on disk, when the server restarts, then it reads the log only after the latest checkpoint and ends with the state of a full replay', async () => {
    let events = store();
    let checkpoints = checkpointStore();
    // The history read model is on disk too, so the restart has no history to rebuild.
    const historyPath = join(dir.path, 'history.db');
    const first = await open(events, checkpoints, { every: 5, history: openHistoryStore(historyPath) });
    await play(first.sluice);
    // End after the latest checkpoint, so the restart has events to read after it.
    for (let i = 0; checkpoints.atOrBefore(2n ** 62n, 1)[0]?.revision === first.sluice.state.revision; i++) {
      await first.sluice.execute({ type: 'EnqueueRun', input: { runId: `tail-${i}`, jobName: 'j' } }, 'test');
    }
    const before = serializeState(first.sluice.state);
    const last = first.sluice.state.revision;
    await first.sluice.close();
    await events.close();
    checkpoints.close();

    events = store();
    checkpoints = checkpointStore();
    const latest = checkpoints.atOrBefore(last, 1)[0]!.revision;
    expect(latest).toBeLessThan(last);
    const reads = vi.spyOn(events, 'readStream');
    const restarted = await open(events, checkpoints, { every: 5, history: openHistoryStore(historyPath) });
    // The checkpoint's own event is read to check its hash; the log is then read from after it.
    // The log's first event alone is read to check the history file is of this log.
    const bindRead = ([, options]: (typeof reads.mock.calls)[number]) =>
      options?.fromRevision === 0n && options.maxCount === 1;
    expect(reads.mock.calls.filter(bindRead)).toHaveLength(1);
    const froms = reads.mock.calls.filter((call) => !bindRead(call)).map(([, options]) => options?.fromRevision ?? 0n);
    reads.mockRestore();
    expect(froms).not.toContain(0n);
    expect(froms).toContain(latest + 1n);
    expect(Math.min(...froms.map(Number))).toBe(Number(latest));

    expect(serializeState(restarted.sluice.state)).toBe(before);
    const replayed = await fullReplay(events);
    expect(serializeState(restarted.sluice.state)).toBe(replayed.serialized);
    expect(fingerprint(restarted.sluice.state)).toBe(replayed.fingerprint);
    expect(restarted.warnings).toEqual([]);

    // And it goes on: new commands on the restarted server, same as on a full replay.
    await restarted.sluice.execute({ type: 'EnqueueRun', input: { runId: 'after-restart', jobName: 'j' } }, 'test');
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(events)).serialized);
  });

  it('given a checkpoint whose event still matches, when the server restarts, then the state comes from the checkpoint, not from a replay (what the hash check protects)', async () => {
    const { events, checkpoints } = await written();
    const [latest] = checkpoints.atOrBefore(2n ** 62n, 1);
    const state = checkpoints.load(latest!.revision)!;
    const marked = state.replaceAll('"jobName":"job"', '"jobName":"from-the-checkpoint"');
    expect(marked).not.toBe(state);
    checkpoints.save({ ...latest!, state: marked });
    const restarted = await open(events, checkpoints);
    expect([...restarted.sluice.state.runs.values()].some((r) => r.jobName === 'from-the-checkpoint')).toBe(true);
  });

  it('given runs admitted out of enqueue order at RUN granularity, when the server restarts from a checkpoint, then pools list their active runs as before the restart', async () => {
    let events = store();
    let checkpoints = checkpointStore();
    const first = await open(events, checkpoints, { every: 3 });
    const run = (runId: string, priority = 0): Command => ({
      type: 'EnqueueRun',
      input: { runId, jobName: 'j', priority, steps: [{ key: 's', pool: 'db' }] },
    });
    await play(
      first.sluice,
      [],
      [
        { type: 'SetPoolGranularity', granularity: 'RUN' },
        { type: 'SetMaxConcurrentRuns', limit: 0 },
        run('a'),
        run('b', 5),
        { type: 'SetMaxConcurrentRuns', limit: 5 }, // admits b, then a
      ],
    );
    expect(first.sluice.state.revision).toBe(12n);
    const before = views(first.sluice.state);
    expect(before.pools[0]?.activeRunIds).toEqual(['b', 'a']);
    await first.sluice.close();
    await events.close();
    checkpoints.close();

    events = store();
    checkpoints = checkpointStore();
    // The checkpoint is taken after the command that admitted b, then a.
    expect(checkpoints.atOrBefore(12n, 1)[0]?.revision).toBe(12n);
    const restarted = await open(events, checkpoints, { every: 3 });
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(events)).serialized);
    expect(views(restarted.sluice.state)).toEqual(before);
  });
});

describe('checkpoints that do not match the log', () => {
  it("given the latest checkpoint's event hash tampered with, when the server starts, then it warns, deletes it, starts from the one before, and ends with the state of a full replay", async () => {
    const { events, checkpoints, last } = await written();
    const [latest, previous] = checkpoints.atOrBefore(last, 2);
    checkpoints.save({ ...latest!, state: checkpoints.load(latest!.revision)!, eventHash: 'f'.repeat(64) });
    const reads = vi.spyOn(events, 'readStream');
    const restarted = await open(events, checkpoints);
    const froms = reads.mock.calls.map(([, options]) => options?.fromRevision ?? 0n);
    reads.mockRestore();
    expect(froms).toContain(previous!.revision + 1n);
    expect(froms).not.toContain(latest!.revision + 1n);
    expect(restarted.warnings).toEqual([`checkpoint at position ${latest!.revision} does not match the log: ignored`]);
    expect(checkpoints.atOrBefore(last, 10_000).some((c) => c.eventHash === 'f'.repeat(64))).toBe(false);
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(events)).serialized);
    await expectCheckpointsMatch(checkpoints, events);
  });

  it('given checkpoints made from another log, when the server starts on a store with a different log, then each is ignored and deleted, and the state is a full replay of this log', async () => {
    const { checkpoints, last } = await written();
    const stale = checkpoints.atOrBefore(last, 10_000);
    expect(stale.length).toBeGreaterThan(3);
    // Another deployment: the same commands at other times, so every event differs in its time.
    const other = store('other.db');
    const writer = await open(other, undefined, { clock: new FakeClock('2030-01-01T00:00:00.000Z') });
    await play(writer.sluice);
    await writer.sluice.execute({ type: 'EnqueueRun', input: { runId: 'only-here', jobName: 'j' } }, 'test');
    await writer.sluice.close();

    const restarted = await open(other, checkpoints, { every: 5 });
    expect(restarted.warnings).toEqual(
      stale.map((c) => `checkpoint at position ${c.revision} does not match the log: ignored`),
    );
    expect(restarted.sluice.state.runs.has('only-here')).toBe(true);
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(other)).serialized);
    // What is left is checkpoints of this log, written once the replay is over.
    await settle();
    expect(revisions(checkpoints).length).toBeGreaterThan(0);
    await expectCheckpointsMatch(checkpoints, other);
  });

  it('given checkpoints beyond the end of the log (a log that was replaced by a shorter one), when the server starts, then they are ignored and the state is a full replay', async () => {
    const { checkpoints } = await written();
    const short = store('short.db');
    const writer = await open(short, undefined);
    await writer.sluice.execute({ type: 'EnqueueRun', input: { runId: 'x', jobName: 'j' } }, 'test');
    await writer.sluice.close();
    const restarted = await open(short, checkpoints, { every: 5 });
    expect(restarted.warnings.length).toBeGreaterThan(0);
    expect(restarted.warnings.every((w) => w.endsWith('does not match the log: ignored'))).toBe(true);
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(short)).serialized);
    expect(revisions(checkpoints)).toEqual([]);
  });

  it('given a checkpoint of another format, when the server starts, then it is ignored and deleted, and the state is a full replay', async () => {
    const { events, checkpoints, last } = await written();
    const [latest] = checkpoints.atOrBefore(last, 1);
    checkpoints.save({ ...latest!, state: checkpoints.load(latest!.revision)!, format: STATE_FORMAT + 1 });
    const restarted = await open(events, checkpoints);
    expect(restarted.warnings).toEqual([`checkpoint at position ${latest!.revision} does not match the log: ignored`]);
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(events)).serialized);
    expect(checkpoints.atOrBefore(last, 10_000).every((c) => c.format === STATE_FORMAT)).toBe(true);
  });

  it('given a checkpoint row of this format holding state of another format, or no JSON at all, when the past is asked for, then it is unreadable: ignored, deleted, and the past is a replay', async () => {
    const { events, checkpoints, last } = await written();
    const restarted = await open(events, checkpoints);
    const plain = await open(events, undefined);
    const [newest, older] = checkpoints.atOrBefore(last, 2);
    const otherFormat = JSON.stringify({
      ...JSON.parse(checkpoints.load(newest!.revision)!),
      format: STATE_FORMAT + 1,
    });
    checkpoints.save({ ...newest!, state: otherFormat });
    checkpoints.save({ ...older!, state: '{ not json' });

    const at = newest!.revision + 1n;
    expect(serializeState(await restarted.sluice.stateAt(at))).toBe(serializeState(await plain.sluice.stateAt(at)));
    expect(restarted.warnings).toEqual([
      `checkpoint at position ${newest!.revision} unreadable: checkpoint format ${STATE_FORMAT + 1}, this server reads ${STATE_FORMAT}`,
      expect.stringMatching(new RegExp(`^checkpoint at position ${older!.revision} unreadable: `)),
    ]);
    const left = checkpoints.atOrBefore(last, 10_000).map((c) => c.revision);
    expect(left).not.toContain(newest!.revision);
    expect(left).not.toContain(older!.revision);
  });
});

const LOOPING = 'test harness: the server keeps asking for the same stale checkpoints';

/**
 * A checkpoint store whose deletes fail, as on a read-only file (and its saves too, unless
 * `canSave`). Once more than `breakAfterDeletes` deletes were tried, reads throw LOOPING: a way
 * out for the test, since a server that loops here never yields to the event loop (each read of
 * the SQLite log resolves at once) and the test process would hang.
 */
function undeletable(inner: CheckpointStore, options: { canSave: boolean; breakAfterDeletes: number }) {
  let deletes = 0;
  let looped = false;
  const readOnly = () => {
    throw new Error('attempt to write a readonly database');
  };
  const store: CheckpointStore = {
    // Never handed to a worker thread, which would open the file past this wrapper.
    path: null,
    save: options.canSave ? (checkpoint) => inner.save(checkpoint) : readOnly,
    atOrBefore: (revision, limit) => {
      if (deletes > options.breakAfterDeletes) {
        looped = true;
        throw new Error(LOOPING);
      }
      return inner.atOrBefore(revision, limit);
    },
    load: (revision) => inner.load(revision),
    keepLatest: readOnly,
    delete: () => {
      deletes++;
      readOnly();
    },
    close: () => {},
  };
  return { store, deletes: () => deletes, looped: () => looped };
}

describe('a checkpoint store that fails', () => {
  it('given stale checkpoints that cannot be deleted (a read-only checkpoint file), when the server starts, then it ignores them and replays the log', async () => {
    const events = store();
    const checkpoints = checkpointStore();
    const first = await open(events, checkpoints, { every: 5 });
    await play(first.sluice, HISTORY.slice(0, 20));
    const last = first.sluice.state.revision;
    await first.sluice.close();
    // Every checkpoint stale (say the log was restored from a backup taken at other times).
    const all = checkpoints.atOrBefore(last, 1_000);
    expect(all.length).toBeGreaterThan(0);
    for (const checkpoint of all) {
      checkpoints.save({ ...checkpoint, state: checkpoints.load(checkpoint.revision)!, eventHash: '0'.repeat(64) });
    }
    const readOnly = undeletable(checkpoints, { canSave: false, breakAfterDeletes: 10 * all.length });
    const warnings: string[] = [];
    const sluice = await Sluice.open({
      store: events,
      checkpoints: readOnly.store,
      checkpointEvery: 5,
      warn: (w) => warnings.push(w),
    });
    opened.push(() => sluice.close());
    expect(serializeState(sluice.state)).toBe((await fullReplay(events)).serialized);
    expect(
      warnings.includes(LOOPING),
      `tried to delete ${all.length} stale checkpoints ${readOnly.deletes()} times, ${warnings.length} warnings`,
    ).toBe(false);
    expect(readOnly.deletes()).toBeLessThanOrEqual(all.length);
  });

  it('given stale checkpoints that cannot be deleted, when a past revision before them is asked for (a snapshot request), then it is a replay and the server does not spin', async () => {
    const { events, checkpoints, last } = await written();
    const undeletableStore = undeletable(checkpoints, { canSave: true, breakAfterDeletes: 100 });
    const warnings: string[] = [];
    const sluice = await Sluice.open({
      store: events,
      checkpoints: undeletableStore.store,
      warn: (w) => warnings.push(w),
    });
    opened.push(() => sluice.close());
    expect(warnings).toEqual([]);
    // Every checkpoint but the latest goes stale.
    const [, ...older] = checkpoints.atOrBefore(last, 10_000);
    expect(older.length).toBeGreaterThan(3);
    for (const checkpoint of older) {
      checkpoints.save({ ...checkpoint, state: checkpoints.load(checkpoint.revision)!, eventHash: '0'.repeat(64) });
    }
    const revision = older[0]!.revision;
    const plain = await open(events, undefined);
    expect(serializeState(await sluice.stateAt(revision))).toBe(serializeState(await plain.sluice.stateAt(revision)));
    expect(
      undeletableStore.looped(),
      `tried ${undeletableStore.deletes()} deletes of ${older.length} stale checkpoints`,
    ).toBe(false);
  });

  it('given a closed checkpoint store, when the server starts, runs commands and travels in time, then everything works from the log and each failure is a warning', async () => {
    const events = store();
    const checkpoints = checkpointStore();
    const first = await open(events, checkpoints, { every: 5 });
    await play(first.sluice, HISTORY.slice(0, 20));
    await first.sluice.close();
    checkpoints.close();

    const restarted = await open(events, checkpoints, { every: 5 });
    await settle();
    const before = restarted.sluice.state.revision;
    const notWritten = (list: bigint[]) =>
      list.map((r) =>
        expect.stringMatching(new RegExp(`^checkpoint at position ${r} not written: checkpoint store: `)),
      );
    // The read at start fails, then each checkpoint that falls due during the replay.
    const duringReplay = checkpointModel(revisionsBetween(0n, before), 5);
    expect(duringReplay.length).toBeGreaterThan(0);
    expect(restarted.warnings).toEqual([
      expect.stringMatching(/^checkpoint store: read failed: /),
      ...notWritten(duringReplay),
    ]);
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(events)).serialized);

    // Commands go on; each checkpoint that falls due fails with a warning, and is not retried
    // on every event.
    const ends = await play(restarted.sluice, HISTORY.slice(20), []);
    const after = restarted.sluice.state.revision;
    expect(after - before).toBeGreaterThan(10n);
    const whileServing = checkpointModel(ends, 5, duringReplay.at(-1));
    expect(whileServing.length).toBeGreaterThan(0);
    expect(restarted.warnings.slice(1)).toEqual(notWritten([...duringReplay, ...whileServing]));
    expect(serializeState(restarted.sluice.state)).toBe((await fullReplay(events)).serialized);

    const plain = await open(events, undefined);
    const warned = restarted.warnings.length;
    for (const revision of [0n, 7n, before, before + 3n]) {
      expect(serializeState(await restarted.sluice.stateAt(revision))).toBe(
        serializeState(await plain.sluice.stateAt(revision)),
      );
    }
    expect(restarted.warnings.slice(warned).every((w) => /^checkpoint store: read failed: /.test(w))).toBe(true);
  });

  it('given a checkpoint store that closes while the server runs, when a command makes a checkpoint due, then the command is recorded and the failure is a warning', async () => {
    const events = store();
    const checkpoints = openCheckpointStore(':memory:');
    const { sluice, warnings } = await open(events, checkpoints, { every: 2 });
    await play(
      sluice,
      [],
      [
        { type: 'SetMaxConcurrentRuns', limit: 1 },
        { type: 'EnqueueRun', input: { runId: 'a', jobName: 'j' } },
      ],
    );
    expect(revisions(checkpoints)).toEqual([3n]);
    checkpoints.close();
    const outcome = await sluice.execute({ type: 'EnqueueRun', input: { runId: 'b', jobName: 'j' } }, 'test');
    expect(outcome.events.map((e) => e.type)).toEqual(['RunEnqueued', 'RunBlocked']);
    expect(sluice.state.runs.get('b')?.status).toBe('QUEUED');
    await settle();
    expect(warnings).toEqual([expect.stringMatching(/^checkpoint at position 5 not written: checkpoint store: /)]);
    // The server goes on.
    await sluice.execute({ type: 'MarkRunFinished', runId: 'a', status: 'SUCCESS' }, 'test');
    expect(sluice.state.runs.get('b')?.status).toBe('STARTING');
  });
});

describe('pruning', () => {
  it('given checkpointsKept 2, when many checkpoints fall due, then only the newest two are kept, and a restart starts from the newest', async () => {
    const events = store();
    const checkpoints = checkpointStore();
    const { sluice } = await open(events, checkpoints, { every: 5, kept: 2 });
    for (let i = 0; i < 30; i++) {
      await sluice.execute({ type: 'EnqueueRun', input: { runId: `r${i}`, jobName: 'j' } }, 'test');
      await settle();
    }
    const kept = revisions(checkpoints);
    expect(kept).toHaveLength(2);
    const state = serializeState(sluice.state);
    await sluice.close();
    const restarted = await open(events, checkpoints, { every: 5, kept: 2 });
    expect(serializeState(restarted.sluice.state)).toBe(state);
  });
});
