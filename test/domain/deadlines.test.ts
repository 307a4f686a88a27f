/**
 * Run timeouts and leases (DESIGN section 1, "Timeouts"), on the pure core: ExpireDeadlines is
 * decided at the context's `now`, which the scenario's fake clock drives. Start, cancel and
 * max-runtime timeouts, leases and the heartbeat rule, SetRunMonitoring (and the dagster.yaml
 * `run_monitoring` block that turns into it), and deadlines surviving a replay of the log.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { configCommands } from '../../src/app/apply-dagster-yaml.js';
import { parseConcurrencyConfigFile } from '../../src/dagster-yaml.js';
import { decide, nextDeadline } from '../../src/domain/decide.js';
import { InvalidInputError, RunNotFoundError, TransitionNotAllowedError } from '../../src/domain/errors.js';
import type { DomainEvent } from '../../src/domain/events.js';
import { cmd, replay, summary } from '../support/scenario.js';
import { claimStatus, SlotScenario, slotCmd, slotSummary } from '../support/slots.js';

const { heartbeat, expire, monitoring } = slotCmd;
const T0 = Date.parse('2024-01-01T00:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

/** Monitoring names each deadline as Dagster's RunFailureReason does (where it has a name). */
const FAILURE_REASONS: Array<[RegExp, string]> = [
  [/^start timeout/, 'START_TIMEOUT'],
  [/^cancel timeout/, 'CANCEL_TIMEOUT'],
  [/^max runtime/, 'RUN_TIMEOUT'],
  [/^lease expired/, 'UNEXPECTED_TERMINATION'],
];
const failureReasonOf = (reason: string) => FAILURE_REASONS.find(([re]) => re.test(reason))?.[1];

const finished = (runId: string, status: string, reason: string): DomainEvent =>
  ({ type: 'RunFinished', data: { runId, status, reason, failureReason: failureReasonOf(reason) } }) as DomainEvent;

/** Advances the clock to `seconds` after T0 (never back) and sends ExpireDeadlines. */
function expireAt(s: SlotScenario, seconds: number): DomainEvent[] {
  const now = Date.parse(s.now);
  const target = T0 + seconds * 1000;
  if (target < now) throw new Error(`the clock is at ${s.now}, past ${at(seconds)}`);
  s.advance((target - now) / 1000);
  // Limit-state records are checked by the scenario after every command.
  return s.when(expire()).filter((e) => e.type !== 'LimitStatesChanged');
}

function clockTo(s: SlotScenario, seconds: number): SlotScenario {
  return s.advance((T0 + seconds * 1000 - Date.parse(s.now)) / 1000);
}

describe('ExpireDeadlines', () => {
  it('appends nothing when no deadline has passed, or when nothing is in progress', () => {
    const s = new SlotScenario();
    expect(s.when(expire())).toEqual([]);
    s.given(cmd.enqueue('a'));
    expect(expireAt(s, 100)).toEqual([]);
    expect(nextDeadline(s.state)).toEqual({
      runId: 'a',
      at: T0 + 180_000,
      status: 'FAILURE',
      reason: 'start timeout: STARTING for more than 180 s',
      failureReason: 'START_TIMEOUT',
    });
  });

  it('ends a run only once', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'));
    expect(summary(expireAt(s, 200))).toEqual(['RunFinished:a']);
    expect(s.when(expire())).toEqual([]);
    expect(nextDeadline(s.state)).toBeNull();
  });

  it('ends every run whose deadline passed in one append, each with its status and reason', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('starting'));
    s.given(cmd.enqueue('canceling'), cmd.start('canceling'), cmd.terminate('canceling'));
    s.given(cmd.enqueue('leased', { leaseSeconds: 100 }), cmd.start('leased'));
    s.given(cmd.enqueue('healthy'), cmd.start('healthy'));
    expect(expireAt(s, 200)).toEqual([
      finished('starting', 'FAILURE', 'start timeout: STARTING for more than 180 s'),
      finished('canceling', 'CANCELED', 'cancel timeout: CANCELING for more than 180 s'),
      finished('leased', 'FAILURE', 'lease expired: no heartbeat for 100 s'),
    ]);
    expect(s.statuses()).toEqual({ starting: 'FAILURE', canceling: 'CANCELED', leased: 'FAILURE', healthy: 'STARTED' });
    expect(s.run('leased').finishReason).toBe('lease expired: no heartbeat for 100 s');
    expect(s.run('leased').finishedAt).toBe(at(200));
  });

  it('names the earliest deadline when several have passed', () => {
    const s = new SlotScenario();
    s.given(monitoring(50, 180), cmd.enqueue('a', { leaseSeconds: 30 }));
    expect(expireAt(s, 60)).toEqual([finished('a', 'FAILURE', 'lease expired: no heartbeat for 30 s')]);
  });

  it('admits the freed capacity and grants the freed slots in the same append', () => {
    const s = new SlotScenario();
    s.given(cmd.maxRuns(2), cmd.poolLimit('db', 1));
    s.given(cmd.enqueue('a', { steps: ['x@db'], leaseSeconds: 60 }), cmd.start('a'), slotCmd.claim('a', 'x'));
    s.given(cmd.enqueue('b', { steps: ['y@db'] }), cmd.start('b'), slotCmd.claim('b', 'y'));
    s.given(cmd.enqueue('c'));
    expect(s.status('c')).toBe('QUEUED');
    expect(slotSummary(expireAt(s, 60))).toEqual([
      'RunFinished:a',
      'StepSlotReleased:a/x',
      'StepSlotGranted:b/y',
      'RunAdmitted:c',
    ]);
    expect(s.run('c').admittedAt).toBe(at(60));
  });
});

