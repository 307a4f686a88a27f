/**
 * `sluice run [options] -- COMMAND [ARG...]`: any command as a Sluice run. It enqueues the run,
 * says why it waits each time that changes, and once admitted (and holding a slot of each
 * --pool) runs COMMAND with a heartbeat, then records how it ended and exits with its code.
 */
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { RunWatch, type StatusChange } from './run-watch.js';
import { Refused, SluiceApi, Unreachable } from './wrap-api.js';
import { RunningCommand } from './wrap-command.js';
import { Inbox, interruptedCode } from './wrap-inbox.js';
import { COMMON_OPTIONS, defaultUrl, outputMode, seconds, splitCommand, UsageError } from './wrap-options.js';
import { Output } from './wrap-output.js';

export const RUN_HELP = `usage: sluice run [--job NAME] [--run-id ID] [--tag KEY=VALUE]... [--pool POOL]... [--priority N]
                 [--lease SECONDS] [--max-runtime SECONDS] [--wait-timeout SECONDS] [--grace SECONDS]
                 [--url URL] [--token TOKEN] [--quiet | --json] -- COMMAND [ARG...]

Runs COMMAND as a Sluice run: enqueued, started when every limit that applies has room (and a
slot of each --pool is held), with a heartbeat while it runs, finished as SUCCESS or FAILURE.
Why it waits is printed on stderr each time that changes. COMMAND gets SLUICE_RUN_ID and
SLUICE_URL in its environment (so \`sluice slot\` inside it needs no options but --pool).

options:
  --job NAME              job name (default: COMMAND's base name)
  --run-id ID             run id (default: generated, and printed)
  --tag KEY=VALUE         a tag, for tag limits (repeatable)
  --pool POOL             a pool COMMAND uses for its whole run: one slot held while it runs (repeatable)
  --priority N            queue priority (higher first)
  --lease SECONDS         the run fails and frees its capacity when no heartbeat comes for this long (default 60;
                          a heartbeat goes every third of it)
  --max-runtime SECONDS   the run fails once STARTED for longer (the dagster/max_runtime tag)
  --wait-timeout SECONDS  give up waiting after this long: cancel the run, exit 75
  --grace SECONDS         when the run is terminated elsewhere: SIGTERM to COMMAND, SIGKILL this long after (default 10)
  --url URL               the Sluice GraphQL endpoint (default $SLUICE_URL, else http://127.0.0.1:$PORT/graphql, PORT 4000)
  --token TOKEN           API token (default $SLUICE_TOKEN)
  --quiet                 print nothing of its own (errors that stop it excepted)
  --json                  print one JSON object per event on stderr: queued, waiting, admitted, slot, started,
                          terminating, finished, exit

exit codes:
  COMMAND's code   COMMAND ran and exited; 128+N when signal N ended it
  1                Sluice refused (e.g. the run ended before COMMAND could start, or --run-id names a finished run)
  2                usage error (a bad option, or input Sluice refuses as invalid)
  69               Sluice unreachable at start: nothing was enqueued
  75               --wait-timeout passed before COMMAND could start: the run was canceled
  126 / 127        COMMAND could not be run / was not found (the run is finished as FAILURE)
  129 / 130 / 143  SIGHUP / SIGINT / SIGTERM while waiting: the run was canceled
  143              the run was terminated elsewhere (API, dashboard, a timeout): COMMAND was stopped
While COMMAND runs, SIGINT, SIGTERM and SIGHUP go to COMMAND, and the run ends CANCELED when it ends.`;

const RUN_FIELDS = 'id status jobName blockedBy { message }';
const ENQUEUE = `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) {
  __typename ... on RunPayload { run { ${RUN_FIELDS} } } ... on Error { message } } }`;
const RUN = `query($id: ID!) { run(id: $id) { ${RUN_FIELDS} } }`;
const START = `mutation($runId: ID!) { markRunStarted(runId: $runId) {
  __typename ... on RunPayload { run { status } } ... on Error { message } } }`;
const FINISH = `mutation($runId: ID!, $status: RunStatus!) { markRunFinished(runId: $runId, status: $status) {
  __typename ... on RunPayload { run { status } } ... on Error { message } } }`;
