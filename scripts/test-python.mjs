#!/usr/bin/env node
/**
 * `npm run test:python`: prepares `.venv` (scripts/python-env.mjs), then for each Python package
 * of the repository (clients/python, and integrations/dagster when present): ruff check, ruff
 * format --check, pyright, pytest. Every step runs even after a failure, so one run shows all of
 * them; the exit code is 1 when any failed.
 *
 * pytest's exit code 5 (it collected no test) is neither a pass nor a crash: it is reported by
 * name, and fails the run under CI=true, where a package whose tests vanished must not look green.
 * Only node's own modules.
 */
import { spawnSync } from 'node:child_process';
import { delimiter, join } from 'node:path';
import { preparePythonEnv, ROOT, VENV_BIN } from './python-env.mjs';

const NO_TESTS_COLLECTED = 5;
const ci = process.env.CI === 'true';

let packages;
try {
  packages = preparePythonEnv();
} catch (error) {
  console.error(`test-python: ${error.message}`);
  process.exit(1);
}

const failures = [];
const python = join(VENV_BIN, 'python');
for (const dir of packages) {
  const cwd = join(ROOT, dir);
  const steps = [
    ['ruff check', [join(VENV_BIN, 'ruff'), 'check', '.']],
    ['ruff format --check', [join(VENV_BIN, 'ruff'), 'format', '--check', '.']],
    ['pyright', [join(VENV_BIN, 'pyright'), '--pythonpath', python]],
    ['pytest', [python, '-m', 'pytest']],
  ];
  for (const [name, [command, ...args]] of steps) {
    console.log(`\ntest-python: ${dir}: ${name}`);
    const { status, signal } = spawnSync(command, args, {
      cwd,
      stdio: 'inherit',
      // The fixtures start this checkout's server; a SLUICE_REPO set for another one is not ours.
      // The venv's commands first on PATH, as an activated venv has them: Dagster's executors
      // start its `dagster` command for run workers and steps.
      env: {
        ...process.env,
        SLUICE_REPO: ROOT,
        VIRTUAL_ENV: join(ROOT, '.venv'),
        PATH: `${VENV_BIN}${delimiter}${process.env.PATH ?? ''}`,
      },
    });
    if (name === 'pytest' && status === NO_TESTS_COLLECTED) {
      console.error(`test-python: ${dir}: pytest collected no tests${ci ? ' (CI=true: a failure)' : ''}`);
      if (ci) failures.push(`${dir}: pytest collected no tests`);
    } else if (status !== 0) {
      failures.push(`${dir}: ${name} (${signal ?? `exit ${status}`})`);
    }
  }
}

if (failures.length > 0) {
  console.error(`\ntest-python: failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log(`\ntest-python: every check passed in ${packages.join(', ')}`);