describe('start timeout', () => {
  it('fails a run STARTING for longer than 180 s by default', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'));
    expect(expireAt(s, 179.999)).toEqual([]);
    expect(expireAt(s, 180.001)).toEqual([finished('a', 'FAILURE', 'start timeout: STARTING for more than 180 s')]);
    expect(s.run('a')).toMatchObject({
      status: 'FAILURE',
      finishReason: 'start timeout: STARTING for more than 180 s',
    });
  });

  it('counts from admission, not from enqueue', () => {
    const s = new SlotScenario();
    s.given(cmd.maxRuns(1), cmd.enqueue('a'), cmd.start('a'), cmd.enqueue('b'));
    clockTo(s, 500).given(cmd.finish('a'));
    expect(s.run('b').admittedAt).toBe(at(500));
    expect(expireAt(s, 679)).toEqual([]);
    expect(summary(expireAt(s, 681))).toEqual(['RunFinished:b']);
  });

  it('stops once the run is marked started', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'));
    clockTo(s, 170).given(cmd.start('a'));
    expect(expireAt(s, 10_000)).toEqual([]);
    expect(nextDeadline(s.state)).toBeNull();
  });

  it('is the start_timeout_seconds of SetRunMonitoring', () => {
    const s = new SlotScenario();
    s.given(monitoring(30, 180), cmd.enqueue('a'));
    expect(expireAt(s, 29)).toEqual([]);
    expect(expireAt(s, 31)).toEqual([finished('a', 'FAILURE', 'start timeout: STARTING for more than 30 s')]);
  });
});

describe('cancel timeout', () => {
  it('cancels a run CANCELING for longer than 180 s by default, counted from the request', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'), cmd.start('a'));
    clockTo(s, 1000).given(cmd.terminate('a'));
    expect(s.status('a')).toBe('CANCELING');
    expect(expireAt(s, 1179)).toEqual([]);
    expect(expireAt(s, 1181)).toEqual([finished('a', 'CANCELED', 'cancel timeout: CANCELING for more than 180 s')]);
  });

  it('replaces the start timeout of a STARTING run that is terminated', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'));
    clockTo(s, 100).given(cmd.terminate('a'));
    expect(expireAt(s, 200)).toEqual([]);
    expect(expireAt(s, 281)).toEqual([finished('a', 'CANCELED', 'cancel timeout: CANCELING for more than 180 s')]);
  });

  it('does not fire once the worker marks the run CANCELED', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'), cmd.start('a'), cmd.terminate('a'));
    clockTo(s, 10).given(cmd.finish('a', 'CANCELED'));
    expect(expireAt(s, 1000)).toEqual([]);
    expect(s.run('a').finishReason).toBeNull();
  });

  it('is the cancel_timeout_seconds of SetRunMonitoring', () => {
    const s = new SlotScenario();
    s.given(monitoring(180, 5), cmd.enqueue('a'), cmd.start('a'), cmd.terminate('a'));
    expect(expireAt(s, 4)).toEqual([]);
    expect(expireAt(s, 6)).toEqual([finished('a', 'CANCELED', 'cancel timeout: CANCELING for more than 5 s')]);
  });
});

