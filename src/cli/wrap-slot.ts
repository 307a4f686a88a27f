/**
 * `sluice slot --pool POOL [--step KEY] [--run-id ID] -- COMMAND [ARG...]`: inside a run
 * (SLUICE_RUN_ID), holds a slot of POOL while COMMAND runs. The claim adds the step to the run
 * when it does not declare it, so a shell job needs no list of steps up front.
 */
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { RunWatch } from './run-watch.js';
import { Refused, SluiceApi, Unreachable } from './wrap-api.js';
import { RunningCommand } from './wrap-command.js';
import { Inbox, interruptedCode } from './wrap-inbox.js';
import { COMMON_OPTIONS, defaultUrl, outputMode, seconds, splitCommand, UsageError } from './wrap-options.js';
import { Output } from './wrap-output.js';
import { CLAIM, type ClaimView, RELEASE } from './wrap-run.js';

export const SLOT_HELP = `usage: sluice slot --pool POOL [--step KEY] [--run-id ID] [--wait-timeout SECONDS] [--grace SECONDS]
                  [--url URL] [--token TOKEN] [--quiet | --json] -- COMMAND [ARG...]

Inside a run (the run id from --run-id, else $SLUICE_RUN_ID, which \`sluice run\` sets), claims a
slot of POOL for one step, waits for it (why, on stderr), runs COMMAND, releases the slot and exits
with COMMAND's code. A step the run did not declare is added to it in POOL.

options:
  --pool POOL             the pool (required)
  --step KEY              the step's key (default: COMMAND's base name and a random suffix)
  --run-id ID             the run (default $SLUICE_RUN_ID)
  --wait-timeout SECONDS  give up waiting for the slot after this long: withdraw the claim, exit 75
  --grace SECONDS         when the run is terminated elsewhere: SIGTERM to COMMAND, SIGKILL this long after (default 10)
  --url URL               default $SLUICE_URL, else http://127.0.0.1:$PORT/graphql
  --token TOKEN           default $SLUICE_TOKEN
  --quiet | --json        as for sluice run

exit codes: COMMAND's code (128+N for signal N); 1 Sluice refused the claim (e.g. the run is not
STARTING or STARTED); 2 usage error; 69 Sluice unreachable at start; 75 --wait-timeout; 129 / 130 / 143
a signal while waiting; 143 the run ended elsewhere (COMMAND was stopped).
Do not give \`sluice slot\` a pool its \`sluice run\` already holds with --pool under a limit of 1: the run
holds that slot for its whole command, so the step would wait for itself.`;

function parseSlot(argv: readonly string[], env: NodeJS.ProcessEnv) {
  const { values, positionals, command } = splitCommand(argv, {
    ...COMMON_OPTIONS,
    pool: { type: 'string' },
    step: { type: 'string' },
  });
  if (values.help) return null;
  if (positionals.length > 0)
    throw new UsageError(`unexpected ${JSON.stringify(positionals[0])}: put COMMAND after --`);
  if (command.length === 0) throw new UsageError('no COMMAND: give it after --');
  if (!values.pool) throw new UsageError('--pool POOL is required');
  const runId = values['run-id'] ?? env.SLUICE_RUN_ID;
  if (!runId) throw new UsageError('no run: give --run-id, or run inside `sluice run` (SLUICE_RUN_ID)');
  return {
    command,
    pool: values.pool,
    stepKey: values.step ?? `${basename(command[0] as string)}-${randomUUID().slice(0, 8)}`,
    runId,
    waitTimeout: seconds('wait-timeout', values['wait-timeout']),
    grace: seconds('grace', values.grace) ?? 10,
    url: values.url ?? defaultUrl(env),
    token: values.token ?? env.SLUICE_TOKEN ?? null,
    mode: outputMode(values),
  };
}

type SlotOptions = NonNullable<ReturnType<typeof parseSlot>>;

const ENDED = new Set(['CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED']);

export async function wrapSlot(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  let options: SlotOptions | null;
  try {
    options = parseSlot(argv, env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`sluice slot: ${error.message}\n(see sluice slot --help)\n`);
    return 2;
  }
  if (options === null) {
    process.stdout.write(`${SLOT_HELP}\n`);
    return 0;
  }
  return holdSlot(options, env);
}

