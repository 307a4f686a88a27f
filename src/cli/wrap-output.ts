/**
 * What a wrapper says of its own, on stderr (stdout belongs to COMMAND): a line a person reads
 * (`sluice: run 7f3c waiting: ...`), one JSON object per event with --json, or nothing with --quiet.
 */
export type OutputMode = 'text' | 'json' | 'quiet';

export type WrapperEvent =
  | { event: 'queued'; runId: string; jobName: string }
  | { event: 'waiting'; runId: string; reasons: string[]; pool?: string; stepKey?: string }
  | { event: 'admitted'; runId: string }
  | { event: 'slot'; runId: string; pool: string; stepKey: string }
  | { event: 'started'; runId: string; command: string[]; pid: number }
  | { event: 'terminating'; runId: string; reason: string }
  | { event: 'finished'; runId: string; status: string }
  | { event: 'exit'; runId: string; code: number; reason: string }
  | { event: 'warning'; runId: string | null; message: string };

function sentence(e: WrapperEvent): string {
  switch (e.event) {
    case 'queued':
      return `run ${e.runId} queued (job ${e.jobName})`;
    case 'waiting':
      return `run ${e.runId} waiting${e.pool ? ` for a slot of pool ${e.pool}` : ''}: ${e.reasons.join('; ')}`;
    case 'admitted':
      return `run ${e.runId} admitted`;
    case 'slot':
      return `run ${e.runId} holds a slot of pool ${e.pool} (step ${e.stepKey})`;
    case 'started':
      return `run ${e.runId} started: ${e.command.join(' ')} (pid ${e.pid})`;
    case 'terminating':
      return `run ${e.runId} ${e.reason}: stopping the command`;
    case 'finished':
      return `run ${e.runId} finished as ${e.status}`;
    case 'exit':
      return `run ${e.runId}: exit ${e.code} (${e.reason})`;
    case 'warning':
      return e.message;
  }
}

export class Output {
  constructor(
    private readonly mode: OutputMode,
    private readonly write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  ) {}

  emit(e: WrapperEvent): void {
    if (this.mode === 'quiet') return;
    if (this.mode === 'json') this.write(JSON.stringify({ ...e, at: new Date().toISOString() }));
    else this.write(`sluice: ${sentence(e)}`);
  }

  /** Usage and start-up errors: printed whatever the mode, since the wrapper cannot go on. */
  fatal(message: string): void {
    if (this.mode === 'json') this.write(JSON.stringify({ event: 'error', message, at: new Date().toISOString() }));
    else this.write(`sluice: ${message}`);
  }
}