const TERMINATE = `mutation($runId: ID!) { terminateRun(runId: $runId) {
  __typename ... on RunPayload { run { status } } ... on Error { message } } }`;
const HEARTBEAT = `mutation($runId: ID!) { heartbeat(runId: $runId) {
  __typename ... on RunPayload { run { status } } ... on Error { message } } }`;
export const CLAIM = `mutation($runId: ID!, $stepKey: String!, $pool: String) {
  claimStepSlot(runId: $runId, stepKey: $stepKey, pool: $pool) {
    __typename ... on StepSlotPayload { claim { granted reasons { message } } } ... on Error { message } } }`;
export const RELEASE = `mutation($runId: ID!, $stepKey: String!) { releaseStepSlot(runId: $runId, stepKey: $stepKey) {
  __typename ... on StepSlotPayload { claim { granted } } ... on Error { message } } }`;

interface RunView {
  id: string;
  status: string;
  jobName: string;
  blockedBy: Array<{ message: string }>;
}
export interface ClaimView {
  claim: { granted: boolean; reasons: Array<{ message: string }> };
}

const ENDED = new Set(['CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED']);
const ADMITTED = new Set(['STARTING', 'STARTED']);

/** The step that holds a slot of a --pool for the whole command. */
const poolStep = (pool: string) => `run:${pool}`;

function parseRun(argv: readonly string[], env: NodeJS.ProcessEnv) {
  const { values, positionals, command } = splitCommand(argv, {
    ...COMMON_OPTIONS,
    job: { type: 'string' },
    tag: { type: 'string', multiple: true },
    pool: { type: 'string', multiple: true },
    priority: { type: 'string' },
    lease: { type: 'string' },
    'max-runtime': { type: 'string' },
  });
  if (values.help) return null;
  if (positionals.length > 0)
    throw new UsageError(`unexpected ${JSON.stringify(positionals[0])}: put COMMAND after --`);
  if (command.length === 0) throw new UsageError('no COMMAND: give it after --');
  const tags = (values.tag ?? []).map((tag) => {
    const eq = tag.indexOf('=');
    if (eq <= 0) throw new UsageError(`--tag: expected KEY=VALUE, got ${JSON.stringify(tag)}`);
    return { key: tag.slice(0, eq), value: tag.slice(eq + 1) };
  });
  const maxRuntime = seconds('max-runtime', values['max-runtime']);
  if (maxRuntime !== null) {
    if (tags.some((t) => t.key === 'dagster/max_runtime')) {
      throw new UsageError('give --max-runtime or --tag dagster/max_runtime=..., not both');
    }
    tags.push({ key: 'dagster/max_runtime', value: String(maxRuntime) });
  }
  let priority: number | null = null;
  if (values.priority !== undefined) {
    priority = Number(values.priority);
    if (!/^[+-]?\d+$/.test(values.priority.trim())) {
      throw new UsageError(`--priority: expected an integer, got ${JSON.stringify(values.priority)}`);
    }
  }
  const pools = [...new Set(values.pool ?? [])].sort();
  return {
    command,
    jobName: values.job ?? basename(command[0] as string),
    runId: values['run-id'] ?? randomUUID(),
    tags,
    pools,
    priority,
    lease: seconds('lease', values.lease, true) ?? 60,
    waitTimeout: seconds('wait-timeout', values['wait-timeout']),
    grace: seconds('grace', values.grace) ?? 10,
    url: values.url ?? defaultUrl(env),
    token: values.token ?? env.SLUICE_TOKEN ?? null,
    mode: outputMode(values),
  };
}

type RunOptions = NonNullable<ReturnType<typeof parseRun>>;

export async function wrapRun(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  let options: RunOptions | null;
  try {
    options = parseRun(argv, env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`sluice run: ${error.message}\n(see sluice run --help)\n`);
    return 2;
  }
  if (options === null) {
    process.stdout.write(`${RUN_HELP}\n`);
    return 0;
  }
  return new Wrapper(options, env).run();
}

class Wrapper {
  private readonly api: SluiceApi;
  private readonly out: Output;
  private readonly inbox = new Inbox();
  private readonly watch: RunWatch;
  private status = 'QUEUED';
  private admitted = false;
  private reasonsShown = '';
  private heartbeat: NodeJS.Timeout | null = null;
  /** Set when the run ended or is being canceled elsewhere (the reason, for the output). */
  private endedElsewhere: string | null = null;
  private onEndedElsewhere: (() => void) | null = null;

