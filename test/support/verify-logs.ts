/**
 * Every SQLite log a test leaves in a temp dir is kept, when the run collects them
 * (test/verify-logs.setup.ts sets SLUICE_VERIFY_LOGS), and checked by `sluice verify` once
 * every test has finished. A test that breaks a log on purpose writes a file named
 * NOT_VERIFIED (with why) into its dir.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';

export const VERIFY_LOGS_ENV = 'SLUICE_VERIFY_LOGS';
export const NOT_VERIFIED = 'NOT_VERIFIED';

/** Copies the dir's SQLite files (with their -wal) to the collection, before the dir is removed. */
export function keepLogsForVerify(dir: string): void {
  const into = process.env[VERIFY_LOGS_ENV];
  if (!into || !existsSync(dir) || existsSync(join(dir, NOT_VERIFIED))) return;
  const files = sqliteFilesUnder(dir);
  if (files.length === 0) return;
  const target = join(into, `${basename(dir)}-${process.pid}`);
  for (const file of files) {
    for (const suffix of ['', '-wal']) {
      if (!existsSync(file + suffix)) continue;
      const copy = join(target, relative(dir, file) + suffix);
      mkdirSync(join(copy, '..'), { recursive: true });
      cpSync(file + suffix, copy);
    }
  }
}

export function sqliteFilesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(path);
    } catch {
      continue;
    }
    if (stat.isDirectory()) found.push(...sqliteFilesUnder(path));
    else if (/\.(db|sqlite)$/.test(name)) found.push(path);
  }
  return found;
}