describe('max runtime (the dagster/max_runtime tag, in seconds)', () => {
  it('fails a run STARTED for longer than the tag, counted from markRunStarted', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a', { tags: { 'dagster/max_runtime': '60' } }));
    clockTo(s, 100).given(cmd.start('a'));
    expect(expireAt(s, 159)).toEqual([]);
    expect(expireAt(s, 161)).toEqual([
      finished('a', 'FAILURE', 'max runtime: running for more than 60 s (dagster/max_runtime)'),
    ]);
  });

  it('does not apply while STARTING (the start timeout does) nor while CANCELING (the cancel timeout does)', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('starting', { tags: { 'dagster/max_runtime': '10' } }));
    s.given(cmd.enqueue('canceling', { tags: { 'dagster/max_runtime': '10' } }), cmd.start('canceling'));
    clockTo(s, 5).given(cmd.terminate('canceling'));
    expect(expireAt(s, 100)).toEqual([]);
    expect(summary(expireAt(s, 186))).toEqual(['RunFinished:starting', 'RunFinished:canceling']);
  });

  it('accepts fractions of a second', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a', { tags: { 'dagster/max_runtime': '0.5' } }), cmd.start('a'));
    expect(expireAt(s, 0.4)).toEqual([]);
    expect(summary(expireAt(s, 0.5))).toEqual(['RunFinished:a']);
  });

  it.each([
    ['0', null],
    ['-5', 'is below 0'],
    ['soon', 'is not a number of seconds'],
    ['nan', 'sets no deadline'],
    ['inf', 'sets no deadline'],
    ['31536001', 'more than a year'],
  ])('accepts %j as Dagster does: the run has no max runtime, even with a default, and says why', (value, reason) => {
    const s = new SlotScenario();
    s.given(monitoring(180, 180, 50));
    s.given(cmd.enqueue('b', { tags: [{ key: 'dagster/max_runtime', value }] }), cmd.start('b'));
    expect(nextDeadline(s.state)).toBeNull();
    const ignored = s.run('b').ignoredTags;
    if (reason === null) expect(ignored).toEqual([]);
    else expect(ignored).toEqual([{ key: 'dagster/max_runtime', reason: expect.stringContaining(reason) }]);
  });

  it("reads the value as Python's float() does: spaces, a sign, underscores, an exponent", () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a', { tags: { 'dagster/max_runtime': ' +1_0e1 ' } }), cmd.start('a'));
    expect(nextDeadline(s.state)).toMatchObject({ runId: 'a', at: T0 + 100_000 });
    expect(s.run('a').ignoredTags).toEqual([]);
  });
});

