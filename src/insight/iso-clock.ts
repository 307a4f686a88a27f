/** Instants formatted fast for a replay, which formats every command's instant. */

const DAY_MS = 86_400_000;
const pad = (n: number, width: number) => String(n).padStart(width, '0');

/**
 * Epoch ms to the ISO form Date#toISOString gives, for a run of instants in time order: the
 * date part is made once per day, the time of day by arithmetic (a replay formats every
 * command's instant, and toISOString costs more than the command's own bookkeeping).
 */
export function isoClock(): (ms: number) => string {
  let day = Number.NaN;
  let datePart = '';
  return (ms) => {
    const d = Math.floor(ms / DAY_MS);
    if (d !== day) {
      const iso = new Date(ms).toISOString();
      // Years beyond 0000-9999 have a longer form: those are left to toISOString every time.
      if (iso.length === 24) {
        day = d;
        datePart = iso.slice(0, 11);
      }
      return iso;
    }
    const t = ms - d * DAY_MS;
    const time = `${pad(Math.floor(t / 3_600_000), 2)}:${pad(Math.floor(t / 60_000) % 60, 2)}:${pad(Math.floor(t / 1000) % 60, 2)}`;
    return `${datePart}${time}.${pad(t % 1000, 3)}Z`;
  };
}
