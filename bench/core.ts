/**
 * The pure core with no I/O: a State, a fake clock and a revision counter. `exec` is what a
 * command costs the server minus the store: decide, then evolve each event it returns.
 */
import { evolve } from '../projections/evolve.js';
import { initialState, type RunRecord, type State } from '../projections/state.js';
import type { Command, EnqueueRunInput } from '../src/domain/commands.js';
import { decide } from '../src/domain/decide.js';
import type { DomainEvent, LoggedEvent } from '../src/domain/events.js';

export class Core {
  readonly state: State = initialState();
  /** Every event folded in, when asked to keep them (to write a log). */
  readonly log: LoggedEvent[] | null;
  private clock = Date.parse('2024-01-01T00:00:00.000Z');
  private ids = 0;

  constructor(options: { keepLog?: boolean } = {}) {
    this.log = options.keepLog ? [] : null;
  }

  exec(command: Command, actor = 'bench'): DomainEvent[] {
    const now = new Date(this.clock++).toISOString();
    const events = decide(command, this.state, { now, newRunId: `gen-${this.ids++}` });
    for (const event of events) {
      const logged = { ...event, revision: this.state.revision + 1n, at: now, actor } as LoggedEvent;
      evolve(this.state, logged);
      this.log?.push(logged);
    }
    return events;
  }

  enqueue(input: Partial<EnqueueRunInput> & { runId: string }): DomainEvent[] {
    return this.exec({ type: 'EnqueueRun', input: { jobName: 'job', ...input } });
  }

  run(runId: string): RunRecord {
    const run = this.state.runs.get(runId);
    if (!run) throw new Error(`no run ${runId}`);
    return run;
  }

  /** The first in-progress run (oldest admitted) matching a predicate. */
  firstInProgress(where: (run: RunRecord) => boolean = () => true): RunRecord | undefined {
    for (const id of this.state.inProgress) {
      const run = this.run(id);
      if (where(run)) return run;
    }
    return undefined;
  }
}

export const hasTag = (run: RunRecord, key: string): boolean => run.tags.some((t) => t.key === key);
