#!/usr/bin/env node
/**
 * The Python environment the Python suites run in: a virtual environment `.venv/` at the
 * repository root, made with the machine's python3, with every Python package of the repository
 * installed from the package index in editable mode with its dev extras (pytest, ruff, pyright):
 * `clients/python` always, `integrations/dagster` when it exists (and, for the latter, Dagster's own
 * test suite of the installed release, from its source distribution). When the venv module is missing
 * (Debian's python3 without python3-venv) and we are root with apt-get, installs it.
 *
 * Idempotent and quick: a stamp in the venv holds a hash of the packages' pyproject files and
 * the interpreter; when it matches, nothing is installed. Only node's own modules.
 *
 * Exports the package list for scripts/test-python.mjs; run alone, it just prepares the venv.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
export const VENV = join(ROOT, '.venv');
export const VENV_BIN = join(VENV, 'bin');
const STAMP = join(VENV, '.sluice-stamp');

/** The repository's Python packages, in test order: the client first, what builds on it after. */
export function pythonPackages() {
  return ['clients/python', 'integrations/dagster'].filter((dir) => existsSync(join(ROOT, dir, 'pyproject.toml')));
}

function log(message) {
  console.log(`python-env: ${message}`);
}

function run(command, args, options = {}) {
  log(`${command} ${args.join(' ')}`);
  execFileSync(command, args, { stdio: 'inherit', cwd: ROOT, ...options });
}

function systemPython() {
  for (const candidate of [process.env.PYTHON, 'python3'].filter(Boolean)) {
    const probe = spawnSync(candidate, ['-c', 'import sys; print(sys.version_info >= (3, 10))'], {
      encoding: 'utf8',
    });
    if (probe.status === 0 && probe.stdout.trim() === 'True') return candidate;
  }
  throw new Error('python3 3.10 or later is needed for the Python suites: install it (apt-get install -y python3)');
}

function canApt() {
  return process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
}

function makeVenv(python) {
  const attempt = () => spawnSync(python, ['-m', 'venv', VENV], { stdio: 'inherit', cwd: ROOT }).status === 0;
  if (attempt()) return;
  rmSync(VENV, { recursive: true, force: true });
  if (!canApt()) {
    throw new Error(`${python} -m venv failed: install the venv module (Debian: apt-get install -y python3-venv)`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update'], { env });
  run('apt-get', ['install', '-y', 'python3-venv'], { env });
  if (!attempt()) throw new Error(`${python} -m venv still fails after installing python3-venv`);
}

function stampFor(packages, python) {
  const hash = createHash('sha256');
  hash.update(spawnSync(python, ['--version'], { encoding: 'utf8' }).stdout ?? '');
  for (const dir of packages) {
    hash.update(dir);
    hash.update(readFileSync(join(ROOT, dir, 'pyproject.toml')));
  }
  return hash.digest('hex');
}

/**
 * Dagster publishes its own test suite only in its source distribution: the Dagster package's
 * tests import it, so it is fetched for the installed release (integrations/dagster's
 * dagster_own_tests/fetch.py; idempotent, a file check when it is in place).
 */
function fetchDagsterOwnTests(packages) {
  if (!packages.includes('integrations/dagster')) return;
  run(join(VENV_BIN, 'python'), ['-m', 'dagster_own_tests.fetch'], { cwd: join(ROOT, 'integrations/dagster') });
}

/** Makes or refreshes `.venv`; answers the package directories it holds. */
export function preparePythonEnv() {
  const packages = pythonPackages();
  const python = systemPython();
  const venvPython = join(VENV_BIN, 'python');
  if (!existsSync(venvPython)) makeVenv(python);
  const stamp = stampFor(packages, python);
  if (existsSync(STAMP) && readFileSync(STAMP, 'utf8') === stamp) {
    log(`.venv is up to date (${packages.join(', ')})`);
    fetchDagsterOwnTests(packages);
    return packages;
  }
  run(venvPython, ['-m', 'pip', 'install', '--quiet', '--upgrade', 'pip']);
  run(venvPython, [
    '-m',
    'pip',
    'install',
    '--quiet',
    ...packages.flatMap((dir) => ['--editable', `${join(ROOT, dir)}[dev]`]),
  ]);
  // pyright's PyPI package fetches its Node half on first use: do it now, not inside a test run.
  run(join(VENV_BIN, 'pyright'), ['--version']);
  fetchDagsterOwnTests(packages);
  writeFileSync(STAMP, stamp);
  return packages;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    preparePythonEnv();
  } catch (error) {
    console.error(`python-env: ${error.message}`);
    process.exit(1);
  }
}