describe('max runtime: the dagster/max_runtime_seconds tag and run_monitoring.max_runtime_seconds', () => {
  it('reads dagster/max_runtime_seconds like dagster/max_runtime', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a', { tags: { 'dagster/max_runtime_seconds': '30' } }), cmd.start('a'));
    expect(expireAt(s, 29)).toEqual([]);
    expect(expireAt(s, 31)).toEqual([
      finished('a', 'FAILURE', 'max runtime: running for more than 30 s (dagster/max_runtime_seconds)'),
    ]);
    expect(s.run('a')).toMatchObject({ status: 'FAILURE', failureReason: 'RUN_TIMEOUT' });
  });

  it('given both tags, dagster/max_runtime applies and dagster/max_runtime_seconds is recorded as ignored, as Dagster reads them', () => {
    const s = new SlotScenario();
    s.given(
      cmd.enqueue('b', {
        tags: [
          { key: 'dagster/max_runtime_seconds', value: '90' },
          { key: 'dagster/max_runtime', value: '60' },
        ],
      }),
      cmd.start('b'),
    );
    expect(nextDeadline(s.state)).toMatchObject({ runId: 'b', at: T0 + 60_000 });
    expect(s.run('b').ignoredTags).toEqual([
      {
        key: 'dagster/max_runtime_seconds',
        reason: 'dagster/max_runtime is also set ("60"); Dagster reads that one, and so does Sluice',
      },
    ]);
    expect(expireAt(s, 61)).toEqual([
      finished('b', 'FAILURE', 'max runtime: running for more than 60 s (dagster/max_runtime)'),
    ]);
  });

  it('given both tags where dagster/max_runtime is not a number, the run has no max runtime (Dagster does not fall back to the other)', () => {
    const s = new SlotScenario();
    s.given(
      cmd.enqueue('c', {
        tags: [
          { key: 'dagster/max_runtime', value: 'soon' },
          { key: 'dagster/max_runtime_seconds', value: '30' },
        ],
      }),
      cmd.start('c'),
    );
    expect(nextDeadline(s.state)).toBeNull();
    expect(s.run('c').ignoredTags.map((t) => t.key)).toEqual(['dagster/max_runtime_seconds', 'dagster/max_runtime']);
  });

  it('gives runs with neither tag the default max runtime; a tag overrides it; 0 or null means none', () => {
    const s = new SlotScenario();
    s.given(monitoring(180, 180, 50));
    expect(s.state.monitoring.maxRuntimeSeconds).toBe(50);
    s.given(cmd.enqueue('plain'), cmd.start('plain'));
    s.given(cmd.enqueue('tagged', { tags: { 'dagster/max_runtime': '500' } }), cmd.start('tagged'));
    expect(nextDeadline(s.state)).toMatchObject({ runId: 'plain', at: T0 + 50_000, failureReason: 'RUN_TIMEOUT' });
    expect(expireAt(s, 51)).toEqual([
      finished('plain', 'FAILURE', 'max runtime: running for more than 50 s (run_monitoring.max_runtime_seconds)'),
    ]);
    expect(s.when(monitoring(180, 180, 0))).toEqual([
      {
        type: 'RunMonitoringSet',
        data: { startTimeoutSeconds: 180, cancelTimeoutSeconds: 180, maxRuntimeSeconds: null },
      },
    ]);
    s.given(cmd.enqueue('later'), cmd.start('later'));
    expect(nextDeadline(s.state)).toMatchObject({ runId: 'tagged', at: T0 + 500_000 });
    const error = s.rejects(monitoring(180, 180, -1));
    expect((error as InvalidInputError).field).toBe('maxRuntimeSeconds');
  });

  it('comes from run_monitoring.max_runtime_seconds in dagster.yaml, 0 meaning none', () => {
    const s = new SlotScenario();
    const file = (seconds: number) =>
      parseConcurrencyConfigFile(`run_monitoring: {max_runtime_seconds: ${seconds}}\n`, 'dagster.yaml', {});
    const commands = configCommands(file(7200), s.state.monitoring);
    expect(commands).toEqual([
      { type: 'SetRunMonitoring', startTimeoutSeconds: 180, cancelTimeoutSeconds: 180, maxRuntimeSeconds: 7200 },
    ]);
    s.given(...commands);
    expect(s.state.monitoring.maxRuntimeSeconds).toBe(7200);
    s.given(...configCommands(file(0), s.state.monitoring));
    expect(s.state.monitoring.maxRuntimeSeconds).toBeNull();
  });

  it('names every monitoring ending with its failure reason; ends by a person or worker carry none', () => {
    const s = new SlotScenario();
    s.given(monitoring(10, 10), cmd.enqueue('start'), cmd.enqueue('lease', { leaseSeconds: 5 }), cmd.start('lease'));
    s.given(
      cmd.enqueue('cancel'),
      cmd.start('cancel'),
      cmd.terminate('cancel'),
      cmd.enqueue('done'),
      cmd.start('done'),
    );
    s.given(cmd.finish('done', 'SUCCESS'));
    expireAt(s, 11);
    expect(s.run('start').failureReason).toBe('START_TIMEOUT');
    expect(s.run('lease').failureReason).toBe('UNEXPECTED_TERMINATION');
    expect(s.run('cancel')).toMatchObject({ status: 'CANCELED', failureReason: 'CANCEL_TIMEOUT' });
    expect(s.run('done').failureReason).toBeNull();
  });
});

