/**
 * Vitest global setup: collects the logs tests leave (see test/support/verify-logs.ts) and,
 * after the last test, runs `sluice verify` on each. A log that breaks a rule fails the run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../src/eventstore/sqlite.js';
import { describeReport, verifyLog } from '../src/verify/verify.js';
import { sqliteFilesUnder, VERIFY_LOGS_ENV } from './support/verify-logs.js';

export default function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-verify-logs-'));
  process.env[VERIFY_LOGS_ENV] = dir;
  return async () => {
    const failures: string[] = [];
    let verified = 0;
    for (const file of sqliteFilesUnder(dir)) {
      // History read models and checkpoints live in SQLite files too: only logs are verified.
      if (!isEventLog(file)) continue;
      const store = openSqliteStore({ path: file });
      try {
        const report = await verifyLog(store, { gaplessPositions: true });
        verified++;
        if (!report.ok) failures.push(describeReport(file, report));
      } finally {
        await store.close();
      }
    }
    console.log(`sluice verify: ${verified} logs left by the tests verified, ${failures.length} broke a rule`);
    if (failures.length > 0) {
      console.error(failures.join('\n\n'));
      throw new Error(`sluice verify found ${failures.length} logs breaking a rule (kept in ${dir})`);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

function isEventLog(file: string): boolean {
  try {
    const db = new Database(file);
    try {
      return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").get() !== undefined;
    } finally {
      db.close();
    }
  } catch {
    return false;
  }
}
