#!/usr/bin/env node
/**
 * The system packages some suites need: PostgreSQL's server binaries (initdb, pg_ctl) for the
 * PostgreSQL store and multi-server suites, libfaketime for the clock-step suite, and Chromium
 * for the browser suites. As root with
 * apt-get, installs the missing ones (one `apt-get update`, then `apt-get install -y` of just
 * those); otherwise says which suites will be skipped. With CI=true a suite may not be skipped,
 * so anything still missing fails the run. Only node's own modules: this runs before `npm ci`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const NEEDS = [
  {
    pkg: 'postgresql',
    present: () => {
      const root = '/usr/lib/postgresql';
      return existsSync(root) && readdirSync(root).some((v) => existsSync(join(root, v, 'bin', 'initdb')));
    },
    // A server of your own stands in for the binaries.
    stoodInFor: () => Boolean(process.env.TEST_PG_URL),
    suites: 'the PostgreSQL suites (test/eventstore/postgres.test.ts, test/e2e/postgres-*.test.ts)',
  },
  {
    pkg: 'faketime',
    present: () =>
      existsSync('/usr/bin/faketime') &&
      ['/usr/lib/x86_64-linux-gnu/faketime', '/usr/lib/aarch64-linux-gnu/faketime'].some((dir) => existsSync(dir)),
    stoodInFor: () => false,
    suites: "the clock-step suite (test/e2e/clock-steps.test.ts moves a server process's clock with libfaketime)",
  },
  {
    pkg: 'chromium',
    present: () => existsSync('/usr/bin/chromium'),
    stoodInFor: () => false,
    suites: 'the browser suites (they drive /usr/bin/chromium)',
  },
];

const missing = () => NEEDS.filter((need) => !need.present() && !need.stoodInFor());

function canInstall() {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
}

function apt(args) {
  console.log(`test-deps: apt-get ${args.join(' ')}`);
  execFileSync('apt-get', args, {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

let wanted = missing();
if (wanted.length > 0 && canInstall()) {
  try {
    apt(['update']);
    apt(['install', '-y', ...wanted.map((need) => need.pkg)]);
  } catch (error) {
    console.error(`test-deps: installing ${wanted.map((n) => n.pkg).join(', ')} failed: ${error.message}`);
  }
  wanted = missing();
}

if (wanted.length > 0) {
  const ci = process.env.CI === 'true';
  for (const need of wanted) {
    console.error(
      `test-deps: the Debian package ${need.pkg} is missing, so ${ci ? 'CI cannot run' : 'these will be skipped:'} ${need.suites}`,
    );
  }
  if (!canInstall())
    console.error('test-deps: install them as root with apt-get, e.g. apt-get install -y postgresql faketime chromium');
  if (ci) {
    console.error('test-deps: CI=true, where no suite may be skipped: failing');
    process.exit(1);
  }
}