describe('leases and heartbeats', () => {
  it('a run with a lease fails when the lease passes without a heartbeat, counted from admission', () => {
    const s = new SlotScenario();
    s.given(cmd.maxRuns(0), cmd.enqueue('a', { leaseSeconds: 10 }));
    // Queued runs have no lease running, and their heartbeats record nothing.
    expect(expireAt(s, 100)).toEqual([]);
    expect(s.when(heartbeat('a'))).toEqual([]);
    s.given(cmd.maxRuns(1));
    expect(s.run('a').admittedAt).toBe(at(100));
    expect(expireAt(s, 109.9)).toEqual([]);
    expect(expireAt(s, 110)).toEqual([finished('a', 'FAILURE', 'lease expired: no heartbeat for 10 s')]);
  });

  it('a heartbeat is recorded only when the last one (or the admission) is a third of the lease old', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a', { leaseSeconds: 30 }), cmd.start('a'));
    clockTo(s, 5);
    expect(s.when(heartbeat('a'))).toEqual([]);
    clockTo(s, 10);
    expect(s.when(heartbeat('a'))).toEqual([{ type: 'RunHeartbeatRecorded', data: { runId: 'a' } }]);
    expect(s.run('a').lastHeartbeatAt).toBe(at(10));
    clockTo(s, 19.9);
    expect(s.when(heartbeat('a'))).toEqual([]);
    clockTo(s, 20);
    expect(summary(s.when(heartbeat('a')))).toEqual(['RunHeartbeatRecorded:a']);
    // The lease now runs from the last recorded heartbeat.
    expect(expireAt(s, 49.9)).toEqual([]);
    expect(expireAt(s, 50)).toEqual([finished('a', 'FAILURE', 'lease expired: no heartbeat for 30 s')]);
  });

  it('a worker calling every second records about three heartbeats per lease period', () => {
    const s = new SlotScenario({ check: 'decisions' });
    s.given(cmd.enqueue('a', { leaseSeconds: 30 }), cmd.start('a'));
    for (let t = 1; t <= 300; t++) {
      clockTo(s, t).given(heartbeat('a'));
      expect(s.when(expire())).toEqual([]);
    }
    const recorded = s.log.filter((e) => e.type === 'RunHeartbeatRecorded').length;
    expect(recorded).toBe(30);
    expect(s.status('a')).toBe('STARTED');
  });

  it('a worker calling at least every two thirds of its lease never expires (any lease, interval, offset)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 600 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (lease, fraction, offset) => {
          const interval = Math.max(1, Math.floor(((lease * 1000 * 2) / 3) * fraction)); // ms
          const s = new SlotScenario({ check: 'off' });
          s.given(cmd.enqueue('a', { leaseSeconds: lease }), cmd.start('a'));
          s.advance(Math.floor(interval * offset) / 1000);
          const calls = Math.min(200, Math.ceil((8 * lease * 1000) / interval));
          for (let i = 0; i < calls; i++) {
            s.when(heartbeat('a'));
            s.advance((interval - 1) / 1000);
            expect(s.when(expire())).toEqual([]);
            s.advance(1 / 1000);
          }
          const periods = (Date.parse(s.now) - T0) / (lease * 1000);
          const recorded = s.log.filter((e) => e.type === 'RunHeartbeatRecorded').length;
          expect(recorded).toBeLessThanOrEqual(3 * Math.ceil(periods) + 1);
          expect(s.status('a')).toBe('STARTED');
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a heartbeat for a run without a lease records nothing', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'), cmd.start('a'));
    clockTo(s, 1000);
    expect(s.when(heartbeat('a'))).toEqual([]);
  });

  it('a heartbeat keeps a CANCELING run’s lease alive too', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a', { leaseSeconds: 30 }), cmd.start('a'), cmd.terminate('a'));
    clockTo(s, 20).given(heartbeat('a'));
    expect(expireAt(s, 40)).toEqual([]);
    expect(summary(expireAt(s, 50))).toEqual(['RunFinished:a']);
    expect(s.run('a').finishReason).toBe('lease expired: no heartbeat for 30 s');
  });

  it('a heartbeat for a finished run is a conflict saying why it ended; for an unknown run, not found', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a', { leaseSeconds: 10 }), cmd.start('a'));
    expireAt(s, 11);
    const error = s.rejects(heartbeat('a'));
    expect(error).toBeInstanceOf(TransitionNotAllowedError);
    expect(error.message).toBe(
      'run a already finished as FAILURE (lease expired: no heartbeat for 10 s): stop working on it',
    );
    s.given(cmd.enqueue('b'), cmd.start('b'), cmd.finish('b'));
    expect(s.rejects(heartbeat('b'))).toBeInstanceOf(TransitionNotAllowedError);
    expect(s.rejects(heartbeat('ghost'))).toBeInstanceOf(RunNotFoundError);
    const bad = s.rejects(heartbeat(''));
    expect(bad).toBeInstanceOf(InvalidInputError);
    expect((bad as InvalidInputError).field).toBe('runId');
  });

  it('leaseSeconds must be a positive whole number of seconds', () => {
    const s = new SlotScenario();
    for (const leaseSeconds of [0, -1, 1.5]) {
      const error = s.rejects(cmd.enqueue('a', { leaseSeconds }));
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).field).toBe('input.leaseSeconds');
    }
  });

  // Regression: the lease has expired by the log (no heartbeat for longer than leaseSeconds), but
  // until ExpireDeadlines ran, a late heartbeat was recorded and renewed it, so the run that "fails
  // when no heartbeat comes for this many seconds" lived on. Refusing the heartbeat or ending the
  // run would both do; the run must not survive.
  it.each([
    ['its lease', { leaseSeconds: 10 }, 15, 'lease expired: no heartbeat for 10 s'],
    ['its start timeout', { leaseSeconds: 600 }, 200, 'start timeout: STARTING for more than 180 s'],
  ])('a heartbeat that arrives after %s passed does not bring the run back', (_what, options, late, reason) => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    s.given(cmd.enqueue('a', { ...options, steps: ['x@db'] }), slotCmd.claim('a', 'x'));
    s.given(cmd.enqueue('b', { steps: ['y@db'] }), cmd.start('b'), slotCmd.claim('b', 'y'));
    clockTo(s, late);
    try {
      s.when(heartbeat('a'));
    } catch (error) {
      expect(error).toBeInstanceOf(TransitionNotAllowedError);
    }
    s.when(expire());
    expect(s.run('a')).toMatchObject({ status: 'FAILURE', finishReason: reason, lastHeartbeatAt: null });
    expect(claimStatus(s.state, 'b', 'y')).toBe('GRANTED');
  });
});

