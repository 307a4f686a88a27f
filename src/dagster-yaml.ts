/**
 * Reads the concurrency settings out of a Dagster `dagster.yaml` (CONCURRENCY_CONFIG).
 *
 * A file that works with Dagster must work here as is, so this adapter understands every place
 * Dagster has put these settings over the years: the `concurrency:` block, the older
 * `run_queue:` block and the still older `run_coordinator:` config. It does no I/O: the caller
 * reads the file and passes the text, its name (for messages) and the environment (for
 * Dagster's `{env: NAME}` form).
 *
 * What it checks, and why:
 * - Top-level blocks Sluice does not use (storage, run_launcher, telemetry, ...) are ignored:
 *   the same file also configures Dagster itself.
 * - Inside the blocks Sluice reads, an unknown key is an error: a typo such as
 *   `max_concurent_runs` would otherwise silently leave the default in force. Keys Dagster
 *   knows there but Sluice does not act on are accepted and listed (`notActedOn`), so the
 *   server can say so once at start-up and nobody believes such a setting works.
 * - A setting given in two places is an error naming both, as Dagster does, rather than
 *   guessing which one the user meant.
 * - Every bad value is reported with the file and the key path, so the user can find it.
 */
import { LineCounter, parseDocument, visit } from 'yaml';
import { LIMITS, type PoolGranularity, type TagConcurrencyLimit } from './domain/config.js';

export interface ConfigFileSettings {
  maxConcurrentRuns?: number;
  tagConcurrencyLimits?: TagConcurrencyLimit[];
  poolGranularity?: PoolGranularity;
  /** null: the file says explicitly that pools without a limit of their own are unlimited. */
  defaultPoolLimit?: number | null;
  runMonitoring: {
    startTimeoutSeconds?: number;
    cancelTimeoutSeconds?: number;
    /** null: the file says 0, no default max runtime. */
    maxRuntimeSeconds?: number | null;
  };
  /**
   * How many runs over the free slots may still go at OP granularity
   * (`concurrency.pools.op_granularity_run_buffer`, or the older
   * `run_queue.block_op_concurrency_limited_runs.op_concurrency_slot_buffer`): the root-step hold's run buffer.
   */
  opGranularityRunBuffer?: number;
  /** `block_op_concurrency_limited_runs.enabled` of the older forms: the root-step hold on or off. */
  blockOpConcurrencyLimitedRuns?: boolean;
}

/** The settings, and the keys the file sets that Sluice accepts but does not act on. */
export interface ConfigFileReading {
  settings: ConfigFileSettings;
  /** Dotted key paths, in file order. */
  notActedOn: string[];
}

/** A problem in the config file. `key` is the dotted key path ('' when there is none, e.g. a YAML syntax error). */
export class ConfigFileError extends Error {
  override readonly name = 'ConfigFileError';

  constructor(
    readonly source: string,
    readonly key: string,
    message: string,
  ) {
    super(key === '' ? `${source}: ${message}` : `${source}: ${key}: ${message}`);
  }
}

type Env = Record<string, string | undefined>;
type Mapping = Record<string, unknown>;

/** Dagster's run monitoring timeouts are in seconds; more than a week is surely a mistake. */
const MAX_TIMEOUT_SECONDS = 7 * 24 * 60 * 60;
/** The same bound as the max-runtime tags. */
const MAX_RUNTIME_SECONDS = 365 * 24 * 60 * 60;

// Keys of each block Sluice reads, as Dagster's instance schema accepts them. `notActedOn`
// lists keys Sluice accepts and validates where it reads them but does not act on (they tune
// Dagster's daemon, or a rule Sluice does not enforce yet); a file that sets them is told so.
const QUEUE_KEYS = {
  used: ['max_concurrent_runs', 'tag_concurrency_limits', 'block_op_concurrency_limited_runs'],
  // QueuedRunCoordinator's config; Dagster validates `run_queue` against the same schema.
  notActedOn: [
    'dequeue_interval_seconds',
    'dequeue_use_threads',
    'dequeue_num_workers',
    'max_user_code_failure_retries',
    'user_code_failure_retry_delay',
  ],
} as const;