  constructor(
    private readonly o: RunOptions,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.api = new SluiceApi({ url: o.url, token: o.token, actor: `sluice-run:${o.jobName}` });
    this.out = new Output(o.mode);
    this.watch = new RunWatch(this.api, o.runId, {
      status: (change) => this.inbox.push({ type: 'status', change }),
      decision: (decision) => this.inbox.push({ type: 'decision', decision }),
      refused: (error) => this.inbox.push({ type: 'refused', error }),
      dropped: () => this.inbox.push({ type: 'dropped' }),
    });
  }

  private exit(code: number, reason: string): number {
    this.stopHeartbeat();
    this.watch.close();
    this.out.emit({ event: 'exit', runId: this.o.runId, code, reason });
    return code;
  }

  async run(): Promise<number> {
    const stopCapturing = this.inbox.captureSignals();
    const stopTimeout = this.inbox.timeoutAfter(this.o.waitTimeout);
    let code: number | 'ready';
    try {
      code = await this.enqueueAndWait();
    } catch (error) {
      stopCapturing();
      throw error;
    } finally {
      stopTimeout();
    }
    if (code !== 'ready') {
      stopCapturing();
      return code;
    }
    // Once admitted, the signals are captured until COMMAND's forwarding has taken them over.
    return this.runCommand(stopCapturing);
  }

  private async enqueueAndWait(): Promise<number | 'ready'> {
    const o = this.o;
    let run: RunView;
    try {
      ({ run } = await this.api.mutate<{ run: RunView }>(
        'enqueueRun',
        ENQUEUE,
        {
          input: {
            runId: o.runId,
            jobName: o.jobName,
            tags: o.tags,
            steps: o.pools.map((pool) => ({ key: poolStep(pool), pool })),
            priority: o.priority,
            leaseSeconds: o.lease,
          },
        },
        { giveUpAt: 0 },
      ));
    } catch (error) {
      if (error instanceof Unreachable) {
        this.out.fatal(`${error.message}: nothing was enqueued`);
        return 69;
      }
      if (error instanceof Refused) {
        this.out.fatal(`Sluice refused the run: ${error.message}`);
        return error.kind === 'ValidationError' ? 2 : 1;
      }
      throw error;
    }
    if (ENDED.has(run.status)) {
      this.out.fatal(`run ${run.id} already exists and is ${run.status}: give another --run-id`);
      return 1;
    }
    this.out.emit({ event: 'queued', runId: run.id, jobName: run.jobName });
    this.showReasons(run.blockedBy);
    this.watch.start();

    let claimed = 0;
    let waitingFor: string | null = null;
    for (;;) {
      if (this.admitted && waitingFor === null) {
        // Slots are claimed one pool at a time, in name order: two runs never each hold a slot
        // the other waits for.
        const pool = o.pools[claimed];
        if (pool === undefined) return 'ready';
        const outcome = await this.claim(pool);
        if (typeof outcome === 'number') return outcome;
        if (outcome === 'granted') claimed++;
        else waitingFor = poolStep(pool);
        continue;
      }
      const event = await this.inbox.next();
      switch (event.type) {
        case 'signal':
          return this.cancel(interruptedCode(event.signal), `${event.signal} while waiting: run canceled`);
        case 'timeout':
          return this.cancel(75, `waited more than ${o.waitTimeout} s: run canceled`);
        case 'refused':
          this.out.fatal(`Sluice refused to follow run ${o.runId}: ${event.error.message}`);
          return this.cancel(1, 'cannot follow the run');
        case 'dropped':
          break;
        case 'status': {
          const outcome = await this.statusWhileWaiting(event.change);
          if (typeof outcome === 'number') return outcome;
          break;
        }
        case 'decision': {
          const d = event.decision;
          if (d.kind === 'BLOCKED' && !this.admitted) this.showReasons(d.reasons);
          if (d.stepKey === null || d.stepKey !== waitingFor) break;
          if (d.kind === 'SLOT_PENDING') this.showReasons(d.reasons, d.pool);
          if (d.kind === 'SLOT_GRANTED') {
            this.out.emit({ event: 'slot', runId: o.runId, pool: d.pool ?? '', stepKey: d.stepKey });
            waitingFor = null;
            claimed++;
          }
          break;
        }
      }
    }
  }