// BUG (reported): like the late heartbeat above (which the decider now handles), other commands
// decided after a deadline passed but before ExpireDeadlines swept it ignore the deadline: a run
// STARTING for 200 s (timeout 180 s) is marked STARTED and never fails; a run whose lease expired
// is granted a slot ahead of a live run's waiting step. Refusing the command or ending the run
// would both do; the run must not survive.
describe('a command that arrives after a deadline passed', () => {
  const sendLateThenSweep = (s: SlotScenario, command: ReturnType<typeof cmd.start>) => {
    try {
      s.when(command);
    } catch (error) {
      expect(error).toBeInstanceOf(TransitionNotAllowedError);
    }
    s.when(expire());
  };

  it('markRunStarted after the start timeout does not rescue the run', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'));
    clockTo(s, 200);
    sendLateThenSweep(s, cmd.start('a'));
    expect(s.run('a')).toMatchObject({
      status: 'FAILURE',
      finishReason: 'start timeout: STARTING for more than 180 s',
    });
  });

  it('claimStepSlot after the lease expired does not take a slot from a live run', () => {
    const s = new SlotScenario();
    s.given(cmd.poolLimit('db', 1));
    s.given(cmd.enqueue('a', { steps: ['x@db'], leaseSeconds: 10 }), cmd.start('a'));
    s.given(cmd.enqueue('b', { steps: ['y@db'] }), cmd.start('b'));
    clockTo(s, 15);
    try {
      s.when(slotCmd.claim('a', 'x'));
    } catch (error) {
      expect(error).toBeInstanceOf(TransitionNotAllowedError);
    }
    // Decided on its own, before any sweep: the dead run must not hold the pool's only slot.
    expect(claimStatus(s.state, 'a', 'x')).not.toBe('GRANTED');
    s.when(slotCmd.claim('b', 'y'));
    expect(claimStatus(s.state, 'b', 'y')).toBe('GRANTED');
  });
});