async function holdSlot(o: SlotOptions, env: NodeJS.ProcessEnv): Promise<number> {
  const api = new SluiceApi({ url: o.url, token: o.token, actor: `sluice-slot:${o.stepKey}` });
  const out = new Output(o.mode);
  const inbox = new Inbox();
  const { runId, pool, stepKey } = o;
  const watch = new RunWatch(api, runId, {
    status: (change) => inbox.push({ type: 'status', change }),
    decision: (decision) => inbox.push({ type: 'decision', decision }),
    refused: (error) => inbox.push({ type: 'refused', error }),
    dropped: () => inbox.push({ type: 'dropped' }),
  });
  const exit = (code: number, reason: string) => {
    watch.close();
    out.emit({ event: 'exit', runId, code, reason });
    return code;
  };
  const claim = (retry: Parameters<SluiceApi['retrying']>[2]) =>
    api.mutate<ClaimView>('claimStepSlot', CLAIM, { runId, stepKey, pool }, retry);
  const release = async () => {
    try {
      await api.mutate('releaseStepSlot', RELEASE, { runId, stepKey }, { giveUpAt: Date.now() + 10_000 });
    } catch (error) {
      // Ended runs have released every slot already.
      if (!(error instanceof Refused && error.kind === 'ConflictError')) {
        out.emit({ event: 'warning', runId, message: `could not release the slot: ${(error as Error).message}` });
      }
    }
  };
  const shown = { reasons: '' };
  const showReasons = (reasons: ReadonlyArray<{ message: string }>) => {
    const messages = reasons.map((r) => r.message);
    if (messages.length === 0 || messages.join('\u0000') === shown.reasons) return;
    shown.reasons = messages.join('\u0000');
    out.emit({ event: 'waiting', runId, reasons: messages, pool, stepKey });
  };

  let granted: boolean;
  try {
    const first = await claim({ giveUpAt: 0 });
    granted = first.claim.granted;
    if (!granted) showReasons(first.claim.reasons);
  } catch (error) {
    if (error instanceof Unreachable) {
      out.fatal(`${error.message}: no slot claimed`);
      return 69;
    }
    if (error instanceof Refused) {
      out.fatal(`Sluice refused the claim: ${error.message}`);
      return error.kind === 'ValidationError' ? 2 : 1;
    }
    throw error;
  }

  const stopCapturing = inbox.captureSignals();
  const stopTimeout = inbox.timeoutAfter(o.waitTimeout);
  watch.start();
  let following = false;
  try {
    while (!granted) {
      const event = await inbox.next();
      switch (event.type) {
        case 'signal':
          await release();
          return exit(interruptedCode(event.signal), `${event.signal} while waiting: claim withdrawn`);
        case 'timeout':
          await release();
          return exit(75, `waited more than ${o.waitTimeout} s: claim withdrawn`);
        case 'refused':
          out.fatal(`Sluice refused to follow run ${runId}: ${event.error.message}`);
          await release();
          return exit(1, 'cannot follow the run');
        case 'dropped':
          break;
        case 'status':
          if (ENDED.has(event.change.status)) {
            out.fatal(`run ${runId} became ${event.change.status} while step ${stepKey} waited`);
            return exit(143, `run ${event.change.status} elsewhere while waiting`);
          }
          if (!following) {
            // Decisions are followed from here on; a grant made before is in the claim as it stands.
            following = true;
            try {
              const again = await claim({ stopped: () => inbox.interrupted });
              if (again.claim.granted) granted = true;
            } catch (error) {
              if (!(error instanceof Unreachable || error instanceof Refused)) throw error;
            }
          }
          break;
        case 'decision': {
          const d = event.decision;
          if (d.stepKey !== stepKey) break;
          if (d.kind === 'SLOT_PENDING') showReasons(d.reasons);
          if (d.kind === 'SLOT_GRANTED') granted = true;
          break;
        }
      }
    }
  } finally {
    stopTimeout();
    // Once granted, the signals are captured until COMMAND's forwarding has taken them over.
    if (!granted) stopCapturing();
  }
  out.emit({ event: 'slot', runId, pool, stepKey });

  const command = new RunningCommand(o.command, env);
  stopCapturing();
  if (command.child.pid !== undefined)
    out.emit({ event: 'started', runId, command: o.command, pid: command.child.pid });
  let endedElsewhere: string | null = null;
  const watching = (async () => {
    for (;;) {
      const event = await inbox.next();
      if (event.type === 'status' && ENDED.has(event.change.status) && endedElsewhere === null) {
        endedElsewhere = `became ${event.change.status}`;
        out.emit({ event: 'terminating', runId, reason: endedElsewhere });
        command.terminate(o.grace);
      }
      if (event.type === 'timeout') return;
    }
  })();
  const end = await command.ended;
  inbox.push({ type: 'timeout' });
  await watching;
  if (end.spawnError) out.fatal(end.spawnError);
  if (endedElsewhere !== null) return exit(143, `run ${endedElsewhere}`);
  await release();
  return exit(end.code, end.signal ? `COMMAND ended by ${end.signal}` : `COMMAND exited ${end.code}`);
}
