#!/usr/bin/env node
/**
 * The two test suites of `npm test`, side by side: vitest (the server, the CLI, the dashboard) and
 * the Python packages' checks and tests (scripts/test-python.mjs). They run at once because each
 * spends much of its time waiting on servers and subprocesses it started, and one after the other
 * they would pass the 12 minutes a test run is allowed. vitest prints as it goes; the Python
 * suite's output is kept and printed whole when it ends, so neither is interleaved with the other.
 * Fails when either fails. Only node's own modules.
 */
import { spawn } from 'node:child_process';

function run(name, command, args, { buffered }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(command, args, { stdio: buffered ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    const chunks = [];
    if (buffered) {
      child.stdout.on('data', (chunk) => chunks.push(chunk));
      child.stderr.on('data', (chunk) => chunks.push(chunk));
    }
    child.on('close', (code, signal) => {
      const seconds = Math.round((Date.now() - started) / 1000);
      if (buffered) {
        process.stdout.write(`\n===== ${name} (output kept while the other suite ran) =====\n`);
        process.stdout.write(Buffer.concat(chunks));
      }
      const ok = code === 0;
      console.log(`test-suites: ${name} ${ok ? 'passed' : `failed (${signal ?? `exit ${code}`})`} in ${seconds} s`);
      resolve(ok);
    });
  });
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const [python, node] = await Promise.all([
  run('Python suites', npm, ['run', '--silent', 'test:python'], { buffered: true }),
  run('vitest', npm, ['run', '--silent', 'test:node'], { buffered: false }),
]);
process.exit(python && node ? 0 : 1);
