/**
 * The PostgreSQL store's tables, as numbered migrations. Each runs once, in its own
 * transaction, recorded in `sluice_migrations`; servers starting together take an advisory
 * lock first, so exactly one of them migrates and the others then find the work done.
 * Append new migrations at the end; never edit one that has shipped.
 */
import type pg from 'pg';

export interface Migration {
  version: number;
  name: string;
  /** SQL run inside the migration's transaction, with `search_path` set to the store's schema. */
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'events table, one row per event',
    // data is text, not jsonb: what is read back must be byte for byte what was written
    // (key order and duplicate keys included), as event hashes of checkpoints depend on it.
    // The statement-level trigger wakes followers on every commit, whoever inserted.
    sql: `
      CREATE TABLE events (
        position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream text NOT NULL,
        revision bigint NOT NULL CHECK (revision >= 0),
        type text NOT NULL,
        schema_version integer NOT NULL,
        data text NOT NULL,
        actor text NOT NULL,
        at text NOT NULL,
        UNIQUE (stream, revision)
      );
      CREATE FUNCTION sluice_notify_appended() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('sluice_events', TG_TABLE_SCHEMA);
        RETURN NULL;
      END;
      $$;
      CREATE TRIGGER events_appended AFTER INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION sluice_notify_appended();
    `,
  },
];

/** The channel every store's trigger notifies; the payload is the schema that was appended to. */
export const NOTIFY_CHANNEL = 'sluice_events';

/** Quotes an identifier for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Brings the schema up to the newest migration. Throws when the database was migrated by a
 * newer Sluice than this one, which may have changed what this code expects.
 */
export async function migrate(client: pg.ClientBase, schema: string, lockKey: string): Promise<number[]> {
  const applied: number[] = [];
  const known = Math.max(...MIGRATIONS.map((m) => m.version));
  for (const migration of MIGRATIONS) {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey]);
      // Looked up first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
      // database even when the schema is there, which a user given only a schema lacks.
      const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
      await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
      // Also looked up first, so a user with only SELECT and INSERT can start a migrated store.
      const table = await client.query(
        "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'sluice_migrations'",
        [schema],
      );
      if (table.rowCount === 0) {
        await client.query(`CREATE TABLE sluice_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      }
      const { rows } = await client.query<{ version: number }>('SELECT version FROM sluice_migrations');
      const done = new Set(rows.map((r) => r.version));
      const newest = Math.max(0, ...done);
      if (newest > known) {
        throw new NewerSchemaError(
          `schema ${schema} was migrated to version ${newest} by a newer Sluice; this one knows up to ${known}`,
        );
      }
      if (!done.has(migration.version)) {
        await client.query(migration.sql);
        await client.query('INSERT INTO sluice_migrations (version, name) VALUES ($1, $2)', [
          migration.version,
          migration.name,
        ]);
        applied.push(migration.version);
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }
  return applied;
}

export class NewerSchemaError extends Error {
  override readonly name = 'NewerSchemaError';
}
