/**
 * What a `sluice` command is, so that adding one is adding an entry to the table in run.ts:
 * its words, its arguments, one line for the usage, and a function answering both as text and
 * as JSON (`--json`). The dispatcher does the rest: --help, argument counts, exit codes.
 */

/** What a command answers: lines for a person, and the same facts as JSON for a script. */
export interface CommandOutput {
  text: string;
  json: unknown;
}

export interface CommandContext {
  /** The Sluice GraphQL endpoint. */
  url: string;
  /** The arguments after the command's words. */
  args: string[];
  /** Option values, by option name. */
  options: Record<string, string | boolean | undefined>;
  env: Record<string, string | undefined>;
}

export interface CliCommand {
  /** The words that select it, e.g. ['concurrency', 'set']. */
  words: string[];
  /** Its arguments as the usage shows them, e.g. 'POOL LIMIT' or '[POOL]'. */
  args: string;
  minArgs: number;
  maxArgs: number;
  /** Options of its own, beyond --url, --json and --help. */
  options?: Record<string, { type: 'string' | 'boolean'; help: string }>;
  /** One line for the usage. */
  summary: string;
  /** More lines for `sluice COMMAND --help`. */
  details?: string;
  /** Null: the command printed what it had to (serve). */
  run(context: CommandContext): Promise<CommandOutput | null>;
}

export const output = (text: string, json: unknown): CommandOutput => ({ text, json });