describe('SetRunMonitoring', () => {
  it('defaults to 180 s for both, as Dagster; records a change once; validates each field', () => {
    const s = new SlotScenario();
    expect(s.state.monitoring).toEqual({
      startTimeoutSeconds: 180,
      cancelTimeoutSeconds: 180,
      maxRuntimeSeconds: null,
    });
    expect(s.when(monitoring(30, 60))).toEqual([
      {
        type: 'RunMonitoringSet',
        data: { startTimeoutSeconds: 30, cancelTimeoutSeconds: 60, maxRuntimeSeconds: null },
      },
    ]);
    expect(s.when(monitoring(30, 60))).toEqual([]);
    expect(s.state.monitoring).toEqual({ startTimeoutSeconds: 30, cancelTimeoutSeconds: 60, maxRuntimeSeconds: null });
    const cases: Array<[number, number, string]> = [
      [0, 60, 'startTimeoutSeconds'],
      [1.5, 60, 'startTimeoutSeconds'],
      [30, -1, 'cancelTimeoutSeconds'],
      [30, 7 * 24 * 3600 + 1, 'cancelTimeoutSeconds'],
    ];
    for (const [start, cancel, field] of cases) {
      const error = s.rejects(monitoring(start, cancel));
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).field).toBe(field);
    }
  });

  it('applies at once to runs already in progress', () => {
    const s = new SlotScenario();
    s.given(cmd.enqueue('a'));
    clockTo(s, 50).given(monitoring(30, 180));
    expect(nextDeadline(s.state)?.at).toBe(T0 + 30_000);
    expect(s.when(expire())).toEqual([finished('a', 'FAILURE', 'start timeout: STARTING for more than 30 s')]);
  });

  it('comes from run_monitoring in dagster.yaml, keeping the value the file leaves out', () => {
    const s = new SlotScenario();
    s.given(monitoring(100, 200));
    const file = parseConcurrencyConfigFile(
      'run_monitoring:\n  enabled: true\n  start_timeout_seconds: 1\n',
      'dagster.yaml',
      {},
    );
    const commands = configCommands(file, s.state.monitoring);
    expect(commands).toEqual([
      { type: 'SetRunMonitoring', startTimeoutSeconds: 1, cancelTimeoutSeconds: 200, maxRuntimeSeconds: null },
    ]);
    s.given(...commands, cmd.enqueue('a'));
    expect(expireAt(s, 1)).toEqual([finished('a', 'FAILURE', 'start timeout: STARTING for more than 1 s')]);
    // The same file again records nothing.
    for (const command of configCommands(file, s.state.monitoring)) expect(s.when(command)).toEqual([]);
    expect(
      configCommands(parseConcurrencyConfigFile('concurrency: {}\n', 'dagster.yaml', {}), s.state.monitoring),
    ).toEqual([]);
  });
});

describe('deadlines live in the projections', () => {
  it('a replay of the log has the same deadlines, and expires them the same way', () => {
    const s = new SlotScenario();
    s.given(monitoring(60, 90), cmd.poolLimit('db', 1));
    s.given(
      cmd.enqueue('lease', { steps: ['x@db'], leaseSeconds: 20 }),
      cmd.start('lease'),
      slotCmd.claim('lease', 'x'),
    );
    s.given(cmd.enqueue('waiter', { steps: ['x@db'] }), cmd.start('waiter'), slotCmd.claim('waiter', 'x'));
    s.given(cmd.enqueue('starting'));
    clockTo(s, 10).given(heartbeat('lease'), cmd.enqueue('cancel'), cmd.start('cancel'), cmd.terminate('cancel'));
    const replayed = replay(s.log);
    expect(nextDeadline(replayed)).toEqual(nextDeadline(s.state));
    expect(nextDeadline(replayed)).toMatchObject({ runId: 'lease', at: T0 + 30_000 });
    // The server was down from t=10 to t=200: every deadline passed; at start they fire at once.
    const now = at(200);
    const fromReplay = decide(expire(), replayed, { now, newRunId: 'x' });
    clockTo(s, 200);
    const live = s.when(expire());
    expect(fromReplay).toEqual(live);
    expect(slotSummary(live)).toEqual([
      'RunFinished:lease',
      'StepSlotReleased:lease/x',
      'RunFinished:starting',
      'RunFinished:cancel',
      'StepSlotGranted:waiter/x',
    ]);
    expect(claimStatus(s.state, 'waiter', 'x')).toBe('GRANTED');
    expect(s.run('cancel').status).toBe('CANCELED');
  });
});
