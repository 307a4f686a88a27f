/**
 * The past never changes: every log of the corpus (test/fixtures/logs/*, each written by a
 * released Sluice with scripts/record-log-fixture.ts) is opened by today's server, which is asked
 * every question the writing server was asked, word for word: snapshots at every position and
 * instant, runs with their waits, decisions and step claims, decisions and limit changes page by
 * page, the decision stream, `sluice why` and `sluice snapshot`. Every answer must be the same.
 * Date alone is faked, to the instant the answers were recorded, so that waits still open then
 * are measured up to the same instant; timers stay real.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { rulesStream } from '../../src/app/rules-version.js';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { snapshot, why } from '../../src/cli/audit.js';
import { CURRENT_RULES } from '../../src/domain/rules.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql } from '../support/e2e-http.js';
import { type CorpusAnswer, type CorpusAnswers, type CorpusEvent, subscribeFor } from '../support/log-corpus.js';

// vitest resolves `graphql` to its ESM build for src/ while Pothos and Yoga load the CJS one;
// two realms break the schema. Give src/ the CJS build too (as the other e2e tests do).
vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const CORPUS = join(import.meta.dirname, '../fixtures/logs');
const formats = readdirSync(CORPUS).sort();

function load(format: string): { events: CorpusEvent[]; answers: CorpusAnswers } {
  const read = (name: string) => JSON.parse(readFileSync(join(CORPUS, format, name), 'utf8'));
  return { events: read('events.json'), answers: read('answers.json') };
}

/** Writes the log into a new SQLite file, event for event, at the same positions (its rules record included). */
async function writeLog(path: string, events: CorpusEvent[]): Promise<void> {
  const store = openSqliteStore({ path });
  try {
    for (const { stream, type, schemaVersion, data, actor, at, position } of events) {
      const [recorded] = (await store.append(stream, [{ type, schemaVersion, data, actor, at }], 'any')).events;
      expect(String(recorded?.position)).toBe(position);
    }
  } finally {
    await store.close();
  }
}

async function askAgain(answer: CorpusAnswer, url: string, gql: Gql, now: Date): Promise<unknown> {
  switch (answer.kind) {
    case 'query':
      return gql.data(answer.query, answer.variables);
    case 'subscription':
      return answer.items.length === 0 ? [] : subscribeFor(url, answer.query, answer.variables, answer.items.length);
    case 'why':
      return (await why(url, answer.runId, now)).text;
    case 'snapshot-text':
      return (await snapshot(url, { position: answer.position })).text;
  }
}

/** Where two JSON values differ, as `path: recorded -> now` lines. */
function differences(recorded: unknown, now: unknown, path: string): string[] {
  if (JSON.stringify(recorded) === JSON.stringify(now)) return [];
  if (recorded && now && typeof recorded === 'object' && typeof now === 'object') {
    const keys = new Set([...Object.keys(recorded), ...Object.keys(now)]);
    const lengths = Array.isArray(recorded) && Array.isArray(now) && recorded.length !== now.length;
    const inner = [...keys].flatMap((key) =>
      differences((recorded as Record<string, unknown>)[key], (now as Record<string, unknown>)[key], `${path}.${key}`),
    );
    return lengths ? [`${path}: ${recorded.length} items -> ${(now as unknown[]).length}`, ...inner] : inner;
  }
  return [`${path}: ${JSON.stringify(recorded)} -> ${JSON.stringify(now)}`];
}

const recordedOf = (answer: CorpusAnswer): unknown =>
  answer.kind === 'query' ? answer.data : answer.kind === 'subscription' ? answer.items : answer.text;

describe.each(formats)('the log written by %s', (format) => {
  it('given that log, when today’s server opens it, then every answer it gave is given again', async () => {
    const { events, answers } = load(format);
    const dir = mkdtempSync(join(tmpdir(), 'sluice-corpus-'));
    const now = new Date(answers.recordedAt);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(now);
    try {
      const dbPath = join(dir, 'events.db');
      await writeLog(dbPath, events);
      const server = await startServer(
        {
          ...DEFAULT_SETTINGS,
          port: 0,
          host: '127.0.0.1',
          eventStoreUrl: `sqlite:${dbPath}`,
          checkpointPath: join(dir, 'checkpoint.db'),
          historyPath: join(dir, 'history.db'),
        },
        () => {},
      );
      try {
        // The log now records the rules it is written under, beside it: its own positions stay.
        // Where the rules changed, the log's format is raised at its end first, so that servers
        // with the old rules stop there.
        const rules = await server.store.readStream(rulesStream(DEPLOYMENT_STREAM));
        const record = rules.at(-1)?.data as { rules: number; previous: number | null };
        expect(record).toMatchObject({ rules: CURRENT_RULES });
        const written = events.filter((e) => e.stream === DEPLOYMENT_STREAM);
        const raised = record.previous !== null && record.previous < CURRENT_RULES;
        expect(await server.store.streamRevision(DEPLOYMENT_STREAM)).toBe(BigInt(written.length - (raised ? 0 : 1)));
        const opened = await server.store.readStream(DEPLOYMENT_STREAM);
        expect(opened.slice(0, written.length).map((e) => e.type)).toEqual(written.map((e) => e.type));
        if (raised) expect(opened.at(-1)?.type).toBe('LogFormatRaised');
        const gql = new Gql(server.url);
        const differ: string[] = [];
        for (const answer of answers.answers) {
          const again = await askAgain(answer, server.url, gql, now);
          const found = differences(recordedOf(answer), again, '');
          if (found.length) differ.push(`${answer.name}:\n  ${found.slice(0, 6).join('\n  ')}`);
        }
        expect(
          differ.slice(0, Number(process.env.CORPUS_SHOW ?? 8)).join('\n'),
          `${differ.length} answers differ`,
        ).toBe('');
      } finally {
        await server.close();
      }
    } finally {
      vi.useRealTimers();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