const BLOCK_KEYS = {
  concurrency: { used: ['runs', 'pools', 'default_op_concurrency_limit'], notActedOn: [] },
  'concurrency.runs': { used: ['max_concurrent_runs', 'tag_concurrency_limits'], notActedOn: [] },
  'concurrency.pools': { used: ['granularity', 'default_limit', 'op_granularity_run_buffer'], notActedOn: [] },
  run_queue: QUEUE_KEYS,
  run_coordinator: { used: ['class', 'config', 'module'], notActedOn: [] },
  'run_coordinator.config': QUEUE_KEYS,
  blockOpConcurrency: { used: ['enabled', 'op_concurrency_slot_buffer'], notActedOn: [] },
  run_monitoring: {
    used: ['start_timeout_seconds', 'cancel_timeout_seconds', 'max_runtime_seconds'],
    notActedOn: [
      'enabled',
      'poll_interval_seconds',
      'cancellation_thread_poll_interval_seconds',
      'max_resume_run_attempts',
      'free_slots_after_run_end_seconds',
    ],
  },
  tagLimit: { used: ['key', 'value', 'limit'], notActedOn: [] },
  tagValue: { used: ['applyLimitPerUniqueValue'], notActedOn: [] },
} as const satisfies Record<string, BlockKeys>;

/** Dagster's type for each key Sluice does not act on: a file Dagster would refuse is refused here too. */
const BOOLEAN_KEYS = new Set(['enabled', 'dequeue_use_threads']);

interface BlockKeys {
  used: readonly string[];
  notActedOn: readonly string[];
}

/** A value found in the file, with the key path it was found at (for conflict messages). */
interface Found<T> {
  path: string;
  value: T;
}

/**
 * Parses the concurrency settings of a `dagster.yaml`.
 * Only what the file sets is returned; the caller decides what an unset setting means.
 * Throws ConfigFileError naming the file and the key for anything wrong.
 */
export function parseConcurrencyConfigFile(text: string, source: string, env: Env = process.env): ConfigFileSettings {
  return readConcurrencyConfigFile(text, source, env).settings;
}

