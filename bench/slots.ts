/**
 * Section 2: step-slot grant cost against the number of claims waiting in a pool, pure core.
 *
 * Pool `gpu` has a limit of 1 (OP granularity, root-step hold off); runs (no run limit) have 10 steps each in the
 * pool; one claim holds the slot and W wait. Measured: the holder releases and the next waiting
 * claim is granted. Untimed (and measured separately): the released step claims again and waits
 * at the back, so W stays put.
 */

import { cell, ratios } from './admission.js';
import { Core } from './core.js';
import { collect, emptySamples, fmt, heading, load, note, type Samples, sizes, table, timeInto } from './harness.js';

const STEPS_PER_RUN = 10;

function build(waiting: number): Core {
  const core = new Core();
  core.exec({ type: 'SetMaxConcurrentRuns', limit: -1 });
  core.exec({ type: 'SetPoolLimit', pool: 'gpu', limit: 1 });
  // Admitted runs contending for one slot: the root-step hold would keep all but one queued.
  core.exec({ type: 'ChangeConcurrencyConfig', change: { rootStepHold: { enabled: false } } });
  const claims = waiting + 1;
  const steps = Array.from({ length: STEPS_PER_RUN }, (_, i) => ({ key: `s${i}`, pool: 'gpu' }));
  for (let r = 0, made = 0; made < claims; r++) {
    const runId = `run${r}`;
    core.enqueue({ runId, steps });
    for (let s = 0; s < STEPS_PER_RUN && made < claims; s++, made++) {
      core.exec({ type: 'ClaimStepSlot', runId, stepKey: `s${s}` });
    }
  }
  return core;
}

interface Row {
  waiting: number;
  grant: Samples;
  claim: Samples;
  grantEvents: number[];
}

function runSize(waiting: number, budgetMs: number): Row {
  const core = build(waiting);
  const row: Row = { waiting, grant: emptySamples(), claim: emptySamples(), grantEvents: [] };
  const holder = () => {
    const [key] = core.state.slotHolders.get('gpu') ?? [];
    const claim = key === undefined ? undefined : core.state.claims.get(key);
    if (!claim) throw new Error('nobody holds the gpu slot');
    return claim;
  };
  const warm = emptySamples();
  let spent = 0;
  for (let rep = 0; rep < 3 + 3_000 && (rep < 3 + 10 || spent < budgetMs); rep++) {
    const { runId, stepKey } = holder();
    const timed = rep < 3 ? warm : row.grant;
    const events = timeInto(timed, () => core.exec({ type: 'ReleaseStepSlot', runId, stepKey }));
    timeInto(rep < 3 ? warm : row.claim, () => core.exec({ type: 'ClaimStepSlot', runId, stepKey }));
    if (rep < 3) continue;
    row.grantEvents.push(events.length);
    spent += (row.grant.wall.at(-1) as number) + (row.claim.wall.at(-1) as number);
  }
  const left = core.state.waitingClaims.get('gpu')?.size ?? 0;
  if (left !== waiting) throw new Error(`waiting claims drifted to ${left}`);
  return row;
}

export function slotsSection(): void {
  heading('2. Slot grant cost vs waiting claims (pure core: decide + evolve, no I/O)');
  const waitingSizes = sizes('BENCH_SLOT_SIZES', [100, 1_000, 10_000], 10);
  note(`pool gpu limit 1, OP granularity, ${STEPS_PER_RUN} steps per run, one holder.`);
  note(`µs per command: wall p50 / CPU p50 (${load()} at start).`);
  console.log();
  const rows: Row[] = [];
  for (const w of waitingSizes) {
    collect();
    rows.push(runSize(w, 400));
  }
  table(
    ['waiting claims', 'release -> next grant', 'claim that waits', 'events/release', 'reps'],
    rows.map((r) => [
      r.waiting.toLocaleString('en-US'),
      cell(r.grant),
      cell(r.claim),
      fmt(r.grantEvents.reduce((a, b) => a + b, 0) / r.grantEvents.length),
      String(r.grant.wall.length),
    ]),
  );
  const first = rows[0];
  const last = rows.at(-1);
  if (first && last && rows.length > 1) {
    console.log();
    note(
      `largest/smallest (waiting ×${fmt(last.waiting / first.waiting)}), wall / CPU: ` +
        `release -> grant ${ratios(last.grant, first.grant)}; claim that waits ${ratios(last.claim, first.claim)}`,
    );
  }
  note('release -> grant expects 2 events (StepSlotReleased + StepSlotGranted).');
}
