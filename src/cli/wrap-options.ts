/** Options shared by `sluice run` and `sluice slot`, and how a bad one is told (exit 2). */
import { parseArgs } from 'node:util';
import type { OutputMode } from './wrap-output.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

type Spec = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

export const COMMON_OPTIONS = {
  'run-id': { type: 'string' },
  'wait-timeout': { type: 'string' },
  grace: { type: 'string' },
  url: { type: 'string' },
  token: { type: 'string' },
  quiet: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Spec;

/** Splits `[OPTION...] -- COMMAND [ARG...]` and parses the options strictly. */
export function splitCommand<O extends Spec>(argv: readonly string[], options: O) {
  const dash = argv.indexOf('--');
  const own = dash === -1 ? [...argv] : argv.slice(0, dash);
  const command = dash === -1 ? [] : argv.slice(dash + 1);
  try {
    const { values, positionals } = parseArgs({ args: own, options, allowPositionals: true, strict: true });
    return { values, positionals, command };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** A number of seconds from an option: above 0, an integer when the server needs one. */
export function seconds(name: string, value: string | undefined, integer = false): number | null {
  if (value === undefined) return null;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(
      `--${name}: expected ${integer ? 'a whole' : 'a'} number of seconds above 0, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

export function outputMode(values: { quiet?: boolean; json?: boolean }): OutputMode {
  if (values.quiet && values.json) throw new UsageError('give --quiet or --json, not both');
  return values.json ? 'json' : values.quiet ? 'quiet' : 'text';
}

export function defaultUrl(env: NodeJS.ProcessEnv): string {
  return env.SLUICE_URL || `http://127.0.0.1:${env.PORT || 4000}/graphql`;
}