/** parseConcurrencyConfigFile, with the keys the file sets that Sluice does not act on. */
export function readConcurrencyConfigFile(text: string, source: string, env: Env = process.env): ConfigFileReading {
  const r = new Reader(source, env);
  const top = r.parseYaml(text);

  const concurrency = r.block(top, 'concurrency', '', BLOCK_KEYS.concurrency);
  const runs = concurrency && r.block(concurrency, 'runs', 'concurrency', BLOCK_KEYS['concurrency.runs']);
  const pools = concurrency && r.block(concurrency, 'pools', 'concurrency', BLOCK_KEYS['concurrency.pools']);
  const runQueue = r.block(top, 'run_queue', '', BLOCK_KEYS.run_queue);
  const coordinator = r.block(top, 'run_coordinator', '', BLOCK_KEYS.run_coordinator);

  // Dagster refuses these two together, whatever they contain: run_queue replaced run_coordinator.
  if (runQueue && coordinator) {
    r.fail('run_queue', 'cannot be used together with run_coordinator; keep one of them');
  }
  const coordinatorConfig = coordinator && r.queuedCoordinatorConfig(coordinator);

  // Each setting may come from several places; collect them all, then insist on one.
  const maxRuns: Found<number>[] = [];
  const tagLimits: Found<TagConcurrencyLimit[]>[] = [];
  const queueBlocks: [Mapping | undefined, string][] = [
    [runs, 'concurrency.runs'],
    [runQueue, 'run_queue'],
    [coordinatorConfig, 'run_coordinator.config'],
  ];
  for (const [block, path] of queueBlocks) {
    if (!block) continue;
    if (has(block, 'max_concurrent_runs')) {
      const key = `${path}.max_concurrent_runs`;
      maxRuns.push({ path: key, value: r.maxConcurrentRuns(block.max_concurrent_runs, key) });
    }
    if (has(block, 'tag_concurrency_limits')) {
      const key = `${path}.tag_concurrency_limits`;
      tagLimits.push({ path: key, value: r.tagLimits(block.tag_concurrency_limits, key) });
    }
  }

  const defaultLimits: Found<number | null>[] = [];
  if (pools && has(pools, 'default_limit')) {
    const key = 'concurrency.pools.default_limit';
    defaultLimits.push({ path: key, value: r.defaultPoolLimit(pools.default_limit, key) });
  }
  if (concurrency && has(concurrency, 'default_op_concurrency_limit')) {
    // The older name of pools.default_limit.
    const key = 'concurrency.default_op_concurrency_limit';
    defaultLimits.push({ path: key, value: r.defaultPoolLimit(concurrency.default_op_concurrency_limit, key) });
  }

  const settings: ConfigFileSettings = { runMonitoring: {} };
  const maxConcurrentRuns = r.one(maxRuns);
  if (maxConcurrentRuns !== undefined) settings.maxConcurrentRuns = maxConcurrentRuns;
  const tagConcurrencyLimits = r.one(tagLimits);
  if (tagConcurrencyLimits !== undefined) settings.tagConcurrencyLimits = tagConcurrencyLimits;
  const defaultPoolLimit = r.one(defaultLimits);
  if (defaultPoolLimit !== undefined) settings.defaultPoolLimit = defaultPoolLimit;
  if (pools && has(pools, 'granularity')) {
    settings.poolGranularity = r.granularity(pools.granularity, 'concurrency.pools.granularity');
  }

  // The OP-granularity hold's settings: its buffer may come from either form, not from both.
  const buffers: Found<number>[] = [];
  if (pools && has(pools, 'op_granularity_run_buffer')) {
    const key = 'concurrency.pools.op_granularity_run_buffer';
    buffers.push({ path: key, value: r.integer(pools.op_granularity_run_buffer, key, 0, LIMITS.maxLimit) });
  }
  for (const [block, path] of queueBlocks.slice(1)) {
    const blocking = block && r.block(block, 'block_op_concurrency_limited_runs', path, BLOCK_KEYS.blockOpConcurrency);
    if (!blocking) continue;
    const blockPath = `${path}.block_op_concurrency_limited_runs`;
    if (has(blocking, 'enabled')) {
      settings.blockOpConcurrencyLimitedRuns = r.boolean(blocking.enabled, `${blockPath}.enabled`);
    }
    if (has(blocking, 'op_concurrency_slot_buffer')) {
      const key = `${blockPath}.op_concurrency_slot_buffer`;
      buffers.push({ path: key, value: r.integer(blocking.op_concurrency_slot_buffer, key, 0, LIMITS.maxLimit) });
    }
  }
  const buffer = r.one(buffers);
  if (buffer !== undefined) settings.opGranularityRunBuffer = buffer;

  const monitoring = r.block(top, 'run_monitoring', '', BLOCK_KEYS.run_monitoring);
  if (monitoring && has(monitoring, 'start_timeout_seconds')) {
    settings.runMonitoring.startTimeoutSeconds = r.timeout(
      monitoring.start_timeout_seconds,
      'run_monitoring.start_timeout_seconds',
    );
  }
  if (monitoring && has(monitoring, 'cancel_timeout_seconds')) {
    settings.runMonitoring.cancelTimeoutSeconds = r.timeout(
      monitoring.cancel_timeout_seconds,
      'run_monitoring.cancel_timeout_seconds',
    );
  }
  if (monitoring && has(monitoring, 'max_runtime_seconds')) {
    // Dagster: 0 (its default) means no limit.
    const key = 'run_monitoring.max_runtime_seconds';
    const seconds = r.integer(monitoring.max_runtime_seconds, key, 0, MAX_RUNTIME_SECONDS, ' (seconds, 0: none)');
    settings.runMonitoring.maxRuntimeSeconds = seconds === 0 ? null : seconds;
  }
  return { settings, notActedOn: r.notActedOn };
}

