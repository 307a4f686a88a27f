/**
 * Dagster's run tags as Dagster itself reads them, so every run Dagster accepts is accepted here.
 * A tag Sluice cannot act on is recorded as ignored, with the reason, never refused.
 *
 * Max runtime: Dagster's run monitoring (every release from 1.10 to 1.13) reads
 * `tags.get("dagster/max_runtime", tags.get("dagster/max_runtime_seconds"))` and parses it with
 * Python's `float()`. A value it cannot parse is logged and the run gets no max runtime at all
 * (run_monitoring.max_runtime_seconds does not apply either); 0 means none.
 */
import type { IgnoredTag, Tag } from './run.js';

export const MAX_RUNTIME_TAG = 'dagster/max_runtime';
/** Read by Dagster only when dagster/max_runtime is absent. */
export const MAX_RUNTIME_SECONDS_TAG = 'dagster/max_runtime_seconds';

/** The longest max runtime Sluice keeps a deadline for: a year. */
export const MAX_RUNTIME_LIMIT_SECONDS = 365 * 24 * 3600;

/** The max-runtime tag Dagster reads for a run: dagster/max_runtime, else dagster/max_runtime_seconds. */
export function maxRuntimeTagOf(tags: readonly Tag[]): Tag | null {
  return tags.find((t) => t.key === MAX_RUNTIME_TAG) ?? tags.find((t) => t.key === MAX_RUNTIME_SECONDS_TAG) ?? null;
}

// Python's float(): surrounding whitespace, a sign, digits with single underscores between them,
// a fraction, an exponent; or inf, infinity, nan in any case.
const PYTHON_DIGITS = String.raw`\d+(?:_\d+)*`;
const PYTHON_FLOAT = new RegExp(
  String.raw`^[+-]?(?:(?:${PYTHON_DIGITS}(?:\.(?:${PYTHON_DIGITS})?)?|\.${PYTHON_DIGITS})(?:[eE][+-]?${PYTHON_DIGITS})?|inf|infinity|nan)$`,
  'i',
);

/** A tag value as Python's float() reads it; null where float() raises. */
export function pythonFloat(text: string): number | null {
  const trimmed = text.trim();
  if (!PYTHON_FLOAT.test(trimmed)) return null;
  const lower = trimmed.toLowerCase().replace(/^[+-]/, '');
  const sign = trimmed.startsWith('-') ? -1 : 1;
  if (lower === 'nan') return Number.NaN;
  if (lower === 'inf' || lower === 'infinity') return sign * Number.POSITIVE_INFINITY;
  return Number(trimmed.replaceAll('_', ''));
}

/**
 * What the run's max-runtime tags mean: `seconds` (a number above 0 and at most a year), or
 * `none` (a tag is set, and it gives no max runtime), or `absent` (no tag: the default applies).
 */
export type TaggedMaxRuntime =
  | { kind: 'seconds'; seconds: number; tag: string }
  | { kind: 'none' }
  | { kind: 'absent' };

export function taggedMaxRuntime(tags: readonly Tag[]): TaggedMaxRuntime {
  const tag = maxRuntimeTagOf(tags);
  if (!tag) return { kind: 'absent' };
  const seconds = pythonFloat(tag.value);
  if (seconds === null || !(seconds > 0 && seconds <= MAX_RUNTIME_LIMIT_SECONDS)) return { kind: 'none' };
  return { kind: 'seconds', seconds, tag: tag.key };
}

/** The max-runtime tags Sluice does not act on, and why. */
export function ignoredMaxRuntimeTags(tags: readonly Tag[]): IgnoredTag[] {
  const ignored: IgnoredTag[] = [];
  const read = maxRuntimeTagOf(tags);
  const other = tags.find((t) => t.key === MAX_RUNTIME_SECONDS_TAG);
  if (read && other && read !== other) {
    ignored.push({
      key: MAX_RUNTIME_SECONDS_TAG,
      reason: `${MAX_RUNTIME_TAG} is also set (${JSON.stringify(read.value)}); Dagster reads that one, and so does Sluice`,
    });
  }
  if (!read) return ignored;
  const seconds = pythonFloat(read.value);
  const value = JSON.stringify(read.value);
  if (seconds === null) {
    ignored.push({
      key: read.key,
      reason: `${value} is not a number of seconds: the run has no max runtime (Dagster's run monitoring skips it too)`,
    });
  } else if (Number.isNaN(seconds) || seconds === Number.POSITIVE_INFINITY) {
    ignored.push({ key: read.key, reason: `${value} sets no deadline: the run has no max runtime` });
  } else if (seconds < 0) {
    ignored.push({
      key: read.key,
      reason: `${value} is below 0: the run has no max runtime (Dagster would end it at its next check)`,
    });
  } else if (seconds > MAX_RUNTIME_LIMIT_SECONDS) {
    ignored.push({
      key: read.key,
      reason: `${value} is more than a year (${MAX_RUNTIME_LIMIT_SECONDS} s): Sluice keeps no deadline that far, the run has no max runtime`,
    });
  }
  // 0 is Dagster's way to say "no max runtime": acted on, nothing to report.
  return ignored;
}
