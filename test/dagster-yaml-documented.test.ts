/**
 * The config reader against instance files shaped as Dagster documents them (test/fixtures/dagster):
 * the concurrency, run_coordinator, run_queue and run_monitoring blocks, every key Dagster's
 * schema accepts there, and the keys Sluice reads but does not act on, listed.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigFileError, readConcurrencyConfigFile } from '../src/dagster-yaml.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/dagster/${name}`, import.meta.url), 'utf8');
const read = (name: string, env: Record<string, string> = {}) => readConcurrencyConfigFile(fixture(name), name, env);

describe("Dagster's instance files", () => {
  it('concurrency: runs and pools are read, op_granularity_run_buffer included; nothing is left unread', () => {
    const { settings, notActedOn } = read('concurrency.yaml');
    expect(settings).toEqual({
      maxConcurrentRuns: 5,
      tagConcurrencyLimits: [
        { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 2 },
        { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 3 },
      ],
      poolGranularity: 'OP',
      defaultPoolLimit: 1,
      opGranularityRunBuffer: 1,
      runMonitoring: {},
    });
    expect(notActedOn).toEqual([]);
  });

  it('run_coordinator: the QueuedRunCoordinator config with {env:} values; daemon keys listed as not acted on', () => {
    const { settings, notActedOn } = read('run-coordinator.yaml', {
      DAGSTER_OVERALL_CONCURRENCY_LIMIT: '25',
      DAGSTER_REDSHIFT_CONCURRENCY_LIMIT: '4',
    });
    expect(settings).toEqual({
      maxConcurrentRuns: 25,
      tagConcurrencyLimits: [
        { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 4 },
        { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: false, limit: 10 },
      ],
      blockOpConcurrencyLimitedRuns: true,
      opGranularityRunBuffer: 2,
      runMonitoring: {},
    });
    expect(notActedOn).toEqual([
      'run_coordinator.config.dequeue_interval_seconds',
      'run_coordinator.config.dequeue_use_threads',
      'run_coordinator.config.dequeue_num_workers',
      'run_coordinator.config.max_user_code_failure_retries',
      'run_coordinator.config.user_code_failure_retry_delay',
    ]);
  });

  it('run_queue: limits read, block_op_concurrency_limited_runs read (enabled: false keeps admitting regardless)', () => {
    const { settings, notActedOn } = read('run-queue.yaml');
    expect(settings).toEqual({
      maxConcurrentRuns: 15,
      tagConcurrencyLimits: [
        { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 4 },
        { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: false, limit: 10 },
      ],
      blockOpConcurrencyLimitedRuns: false,
      opGranularityRunBuffer: 0,
      runMonitoring: {},
    });
    expect(notActedOn).toContain('run_queue.max_user_code_failure_retries');
  });

  it('run_monitoring: start, cancel and max runtime acted on; the daemon keys listed', () => {
    const { settings, notActedOn } = read('run-monitoring.yaml');
    expect(settings).toEqual({
      runMonitoring: { startTimeoutSeconds: 180, cancelTimeoutSeconds: 180, maxRuntimeSeconds: 7200 },
    });
    expect(notActedOn).toEqual([
      'run_monitoring.enabled',
      'run_monitoring.max_resume_run_attempts',
      'run_monitoring.poll_interval_seconds',
      'run_monitoring.cancellation_thread_poll_interval_seconds',
      'run_monitoring.free_slots_after_run_end_seconds',
    ]);
  });

  it('every fixture together, as one instance file with one place per setting, reads without error', () => {
    const text = [fixture('concurrency.yaml'), fixture('run-monitoring.yaml')].join('\n');
    expect(() => readConcurrencyConfigFile(text, 'dagster.yaml', {})).not.toThrow();
  });
});

describe('the OP-granularity settings, validated though not acted on yet', () => {
  const error = (text: string) => {
    try {
      readConcurrencyConfigFile(text, 'dagster.yaml', {});
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigFileError);
      return (e as Error).message;
    }
    throw new Error('expected a ConfigFileError');
  };

  it('a buffer that is not a whole number of runs names its key', () => {
    expect(error('concurrency: {pools: {op_granularity_run_buffer: -1}}')).toBe(
      'dagster.yaml: concurrency.pools.op_granularity_run_buffer: must be an integer from 0 to 1000000',
    );
    expect(error('run_queue: {block_op_concurrency_limited_runs: {op_concurrency_slot_buffer: 1.5}}')).toBe(
      'dagster.yaml: run_queue.block_op_concurrency_limited_runs.op_concurrency_slot_buffer: must be an integer from 0 to 1000000',
    );
  });

  it('enabled must be true or false; a misspelt key inside the block is named', () => {
    expect(error('run_queue: {block_op_concurrency_limited_runs: {enabled: maybe}}')).toBe(
      'dagster.yaml: run_queue.block_op_concurrency_limited_runs.enabled: must be true or false',
    );
    expect(error('run_queue: {block_op_concurrency_limited_runs: {enable: true}}')).toMatch(
      /run_queue\.block_op_concurrency_limited_runs\.enable: unknown key \(did you mean enabled\?\)/,
    );
  });

  it('the buffer given in both places is an error naming both', () => {
    expect(
      error(
        'concurrency: {pools: {op_granularity_run_buffer: 1}}\nrun_queue: {block_op_concurrency_limited_runs: {op_concurrency_slot_buffer: 2}}',
      ),
    ).toBe(
      'dagster.yaml: run_queue.block_op_concurrency_limited_runs.op_concurrency_slot_buffer: is also set at concurrency.pools.op_granularity_run_buffer; set it in one place only',
    );
  });

  it('max_runtime_seconds must be a whole number of seconds; 0 means none', () => {
    expect(error('run_monitoring: {max_runtime_seconds: -5}')).toBe(
      'dagster.yaml: run_monitoring.max_runtime_seconds: must be an integer from 0 to 31536000 (seconds, 0: none)',
    );
    expect(
      readConcurrencyConfigFile('run_monitoring: {max_runtime_seconds: 0}', 'f', {}).settings.runMonitoring,
    ).toEqual({ maxRuntimeSeconds: null });
  });

  it('a key Sluice does not act on still gets the type Dagster gives it', () => {
    expect(error('run_monitoring: {enabled: sometimes}')).toBe(
      'dagster.yaml: run_monitoring.enabled: must be true or false',
    );
    expect(error('run_monitoring: {poll_interval_seconds: soon}')).toMatch(
      /run_monitoring.poll_interval_seconds: must be an integer/,
    );
  });
});

describe("exactly the keys Dagster's schema accepts (Dagster 1.10 to 1.13)", () => {
  // Printed from Dagster's own instance schema; see the file's header for the releases compared.
  const lines = fixture('schema-keys.txt')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'))
    .map((line) => {
      const [path, type] = line.split(': ') as [string, string];
      return { path, type };
    });
  const VALUES: Record<string, unknown> = { Int: 2, 'Int|env': 2, Bool: true, String: 'op' };

  /** A file setting one value at a dotted path; run_coordinator.config needs Dagster's queued coordinator named. */
  function fileSetting(path: string, value: unknown): string {
    const nested = path
      .split('.')
      .reverse()
      .reduce<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, Record<string, unknown>>;
    if (nested.run_coordinator) {
      nested.run_coordinator = {
        module: 'dagster.core.run_coordinator',
        class: 'QueuedRunCoordinator',
        ...nested.run_coordinator,
      };
    }
    return JSON.stringify(nested);
  }

  const leaves = lines.filter((l) => !l.path.includes('[]') && l.type in VALUES);
  it.each(leaves)('$path ($type) is accepted', ({ path, type }) => {
    expect(() => readConcurrencyConfigFile(fileSetting(path, VALUES[type]), 'dagster.yaml', {})).not.toThrow();
  });

  it.each(lines.filter((l) => l.type === 'Int|env'))('$path also takes {env: VAR}', ({ path }) => {
    expect(() => readConcurrencyConfigFile(fileSetting(path, { env: 'N' }), 'dagster.yaml', { N: '3' })).not.toThrow();
  });

  it.each(lines.filter((l) => l.path.endsWith('.tag_concurrency_limits')))(
    '$path takes entries with key, limit, and a value or applyLimitPerUniqueValue',
    ({ path }) => {
      const entries = [
        { key: 'team', value: 'a', limit: 1 },
        { key: 'region', limit: 2 },
        { key: 'owner', value: { applyLimitPerUniqueValue: true }, limit: 3 },
      ];
      expect(() => readConcurrencyConfigFile(fileSetting(path, entries), 'dagster.yaml', {})).not.toThrow();
    },
  );

  const blocks = [
    'concurrency',
    ...lines.filter((l) => l.type === 'mapping').map((l) => l.path),
    'run_queue',
    'run_monitoring',
    'run_coordinator.config',
  ];
  it.each(blocks)('a key Dagster does not know inside %s is refused, as Dagster refuses it', (block) => {
    expect(() => readConcurrencyConfigFile(fileSetting(`${block}.not_a_dagster_key`, 1), 'dagster.yaml', {})).toThrow(
      ConfigFileError,
    );
  });

  it('concurrency.pools.op_run_buffer is refused, as every Dagster release from 1.10 refuses it, naming the key Dagster has', () => {
    expect(() => readConcurrencyConfigFile('concurrency: {pools: {op_run_buffer: 1}}', 'dagster.yaml', {})).toThrow(
      'dagster.yaml: concurrency.pools.op_run_buffer: unknown key (did you mean op_granularity_run_buffer?)',
    );
  });
});