/** Reads values out of the parsed file, throwing ConfigFileError with the file's name. */
class Reader {
  readonly notActedOn: string[] = [];

  constructor(
    private readonly source: string,
    private readonly env: Env,
  ) {}

  fail(key: string, message: string): never {
    throw new ConfigFileError(this.source, key, message);
  }

  /**
   * Parses as YAML 1.1, which is what Dagster's PyYAML reads: `1_000` is a number, `on` is
   * true, and `<<` merge keys work, so a file means the same here as in Dagster.
   */
  parseYaml(text: string): Mapping {
    const lines = new LineCounter();
    const doc = parseDocument(text, { version: '1.1', lineCounter: lines, prettyErrors: false });
    const at = (offset: number) => {
      const { line, col } = lines.linePos(offset);
      return `line ${line}, column ${col}: invalid YAML`;
    };
    const error = doc.errors[0];
    if (error) {
      // The library's own advice for this one (use parseAllDocuments) is no help to a user.
      const message = error.code === 'MULTIPLE_DOCS' ? 'the file must hold a single YAML document' : error.message;
      this.fail('', `${at(error.pos[0])}: ${message}`);
    }
    // The parser accepts an alias to an anchor that does not exist; find it here, with its line.
    visit(doc, {
      Alias: (_, alias) => {
        if (alias.resolve(doc) === undefined) {
          this.fail('', `${at(alias.range?.[0] ?? 0)}: no anchor &${alias.source} before this alias`);
        }
      },
    });
    let root: unknown;
    try {
      // toJS refuses alias bombs (too many aliases) by throwing.
      root = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      this.fail('', `invalid YAML: ${e instanceof Error ? e.message : String(e)}`);
    }
    // An empty file, or one holding only comments.
    if (root === null || root === undefined) return {};
    if (!isMapping(root)) this.fail('', `the top level must be a mapping of settings, not ${describe(root)}`);
    return root;
  }

  /**
   * The block `key` of `parent`, checked for unknown keys; undefined when absent.
   * A block left empty (every line under it commented out) reads as null: it counts as empty.
   */
  block(parent: Mapping, key: string, parentPath: string, keys: BlockKeys): Mapping | undefined {
    if (!has(parent, key)) return undefined;
    const path = join(parentPath, key);
    const value = parent[key];
    if (value === null) return {};
    if (!isMapping(value)) this.fail(path, `must be a mapping, not ${describe(value)}`);
    this.checkKeys(value, path, keys);
    return value;
  }

  checkKeys(value: Mapping, path: string, keys: BlockKeys): void {
    const known: readonly string[] = [...keys.used, ...keys.notActedOn];
    for (const key of Object.keys(value)) {
      if ((keys.notActedOn as readonly string[]).includes(key)) {
        this.notActedOn.push(join(path, key));
        this.checkDagsterType(value[key], join(path, key), BOOLEAN_KEYS.has(key));
      }
      if (known.includes(key)) continue;
      const guess = closest(key, known);
      const hint = guess ? `did you mean ${guess}?` : `expected one of ${known.join(', ')}`;
      this.fail(join(path, key), `unknown key (${hint})`);
    }
  }

  /**
   * run_coordinator's config, when the coordinator is Dagster's QueuedRunCoordinator (or the
   * class is left out). Any other coordinator does not queue runs, so its config means nothing
   * to Sluice and is not read.
   */
  queuedCoordinatorConfig(coordinator: Mapping): Mapping | undefined {
    if (has(coordinator, 'class')) {
      const cls = coordinator.class;
      if (typeof cls !== 'string') this.fail('run_coordinator.class', `must be a class name, not ${describe(cls)}`);
      if (cls !== 'QueuedRunCoordinator') return undefined;
    }
    return this.block(coordinator, 'config', 'run_coordinator', BLOCK_KEYS['run_coordinator.config']);
  }

