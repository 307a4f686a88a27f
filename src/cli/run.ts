/**
 * The `sluice` command line: serve, and read and edit over GraphQL like `dagster instance
 * concurrency`. Every command is one entry in COMMANDS (see command.ts); usage, --help, --json,
 * --version, argument counts and exit codes (2: usage, 1: the server said no) are handled here.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_SETTINGS } from '../settings.js';
import { snapshot, why } from './audit.js';
import { backup } from './backup.js';
import { CliError, useToken } from './client.js';
import { type CliCommand, type CommandContext, output } from './command.js';
import {
  concurrencyDelete,
  concurrencyFree,
  concurrencyGet,
  concurrencyHistory,
  concurrencySet,
} from './concurrency.js';
import { report } from './report.js';
import { queue, runs } from './runs.js';
import { tokenCreate } from './token.js';
import { graceOption, verify } from './verify.js';
import { wrapRun } from './wrap-run.js';
import { wrapSlot } from './wrap-slot.js';

const str = (value: string | boolean | undefined) => (typeof value === 'string' ? value : undefined);

export const COMMANDS: CliCommand[] = [
  {
    words: ['serve'],
    args: '',
    minArgs: 0,
    maxArgs: 0,
    summary: 'serve the API (settings: PORT, HOST, EVENT_STORE_URL, CONCURRENCY_CONFIG, LOG_LEVEL)',
    details: 'What `npm start` runs. SIGTERM or SIGINT finish the requests in flight and exit 0.',
    run: async ({ env }) => {
      await serve(env);
      return null;
    },
  },
  {
    words: ['concurrency', 'get'],
    args: '[POOL|--all]',
    minArgs: 0,
    maxArgs: 1,
    options: { all: { type: 'boolean', help: 'every pool (the default without POOL)' } },
    summary: 'show pools: in use / limit',
    run: ({ url, args, options }) => concurrencyGet(url, options.all ? undefined : args[0]),
  },
  {
    words: ['concurrency', 'set'],
    args: 'POOL LIMIT',
    minArgs: 2,
    maxArgs: 2,
    summary: "set a pool's limit",
    run: ({ url, args }) => concurrencySet(url, args[0] as string, args[1] as string),
  },
  {
    words: ['concurrency', 'delete'],
    args: 'POOL',
    minArgs: 1,
    maxArgs: 1,
    summary: "remove a pool's own limit (the default applies again)",
    run: ({ url, args }) => concurrencyDelete(url, args[0] as string),
  },
  {
    words: ['concurrency', 'free'],
    args: 'RUN_ID [STEP]',
    minArgs: 1,
    maxArgs: 2,
    summary: "free a run's slots (or one step's) without ending the run",
    details: 'Like Dagster\'s "free concurrency slots": the freed slots go at once to the steps waiting for them.',
    run: ({ url, args }) => concurrencyFree(url, args[0] as string, args[1]),
  },
  {
    words: ['concurrency', 'history'],
    args: '[POOL]',
    minArgs: 0,
    maxArgs: 1,
    summary: 'every limit edit: when, who, before → after',
    details: "With POOL, only the edits of that pool's own limit.",
    run: ({ url, args }) => concurrencyHistory(url, args[0]),
  },
  {
    words: ['queue'],
    args: '',
    minArgs: 0,
    maxArgs: 0,
    summary: 'the queued runs in admission order, each with what holds it',
    run: ({ url }) => queue(url),
  },
  {
    words: ['runs'],
    args: '[--status S]',
    minArgs: 0,
    maxArgs: 0,
    options: { status: { type: 'string', help: 'only runs in status S (or S1,S2,...), e.g. QUEUED or FAILURE' } },
    summary: 'every run in enqueue order, with its status',
    run: ({ url, options }) => runs(url, str(options.status)),
  },
  {
    words: ['why'],
    args: 'RUN_ID',
    minArgs: 1,
    maxArgs: 1,
    summary: "the run's timeline: every wait with its reasons and duration",
    run: ({ url, args }) => why(url, args[0] as string),
  },
  {
    words: ['snapshot'],
    args: '[--at TIME | --position N]',
    minArgs: 0,
    maxArgs: 0,
    options: {
      at: { type: 'string', help: 'as it was at this instant, e.g. 2026-11-27T03:00:00Z' },
      position: { type: 'string', help: 'as it was right after the event at this log position' },
    },
    summary: 'the queue, runs in progress, limits and pools as they were then',
    run: ({ url, options }) => {
      if (options.at !== undefined && options.position !== undefined) {
        throw new CliError('give --at or --position, not both', 2);
      }
      return snapshot(url, { at: str(options.at), position: str(options.position) });
    },
  },
  {
    words: ['report'],
    args: '[--from TIME] [--to TIME]',
    minArgs: 0,
    maxArgs: 0,
    options: {
      from: { type: 'string', help: 'start of the window (default: a day before --to)' },
      to: { type: 'string', help: 'end of the window (default: now)' },
    },
    summary: "where the waiting went in a window: run-seconds queued and each limit's share",
    details: 'held: the limit was among those holding a run; alone: it alone held it (what raising it alone frees).',
    run: ({ url, options }) => report(url, str(options.from), str(options.to)),
  },
  {
    words: ['token', 'create'],
    args: 'NAME --role viewer|worker|admin [--file PATH]',
    minArgs: 1,
    maxArgs: 1,
    options: {
      role: { type: 'string', help: 'viewer, worker or admin' },
      file: { type: 'string', help: 'the tokens file to append to (default $SLUICE_TOKENS_FILE)' },
    },
    summary: 'make a token, print it once, append its hash to the tokens file',
    details: 'A running server reads the file again on SIGHUP.',
    run: async ({ env, args, options }) => {
      const created = await tokenCreate(
        args[0] as string,
        str(options.role),
        str(options.file) ?? env.SLUICE_TOKENS_FILE,
      );
      console.error(
        `added ${created.line.split(' ').slice(0, 2).join(' ')} to ${created.file}; the token below is shown once, keep it secret (a running server reads the file again on SIGHUP)`,
      );
      return output(created.token, { name: args[0], file: created.file, token: created.token });
    },
  },
  {
    words: ['backup'],
    args: 'PATH',
    minArgs: 1,
    maxArgs: 1,
    summary: 'copy the SQLite log (EVENT_STORE_URL) to PATH, consistent, while servers serve',
    details: 'Restoring is starting a server on the copy (EVENT_STORE_URL=sqlite:PATH).',
    run: async ({ env, args }) => {
      const text = await backup(env.EVENT_STORE_URL || DEFAULT_SETTINGS.eventStoreUrl, args[0] as string);
      return output(text, { backup: args[0] });
    },
  },
  {
    words: ['verify'],
    args: '[STORE_URL]',
    minArgs: 0,
    maxArgs: 1,
    options: {
      grace: { type: 'string', help: "seconds past a run's deadline the log may go on without ending it (default 60)" },
    },
    summary:
      'check a whole log (STORE_URL, default EVENT_STORE_URL) from the record alone; exit 1 at the first broken rule',
    details:
      'Read-only, so it can run beside live servers. Checks: no run admitted over a limit in force at its position (runs, tags, per-value tags, pools at RUN and OP granularity, the root-step hold), no step slot over its pool or its run, every run ends at most once, no in-progress run left past its deadline, positions increasing (and gapless in SQLite), revisions gapless, event times never backwards, every event of a known type and schema.',
    run: async ({ env, args, options }) =>
      verify(args[0] ?? (env.EVENT_STORE_URL || DEFAULT_SETTINGS.eventStoreUrl), graceOption(str(options.grace))),
  },
];

const GLOBAL_OPTIONS = {
  url: {
    type: 'string',
    help: 'the Sluice GraphQL endpoint (default http://127.0.0.1:$PORT/graphql, PORT defaulting to 4000)',
  },
  token: { type: 'string', help: 'sent as Authorization: Bearer TOKEN (default $SLUICE_TOKEN)' },
  json: { type: 'boolean', help: 'answer in JSON instead of text' },
  help: { type: 'boolean', help: 'show the usage' },
  version: { type: 'boolean', help: "show Sluice's version" },
} as const;

const commandLine = (c: CliCommand) => `sluice ${[...c.words, c.args].filter(Boolean).join(' ')}`;

function usageOf(commands: readonly CliCommand[]): string {
  const lines = commands.map((c) => {
    const line = `  ${commandLine(c)}`;
    return line.length < 39 ? `${line.padEnd(39)}${c.summary}` : `${line}\n${' '.repeat(39)}${c.summary}`;
  });
  const options = Object.entries(GLOBAL_OPTIONS).map(([name, o]) => `  --${name.padEnd(9)}${o.help}`);
  const wrappers = [
    '  sluice run [OPTIONS] -- COMMAND      run COMMAND as a Sluice run, when the limits allow (sluice run --help)',
    '  sluice slot --pool POOL -- COMMAND   inside a run, hold a slot of POOL while COMMAND runs (sluice slot --help)',
  ];
  return ['usage:', ...lines, ...wrappers, 'options (every command):', ...options].join('\n');
}

export const USAGE = usageOf(COMMANDS);

function helpOf(command: CliCommand): string {
  const lines = [`usage: ${commandLine(command)}`, `  ${command.summary}`];
  if (command.details) lines.push(`  ${command.details}`);
  const own = Object.entries(command.options ?? {});
  if (own.length > 0) lines.push('options:', ...own.map(([name, o]) => `  --${name.padEnd(9)}${o.help}`));
  lines.push('  --json, --url URL, --help: as for every command (sluice --help)');
  return lines.join('\n');
}

export function version(): string {
  // From src/cli (tsx) the package is two levels up; from dist/src/cli, three.
  for (const path of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'sluice' && pkg.version) return pkg.version;
    } catch {
      // Not there: try the next place.
    }
  }
  return 'unknown';
}

async function serve(env: Record<string, string | undefined>): Promise<void> {
  // Loaded here, not at the top: `sluice run` and the other client commands start faster without the server.
  const [{ startServer }, { readSettings }, { createLogger }] = await Promise.all([
    import('../server.js'),
    import('../settings.js'),
    import('../log/logger.js'),
  ]);
  const settings = readSettings(env);
  const logger = createLogger({ level: settings.logLevel });
  // The server logs its start (address, store) as a structured line.
  const server = await startServer(settings, logger);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `${signal}: finishing requests in flight and closing the store`);
    const force = setTimeout(() => {
      logger.error({ signal }, 'still stopping after 10 s: exiting anyway');
      process.exit(1);
    }, 10_000);
    force.unref();
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, `stopping failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGHUP', () => {
    server.reloadTokens().then(
      (message) => console.log(`SIGHUP: ${message}`),
      (error: unknown) => console.error(`SIGHUP: kept the tokens in force: ${(error as Error).message}`),
    );
  });
  process.on('SIGHUP', () => {
    server.reloadTokens().then(
      (message) => logger.info({ signal: 'SIGHUP' }, `SIGHUP: ${message}`),
      (error: unknown) =>
        logger.error({ signal: 'SIGHUP' }, `SIGHUP: kept the tokens in force: ${(error as Error).message}`),
    );
  });
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function parseOptions(args: string[]) {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, o] of Object.entries(GLOBAL_OPTIONS)) options[name] ??= { type: o.type };
  for (const command of COMMANDS)
    for (const [name, o] of Object.entries(command.options ?? {})) options[name] = { type: o.type };
  return parseArgs({ args, allowPositionals: true, options });
}

/** The command the words select: the longest match of its words at the start. */
function find(positionals: readonly string[]): CliCommand | undefined {
  let best: CliCommand | undefined;
  for (const command of COMMANDS) {
    const matches = command.words.every((word, i) => positionals[i] === word);
    if (matches && (!best || command.words.length > best.words.length)) best = command;
  }
  return best;
}

