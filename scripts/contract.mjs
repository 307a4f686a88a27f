#!/usr/bin/env node
// Runs the shared API contract check for the sections this project has built, or says
// plainly that it was skipped when ../shared (the design repo) is not beside the checkout.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const SECTIONS = ['core', 'slots', 'audit', 'parity', 'insight', 'counts'];
const checker = '../shared/contract/check.mjs';
if (!existsSync(checker)) {
  console.log(`contract check SKIPPED: ${checker} not found (../shared is absent beside this checkout)`);
  process.exit(0);
}
const args = [checker, ...SECTIONS.flatMap((s) => ['--section', s])];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(result.status ?? 1);
