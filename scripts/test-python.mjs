#!/usr/bin/env node
/**
 * `npm run test:python`: prepares `.venv` (scripts/python-env.mjs), then for each Python package
 * of the repository (clients/python, and integrations/dagster when present): ruff check, ruff
 * format --check, pyright, and pytest once per test folder its pyproject names (`testpaths`).
 * Every step runs even after a failure, so one run shows all of them; the exit code is 1 when any
 * failed.
 *
 * The pytest runs go side by side, `PYTHON_TEST_LANES` at a time (default 2), longest first: most
 * of their time is spent starting Dagster's run workers and step processes and waiting on them,
 * and one after the other they would pass the 12 minutes `npm test` is allowed. Each step's output
 * is kept and printed whole when it ends, so steps are never interleaved.
 *
 * pytest's exit code 5 (it collected no test) is neither a pass nor a crash: it is reported by
 * name, and fails the run under CI=true, where a package whose tests vanished must not look green.
 * Only node's own modules.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { preparePythonEnv, ROOT, VENV_BIN } from './python-env.mjs';

const NO_TESTS_COLLECTED = 5;
const ci = process.env.CI === 'true';
const lanes = Math.max(1, Number.parseInt(process.env.PYTHON_TEST_LANES ?? '2', 10) || 2);

let packages;
try {
  packages = preparePythonEnv();
} catch (error) {
  console.error(`test-python: ${error.message}`);
  process.exit(1);
}

const python = join(VENV_BIN, 'python');
// The fixtures start this checkout's server; a SLUICE_REPO set for another one is not ours. The
// venv's commands come first on PATH, as an activated venv has them: Dagster's executors start
// its `dagster` command for run workers and steps.
const env = {
  ...process.env,
  SLUICE_REPO: ROOT,
  VIRTUAL_ENV: join(ROOT, '.venv'),
  PATH: `${VENV_BIN}${delimiter}${process.env.PATH ?? ''}`,
};

/** The test folders a package's pyproject.toml names under [tool.pytest.ini_options]. */
function testPaths(dir) {
  const text = readFileSync(join(ROOT, dir, 'pyproject.toml'), 'utf8');
  const found = /^testpaths\s*=\s*\[([^\]]*)\]/m.exec(text);
  if (!found) return [];
  return [...found[1].matchAll(/"([^"]+)"/g)].map((m) => m[1]);
}

function runStep({ dir, name, command, args, pytest }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(command, args, { cwd: join(ROOT, dir), env, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks = [];
    child.stdout.on('data', (chunk) => chunks.push(chunk));
    child.stderr.on('data', (chunk) => chunks.push(chunk));
    child.on('close', (status, signal) => {
      const seconds = Math.round((Date.now() - started) / 1000);
      process.stdout.write(`\ntest-python: ${dir}: ${name} (${seconds} s)\n`);
      process.stdout.write(Buffer.concat(chunks));
      if (pytest && status === NO_TESTS_COLLECTED) {
        console.error(`test-python: ${dir}: ${name} collected no tests${ci ? ' (CI=true: a failure)' : ''}`);
        resolve(ci ? `${dir}: ${name} collected no tests` : null);
      } else {
        resolve(status === 0 ? null : `${dir}: ${name} (${signal ?? `exit ${status}`})`);
      }
    });
  });
}

const checks = packages.flatMap((dir) => [
  { dir, name: 'ruff check', command: join(VENV_BIN, 'ruff'), args: ['check', '.'] },
  { dir, name: 'ruff format --check', command: join(VENV_BIN, 'ruff'), args: ['format', '--check', '.'] },
  { dir, name: 'pyright', command: join(VENV_BIN, 'pyright'), args: ['--pythonpath', python] },
]);
const pytests = packages.flatMap((dir) => {
  const paths = testPaths(dir);
  // Several pytest processes in one folder would share its cache: none is kept for split runs.
  const split = paths.length > 1;
  return (split ? paths : [null]).map((path) => ({
    dir,
    name: path ? `pytest ${path}` : 'pytest',
    command: python,
    args: ['-m', 'pytest', ...(path ? [path, '-p', 'no:cacheprovider'] : [])],
    pytest: true,
  }));
});
// Longest first: the Dagster package's folders run real Dagster runs; the checks are quick.
const queue = [...pytests.slice().reverse(), ...checks];

const failures = [];
async function lane() {
  for (let step = queue.shift(); step; step = queue.shift()) {
    const failure = await runStep(step);
    if (failure) failures.push(failure);
  }
}
await Promise.all(Array.from({ length: lanes }, lane));

if (failures.length > 0) {
  console.error(`\ntest-python: failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log(`\ntest-python: every check passed in ${packages.join(', ')}`);