/** Runs a command line; answers what to print, or throws CliError (exit code 2: usage). */
export async function runCli(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<string | null> {
  // The wrappers own their options and exit with COMMAND's code.
  if (argv[0] === 'run') process.exit(await wrapRun(argv.slice(1), env));
  if (argv[0] === 'slot') process.exit(await wrapSlot(argv.slice(1), env));
  // A negative LIMIT (`set db -1`) is a value, not an option: the server explains why it is refused.
  const negative = new Map<string, string>();
  const args = argv.map((arg, i) => {
    if (!/^-\d+$/.test(arg)) return arg;
    const placeholder = `\u0000${i}`;
    negative.set(placeholder, arg);
    return placeholder;
  });
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(args);
  } catch (error) {
    throw new CliError(`${(error as Error).message}\n${USAGE}`, 2);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const positionals = parsed.positionals.map((p) => negative.get(p) ?? p);
  if (values.version) return values.json ? JSON.stringify({ version: version() }) : `sluice ${version()}`;
  if (positionals.length === 0) return USAGE;

  const command = find(positionals);
  if (!command) {
    // A group word alone (`sluice concurrency`) or with an unknown sub-command: show that group.
    const group = COMMANDS.filter((c) => c.words.length > 1 && c.words[0] === positionals[0]);
    if (group.length > 0) {
      if (values.help && positionals.length === 1) return usageOf(group);
      throw new CliError(`unknown command: sluice ${positionals.join(' ')}\n${usageOf(group)}`, 2);
    }
    throw new CliError(`unknown command: sluice ${positionals.join(' ')}\n${USAGE}`, 2);
  }
  if (values.help) return helpOf(command);
  const own = new Set([...Object.keys(GLOBAL_OPTIONS), ...Object.keys(command.options ?? {})]);
  for (const name of Object.keys(values)) {
    if (!own.has(name))
      throw new CliError(`sluice ${command.words.join(' ')} takes no --${name}\n${helpOf(command)}`, 2);
  }
  const rest = positionals.slice(command.words.length);
  if (rest.length < command.minArgs || rest.length > command.maxArgs) {
    throw new CliError(helpOf(command), 2);
  }
  useToken(str(values.token) ?? env.SLUICE_TOKEN);
  const context: CommandContext = {
    url: str(values.url) ?? `http://127.0.0.1:${env.PORT || 4000}/graphql`,
    args: rest,
    options: values,
    env,
  };
  const result = await command.run(context);
  if (result === null) return null;
  return values.json ? JSON.stringify(result.json, null, 2) : result.text;
}