  private async statusWhileWaiting(change: StatusChange): Promise<number | null> {
    this.status = change.status;
    if (ENDED.has(change.status)) {
      const why = change.reason ? ` (${change.reason})` : '';
      this.out.fatal(`run ${this.o.runId} became ${change.status}${why} before COMMAND started`);
      return this.exit(143, `run ${change.status} elsewhere while waiting`);
    }
    if (change.status === 'QUEUED') {
      // Reasons recorded between the enqueue and the subscription: the run as it stands.
      const { run } = await this.api
        .retrying<{ run: RunView | null }>(RUN, { id: this.o.runId }, { stopped: () => this.inbox.interrupted })
        .catch(() => ({ run: null }));
      if (run?.status === 'QUEUED') this.showReasons(run.blockedBy);
      return null;
    }
    if (ADMITTED.has(change.status) && !this.admitted) {
      this.admitted = true;
      this.out.emit({ event: 'admitted', runId: this.o.runId });
      this.startHeartbeat();
      try {
        await this.api.mutate(
          'markRunStarted',
          START,
          { runId: this.o.runId },
          { stopped: () => this.inbox.interrupted },
        );
      } catch (error) {
        // A signal or the timeout interrupted the retries: the loop handles it next.
        if (error instanceof Unreachable && this.inbox.interrupted) return null;
        this.out.fatal(`cannot mark run ${this.o.runId} started: ${(error as Error).message}`);
        return this.cancel(1, 'could not start the run');
      }
    }
    return null;
  }

  /** Claims a slot of a --pool: granted at once, or waiting (its reasons shown). */
  private async claim(pool: string): Promise<'granted' | 'waiting' | number> {
    try {
      const { claim } = await this.api.mutate<ClaimView>(
        'claimStepSlot',
        CLAIM,
        { runId: this.o.runId, stepKey: poolStep(pool) },
        { stopped: () => this.inbox.interrupted },
      );
      if (claim.granted) {
        this.out.emit({ event: 'slot', runId: this.o.runId, pool, stepKey: poolStep(pool) });
        return 'granted';
      }
      this.showReasons(claim.reasons, pool);
      return 'waiting';
    } catch (error) {
      if (error instanceof Unreachable && this.inbox.interrupted) return 'waiting';
      // The run ended as the claim came in: the status stream says how, next.
      if (error instanceof Refused && error.kind === 'ConflictError') return 'waiting';
      this.out.fatal(`cannot claim a slot of pool ${pool}: ${(error as Error).message}`);
      return this.cancel(1, 'could not claim a slot');
    }
  }

  private showReasons(reasons: ReadonlyArray<{ message: string }>, pool: string | null = null): void {
    if (reasons.length === 0) return;
    const messages = reasons.map((r) => r.message);
    const key = `${pool}\u0000${messages.join('\u0000')}`;
    if (key === this.reasonsShown) return;
    this.reasonsShown = key;
    this.out.emit({
      event: 'waiting',
      runId: this.o.runId,
      reasons: messages,
      ...(pool === null ? {} : { pool, stepKey: poolStep(pool) }),
    });
  }

  /** Gives up a run that has not started COMMAND: withdrawn while queued, CANCELED once admitted. */
  private async cancel(code: number, reason: string): Promise<number> {
    const runId = this.o.runId;
    const giveUpAt = Date.now() + 10_000;
    try {
      let status = this.status;
      if (!this.admitted) {
        const { run } = await this.api.mutate<{ run: { status: string } }>(
          'terminateRun',
          TERMINATE,
          { runId },
          { giveUpAt },
        );
        status = run.status;
      }
      if (this.admitted || status === 'CANCELING') {
        await this.api.mutate('markRunFinished', FINISH, { runId, status: 'CANCELED' }, { giveUpAt });
      }
    } catch (error) {
      // Already ended (terminated elsewhere, or expired): nothing left to cancel.
      if (!(error instanceof Refused && error.kind === 'ConflictError')) {
        this.out.emit({
          event: 'warning',
          runId,
          message: `could not cancel run ${runId}: ${(error as Error).message}`,
        });
      }
    }
    return this.exit(code, reason);
  }

