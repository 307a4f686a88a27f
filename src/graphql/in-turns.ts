/**
 * Long reads give way to other requests. A page of runs with their waits and decisions is
 * resolved run by run in promises that all settle before the event loop turns: without a pause,
 * `/health` and every command wait behind the whole page. Work that derives from the history
 * goes through `inTurns`: one piece at a time, and once a turn of the event loop has used its
 * slice, the next piece waits for the next turn (setImmediate), so others are answered between
 * the runs of a long page.
 */
const SLICE_MS = 10;

let turnStarted = performance.now();
let chain: Promise<unknown> = Promise.resolve();

async function breathe(): Promise<void> {
  if (performance.now() - turnStarted < SLICE_MS) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  turnStarted = performance.now();
}

/** Runs `work` after the pieces queued before it, in a fresh turn when this one is used up. */
export function inTurns<T>(work: () => T): Promise<T> {
  const next = chain.then(async () => {
    await breathe();
    return work();
  });
  chain = next.catch(() => undefined);
  return next;
}
