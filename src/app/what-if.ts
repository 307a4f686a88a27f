/**
 * The I/O around a what-if replay: the state as it was when the window opened (from a
 * checkpoint and the log), the events recorded inside it, and the recorded waiting to compare
 * with. The replay itself is pure (src/insight/replay.ts) and appends nothing.
 */
import type { ConfigChangeInput } from '../domain/commands.js';
import type { LoggedEvent } from '../domain/events.js';
import type { WaitReportData } from '../history/wait-report.js';
import { REPLAY_ASSUMPTIONS, type ReplayResult, replayWindow } from '../insight/replay.js';
import { toLoggedEvent } from './recorded-events.js';
import type { Sluice } from './sluice.js';

/** The most events one replay reads: bounds what a request may cost (about 150,000 runs' worth). */
export const MAX_REPLAY_EVENTS = 1_500_000;

export class ReplayTooLargeError extends Error {
  override readonly name = 'ReplayTooLargeError';
}

export interface WhatIf {
  actual: WaitReportData;
  replayed: ReplayResult;
  assumptions: readonly string[];
}

export async function whatIf(sluice: Sluice, fromMs: number, toMs: number, change: ConfigChangeInput): Promise<WhatIf> {
  await sluice.catchUp();
  const nowMs = sluice.now().getTime();
  const endMs = Math.max(fromMs, Math.min(toMs, nowMs));
  // The state after the last event strictly before the window.
  const startRevision = await sluice.revisionAt(new Date(fromMs - 1));
  const start = await sluice.stateAt(startRevision);
  const events: LoggedEvent[] = [];
  for (let next = startRevision + 1n; ; ) {
    const batch = await sluice.store.readStream(sluice.stream, { fromRevision: next, maxCount: 5_000 });
    let done = batch.length < 5_000;
    for (const recorded of batch) {
      if (Date.parse(recorded.at) > endMs) {
        done = true;
        break;
      }
      events.push(toLoggedEvent(recorded));
    }
    if (events.length > MAX_REPLAY_EVENTS) {
      throw new ReplayTooLargeError(
        `the window holds more than ${MAX_REPLAY_EVENTS.toLocaleString('en-US')} events: replay a shorter one`,
      );
    }
    if (done || batch.length === 0) break;
    next = (batch.at(-1) as { revision: bigint }).revision + 1n;
  }
  const replayed = replayWindow({ start, events, change, fromMs, toMs: endMs });
  const actual = (await sluice.readHistory()).waitReport(fromMs, endMs, nowMs);
  return { actual, replayed, assumptions: REPLAY_ASSUMPTIONS };
}