  private startHeartbeat(): void {
    const every = (this.o.lease * 1000) / 3;
    const beat = async () => {
      try {
        const { run } = await this.api.mutate<{ run: { status: string } }>(
          'heartbeat',
          HEARTBEAT,
          { runId: this.o.runId },
          { giveUpAt: Date.now() + every, stopped: () => this.heartbeat === null },
        );
        if (run.status === 'CANCELING') this.endElsewhere('is being canceled');
      } catch (error) {
        if (error instanceof Refused && error.kind === 'ConflictError') this.endElsewhere(error.message);
        else if (this.heartbeat !== null) {
          this.out.emit({
            event: 'warning',
            runId: this.o.runId,
            message: `heartbeat failed: ${(error as Error).message}`,
          });
        }
      }
    };
    this.heartbeat = setInterval(beat, every);
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  private endElsewhere(reason: string): void {
    if (this.endedElsewhere !== null) return;
    this.endedElsewhere = reason;
    this.onEndedElsewhere?.();
  }

  /** `stopCapturing`: ends the waiting phase's capture of signals, once COMMAND forwards them. */
  private async runCommand(stopCapturing: () => void): Promise<number> {
    const o = this.o;
    const runId = o.runId;
    const childEnv: NodeJS.ProcessEnv = { ...this.env, SLUICE_RUN_ID: runId, SLUICE_URL: o.url };
    if (o.token) childEnv.SLUICE_TOKEN = o.token;
    const command = new RunningCommand(o.command, childEnv);
    stopCapturing();
    if (command.child.pid !== undefined) {
      this.out.emit({ event: 'started', runId, command: o.command, pid: command.child.pid });
    }
    this.onEndedElsewhere = () => {
      this.out.emit({ event: 'terminating', runId, reason: this.endedElsewhere ?? 'ended elsewhere' });
      command.terminate(o.grace);
    };
    // A refused heartbeat may have told of the end before COMMAND started.
    if (this.endedElsewhere !== null) this.onEndedElsewhere();
    // From now on the inbox only watches for the run ending elsewhere.
    const watching = (async () => {
      for (;;) {
        const event = await this.inbox.next();
        if (event.type === 'status' && ENDED.has(event.change.status)) {
          const why = event.change.reason ? ` (${event.change.reason})` : '';
          this.status = event.change.status;
          this.endElsewhere(`became ${event.change.status}${why}`);
        }
        if (event.type === 'timeout') return;
      }
    })();
    const end = await command.ended;
    this.inbox.push({ type: 'timeout' });
    await watching;
    this.stopHeartbeat();
    if (end.spawnError) this.out.fatal(end.spawnError);

    if (this.endedElsewhere !== null) {
      // Still CANCELING (terminated without force): COMMAND has stopped, so the run can end.
      if (this.status === 'CANCELING') await this.finish('CANCELED');
      return this.exit(143, `run ${this.endedElsewhere}`);
    }
    const status = command.forwarded ? 'CANCELED' : end.code === 0 ? 'SUCCESS' : 'FAILURE';
    await this.finish(status);
    const how = end.signal ? `COMMAND ended by ${end.signal}` : `COMMAND exited ${end.code}`;
    return this.exit(end.code, how);
  }

  /** Records the run's end, retrying while the lease would still keep it alive. */
  private async finish(status: string): Promise<void> {
    try {
      await this.api.mutate(
        'markRunFinished',
        FINISH,
        { runId: this.o.runId, status },
        {
          giveUpAt: Date.now() + this.o.lease * 1000,
          onRetry: (error) =>
            this.out.emit({ event: 'warning', runId: this.o.runId, message: `${error.message}; retrying` }),
        },
      );
      this.out.emit({ event: 'finished', runId: this.o.runId, status });
    } catch (error) {
      this.out.emit({
        event: 'warning',
        runId: this.o.runId,
        message: `could not record run ${this.o.runId} as ${status}: ${(error as Error).message}`,
      });
    }
  }
}