  /** A key Sluice does not act on still gets Dagster's type check: an int, or a bool. */
  checkDagsterType(raw: unknown, path: string, isBoolean: boolean): void {
    if (isBoolean) this.boolean(raw, path);
    else this.integer(raw, path, 0, LIMITS.maxLimit);
  }

  /** Insists that a setting is given in one place at most, as Dagster does. */
  one<T>(found: Found<T>[]): T | undefined {
    const [first, second] = found;
    if (first && second) {
      this.fail(second.path, `is also set at ${first.path}; set it in one place only`);
    }
    return first?.value;
  }

  maxConcurrentRuns(raw: unknown, path: string): number {
    return this.integer(raw, path, -1, LIMITS.maxLimit, ' (-1: no limit)');
  }

  /** An explicit null says that pools without a limit of their own are unlimited. */
  defaultPoolLimit(raw: unknown, path: string): number | null {
    return raw === null ? null : this.integer(raw, path, 0, LIMITS.maxLimit);
  }

  granularity(raw: unknown, path: string): PoolGranularity {
    const { value, envName } = this.scalar(raw, path);
    const upper = typeof value === 'string' ? value.trim().toUpperCase() : undefined;
    if (upper === 'OP' || upper === 'RUN') return upper;
    return this.fail(path, `must be "op" or "run"${fromEnv(envName, value)}`);
  }

  timeout(raw: unknown, path: string): number {
    return this.integer(raw, path, 1, MAX_TIMEOUT_SECONDS, ' (seconds, at most 7 days)');
  }

  tagLimits(raw: unknown, path: string): TagConcurrencyLimit[] {
    // Dagster allows the list to be null: no tag limits.
    if (raw === null) return [];
    if (!Array.isArray(raw)) this.fail(path, `must be a list of {key, value, limit}, not ${describe(raw)}`);
    if (raw.length > LIMITS.maxTagLimits) this.fail(path, `must have at most ${LIMITS.maxTagLimits} entries`);

    const limits: TagConcurrencyLimit[] = [];
    const seen = new Map<string, number>();
    raw.forEach((entry: unknown, i) => {
      const limit = this.tagLimit(entry, `${path}[${i}]`);
      // Two entries for the same tag would be two limits on one counter: surely a mistake.
      const identity = JSON.stringify([limit.key, limit.value, limit.applyLimitPerUniqueValue]);
      const earlier = seen.get(identity);
      if (earlier !== undefined) {
        this.fail(`${path}[${i}]`, `duplicates ${path}[${earlier}] (same key, value and applyLimitPerUniqueValue)`);
      }
      seen.set(identity, i);
      limits.push(limit);
    });
    return limits;
  }

  tagLimit(raw: unknown, path: string): TagConcurrencyLimit {
    if (!isMapping(raw)) this.fail(path, `must be a mapping {key, value, limit}, not ${describe(raw)}`);
    this.checkKeys(raw, path, BLOCK_KEYS.tagLimit);
    if (!has(raw, 'key')) this.fail(`${path}.key`, 'is required');
    if (!has(raw, 'limit')) this.fail(`${path}.limit`, 'is required');
    const key = this.tagString(raw.key, `${path}.key`);
    const limit = this.integer(raw.limit, `${path}.limit`, 0, LIMITS.maxLimit);
    const value = has(raw, 'value') ? raw.value : null;

    // `value` is a tag value, or {applyLimitPerUniqueValue: bool}: a separate counter per value.
    if (isMapping(value) && !has(value, 'env')) {
      const valuePath = `${path}.value`;
      this.checkKeys(value, valuePath, BLOCK_KEYS.tagValue);
      const flagPath = `${valuePath}.applyLimitPerUniqueValue`;
      if (!has(value, 'applyLimitPerUniqueValue')) this.fail(flagPath, 'is required');
      const perValue = this.boolean(value.applyLimitPerUniqueValue, flagPath);
      return { key, value: null, applyLimitPerUniqueValue: perValue, limit };
    }
    // Dagster would reject `value: null`; Sluice reads it as "no value", which is what it says.
    if (value === null) return { key, value: null, applyLimitPerUniqueValue: false, limit };
    return { key, value: this.tagString(value, `${path}.value`), applyLimitPerUniqueValue: false, limit };
  }

