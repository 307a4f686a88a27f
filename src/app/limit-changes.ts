/**
 * `limitChanges`: every limit edit in log order, with who made it and the values before and
 * after. It pages through the store's log rather than keeping the history in memory: the
 * settings are folded from the first event on each call (only limit edits change them), and
 * the page is cut once it is full. A read model can take this over when the log gets long.
 */
import {
  applyLimitEdit,
  describeLimitEdit,
  initialLimitSettings,
  LIMIT_EDIT_TYPES,
  poolOfEdit,
} from '../domain/limit-changes.js';
import { toLoggedEvent } from './recorded-events.js';
import type { Sluice } from './sluice.js';

export interface LimitChange {
  position: bigint;
  at: string;
  actor: string;
  description: string;
}

export interface LimitChangePage {
  changes: LimitChange[];
  hasNextPage: boolean;
}

const BATCH = 5_000;

/** Limit edits after the position `after` (null: from the start), at most `first`; only `pool`'s if given. */
export async function limitChanges(
  sluice: Sluice,
  options: { first: number; after: bigint | null; pool: string | null },
): Promise<LimitChangePage> {
  await sluice.catchUp();
  const end = sluice.state.revision;
  const settings = initialLimitSettings();
  const changes: LimitChange[] = [];
  for (let from = 0n; from <= end; ) {
    const batch = await sluice.store.readStream(sluice.stream, {
      fromRevision: from,
      maxCount: Number(end - from + 1n < BigInt(BATCH) ? end - from + 1n : BigInt(BATCH)),
    });
    if (batch.length === 0) break;
    for (const recorded of batch) {
      if (recorded.revision > end) break;
      if (!LIMIT_EDIT_TYPES.has(recorded.type)) continue;
      const event = toLoggedEvent(recorded);
      const description = describeLimitEdit(event, settings);
      applyLimitEdit(settings, event);
      if (description === null || (options.after !== null && event.revision <= options.after)) continue;
      if (options.pool !== null && poolOfEdit(event) !== options.pool) continue;
      if (changes.length === options.first) return { changes, hasNextPage: true };
      changes.push({ position: event.revision, at: event.at, actor: event.actor, description });
    }
    from = (batch.at(-1)?.revision ?? end) + 1n;
  }
  return { changes, hasNextPage: false };
}
