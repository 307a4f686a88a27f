/** The `sluice` command line: serve, and edit limits over GraphQL like `dagster instance concurrency`. */
import { parseArgs } from 'node:util';
import { startServer } from '../server.js';
import { readSettings } from '../settings.js';
import { snapshot, why } from './audit.js';
import { CliError } from './client.js';
import { concurrencyDelete, concurrencyGet, concurrencySet } from './concurrency.js';

const USAGE = `usage:
  sluice serve                         serve the API (settings: PORT, HOST, EVENT_STORE_URL, CONCURRENCY_CONFIG)
  sluice concurrency get [POOL|--all]  show pools: in use / limit
  sluice concurrency set POOL LIMIT    set a pool's limit
  sluice concurrency delete POOL       remove a pool's own limit (the default applies again)
  sluice why RUN_ID                    the run's timeline: every wait with its reasons and duration
  sluice snapshot [--at TIME | --position N]
                                       the queue, runs in progress, limits and pools as they were then
options:
  --url URL   the Sluice GraphQL endpoint (default http://127.0.0.1:$PORT/graphql, PORT defaulting to 4000)`;

async function serve(): Promise<void> {
  const server = await startServer(readSettings());
  console.log(
    `sluice serving ${server.url} (GraphiQL there), dashboard at ${new URL('/', server.url)}, store ${server.store.description}`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: finishing requests in flight and closing the store`);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function parseOptions(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      all: { type: 'boolean' },
      at: { type: 'string' },
      position: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

export async function runCli(argv: string[], env = process.env): Promise<string | null> {
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
  const values = parsed.values;
  const positionals = parsed.positionals.map((p) => negative.get(p) ?? p);
  const url = values.url ?? `http://127.0.0.1:${env.PORT || 4000}/graphql`;
  const [command, sub, ...rest] = positionals;
  if (values.help || command === undefined) return USAGE;
  if (command === 'serve') {
    await serve();
    return null;
  }
  if (command === 'concurrency') {
    if (sub === 'get' && rest.length <= 1) return concurrencyGet(url, values.all ? undefined : rest[0]);
    if (sub === 'set' && rest.length === 2) return concurrencySet(url, rest[0] as string, rest[1] as string);
    if (sub === 'delete' && rest.length === 1) return concurrencyDelete(url, rest[0] as string);
  }
  if (command === 'why' && sub !== undefined && rest.length === 0) return why(url, sub);
  if (command === 'snapshot' && sub === undefined) {
    if (values.at !== undefined && values.position !== undefined)
      throw new CliError('give --at or --position, not both', 2);
    return snapshot(url, { at: values.at, position: values.position });
  }
  throw new CliError(`unknown command: ${positionals.join(' ')}\n${USAGE}`, 2);
}