  tagString(raw: unknown, path: string): string {
    const { value, envName } = this.scalar(raw, path);
    if (typeof value !== 'string') {
      // PyYAML reads `value: 123` or `value: yes` as a number or a boolean; Dagster rejects those too.
      const hint = typeof value === 'number' || typeof value === 'boolean' ? ' (put it in quotes)' : '';
      this.fail(path, `must be a string, not ${describe(value)}${hint}`);
    }
    if (value.length < 1 || value.length > LIMITS.maxNameLength) {
      this.fail(path, `must be 1 to ${LIMITS.maxNameLength} characters long${fromEnv(envName, value)}`);
    }
    return value;
  }

  integer(raw: unknown, path: string, min: number, max: number, note = ''): number {
    const { value, envName } = this.scalar(raw, path);
    // Environment variables are strings; Dagster's IntSource converts them, so does Sluice.
    const n =
      envName !== undefined && typeof value === 'string' && /^[+-]?\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max) return n;
    return this.fail(path, `must be an integer from ${min} to ${max}${note}${fromEnv(envName, value)}`);
  }

  boolean(raw: unknown, path: string): boolean {
    const { value, envName } = this.scalar(raw, path);
    if (typeof value === 'boolean') return value;
    if (envName !== undefined && typeof value === 'string') {
      const lower = value.trim().toLowerCase();
      if (lower === 'true' || lower === 'false') return lower === 'true';
    }
    return this.fail(path, `must be true or false${fromEnv(envName, value)}`);
  }

  /**
   * A scalar, resolving Dagster's `{env: NAME}` form from the environment.
   * `envName` is set when the value came from the environment (it is then a string).
   */
  scalar(raw: unknown, path: string): { value: unknown; envName?: string } {
    if (!isMapping(raw) || !has(raw, 'env')) return { value: raw };
    const keys = Object.keys(raw);
    if (keys.length !== 1)
      this.fail(path, `{env: NAME} takes no other key (found ${keys.filter((k) => k !== 'env').join(', ')})`);
    const name = raw.env;
    if (typeof name !== 'string' || name === '') this.fail(`${path}.env`, 'must name an environment variable');
    const value = this.env[name];
    if (value === undefined) this.fail(path, `environment variable ${name} is not set`);
    return { value, envName: name };
  }
}

function has(mapping: Mapping, key: string): boolean {
  return Object.hasOwn(mapping, key);
}

function isMapping(value: unknown): value is Mapping {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function join(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

function fromEnv(envName: string | undefined, value: unknown): string {
  return envName === undefined ? '' : ` (environment variable ${envName} is ${JSON.stringify(value)})`;
}

/** A short description of a wrong value, for messages. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (isMapping(value)) return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

/** The known key nearest to a misspelt one, if it is close enough to be the likely intent. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  // A shortened name (op_run_buffer for op_granularity_run_buffer): its words, in order, in one known key.
  return best ?? known.find((candidate) => wordsInOrder(key.toLowerCase(), candidate.toLowerCase()));
}

function wordsInOrder(key: string, candidate: string): boolean {
  const words = key.split('_').filter((w) => w !== '');
  const others = candidate.split('_');
  let at = 0;
  for (const word of words) {
    at = others.indexOf(word, at) + 1;
    if (at === 0) return false;
  }
  return words.length > 1;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
