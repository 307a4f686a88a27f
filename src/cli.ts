#!/usr/bin/env node
/** Entry point of the `sluice` command; the commands live in src/cli/. */
import { CliError } from './cli/client.js';
import { runCli } from './cli/run.js';

runCli(process.argv.slice(2)).then(
  (output) => {
    if (output !== null) console.log(output);
  },
  (error: unknown) => {
    if (error instanceof CliError) {
      console.error(error.message);
      process.exit(error.exitCode);
    }
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
