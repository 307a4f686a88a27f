import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ConfigFileError,
  type ConfigFileSettings,
  parseConcurrencyConfigFile,
  readConcurrencyConfigFile,
} from '../src/dagster-yaml.js';
import { LIMITS } from '../src/domain/config.js';

const FILE = 'dagster.yaml';

/** YAML written indented inside a template literal: drops the common indentation. */
function yaml(text: string): string {
  const lines = text.replace(/^\n/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)?.[0].length ?? 0));
  return lines.map((l) => l.slice(indent)).join('\n');
}

function parse(text: string, env: Record<string, string | undefined> = {}): ConfigFileSettings {
  return parseConcurrencyConfigFile(yaml(text), FILE, env);
}

/** The ConfigFileError that parsing throws (fails the test if it throws nothing or something else). */
function errorOf(text: string, env: Record<string, string | undefined> = {}): ConfigFileError {
  try {
    parse(text, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigFileError);
    return e as ConfigFileError;
  }
  throw new Error('expected a ConfigFileError, but the file parsed');
}

describe('parseConcurrencyConfigFile', () => {
  describe('files without concurrency settings', () => {
    it('given an empty file, when parsed, then nothing is set', () => {
      expect(parseConcurrencyConfigFile('', FILE, {})).toEqual({ runMonitoring: {} });
    });

    it('given a file of comments only, when parsed, then nothing is set', () => {
      expect(parse('# nothing here\n# yet\n')).toEqual({ runMonitoring: {} });
    });

    it('given only blocks Sluice does not use, when parsed, then they are ignored, typos and all', () => {
      const settings = parse(`
        storage:
          postgres:
            postgres_db:
              username: dagster
        telemetry:
          enabled: false
        run_launcher:
          module: dagster_k8s
          class: K8sRunLauncher
          config:
            whatever_it_wants: 1
        some_future_block: {anything: goes}
      `);
      expect(settings).toEqual({ runMonitoring: {} });
    });

    it('given blocks left empty (all lines commented out), when parsed, then they count as empty', () => {
      const settings = parse(`
        concurrency:
          runs:
          # max_concurrent_runs: 5
        run_monitoring:
        run_queue:
      `);
      expect(settings).toEqual({ runMonitoring: {} });
    });
  });

  describe('a full, realistic dagster.yaml', () => {
    it('given every kind of Dagster setting, when parsed, then only the concurrency settings come out', () => {
      const settings = parse(`
        # dagster.yaml for the data platform
        storage:
          postgres:
            postgres_db:
              username: {env: DAGSTER_PG_USERNAME}
              password: {env: DAGSTER_PG_PASSWORD}
              hostname: {env: DAGSTER_PG_HOST}
              db_name: dagster
              port: 5432

        compute_logs:
          module: dagster_aws.s3.compute_log_manager
          class: S3ComputeLogManager
          config:
            bucket: my-dagster-logs
            prefix: compute-logs

        run_launcher:
          module: dagster_docker
          class: DockerRunLauncher
          config:
            env_vars: [DAGSTER_PG_USERNAME, DAGSTER_PG_PASSWORD]
            network: dagster_network

        scheduler:
          module: dagster.core.scheduler
          class: DagsterDaemonScheduler

        telemetry:
          enabled: false

        retention:
          schedule:
            purge_after_days: 90

        concurrency:
          runs:
            max_concurrent_runs: 25
            tag_concurrency_limits:
              - key: database
                value: redshift
                limit: 4
              - key: dagster/backfill
                value:
                  applyLimitPerUniqueValue: true
                limit: 3
              - key: team
                limit: 10
          pools:
            granularity: run
            default_limit: 2
            op_granularity_run_buffer: 1

        run_monitoring:
          enabled: true
          start_timeout_seconds: 600
          cancel_timeout_seconds: 300
          max_resume_run_attempts: 3
          poll_interval_seconds: 120
      `);
      expect(settings).toEqual({
        maxConcurrentRuns: 25,
        tagConcurrencyLimits: [
          { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 4 },
          { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 3 },
          { key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 10 },
        ],
        poolGranularity: 'RUN',
        defaultPoolLimit: 2,
        opGranularityRunBuffer: 1,
        runMonitoring: { startTimeoutSeconds: 600, cancelTimeoutSeconds: 300 },
      });
    });

    it('given the shipped examples/dagster.yaml, when parsed, then it gives the documented limits', () => {
      const text = readFileSync(new URL('../examples/dagster.yaml', import.meta.url), 'utf8');
      expect(parseConcurrencyConfigFile(text, 'examples/dagster.yaml', {})).toEqual({
        maxConcurrentRuns: 10,
        tagConcurrencyLimits: [
          { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 3 },
          { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 2 },
          { key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 5 },
        ],
        poolGranularity: 'OP',
        defaultPoolLimit: 1,
        runMonitoring: { startTimeoutSeconds: 300, cancelTimeoutSeconds: 180 },
      });
    });

    it('given the Dagster deployment example (SluiceRunCoordinator selected), when parsed, then its limits are read and the coordinator config is left to Dagster', () => {
      const text = readFileSync(new URL('../examples/dagster/dagster.yaml', import.meta.url), 'utf8');
      expect(parseConcurrencyConfigFile(text, 'examples/dagster/dagster.yaml', {})).toEqual({
        maxConcurrentRuns: 4,
        tagConcurrencyLimits: [
          { key: 'team', value: null, applyLimitPerUniqueValue: true, limit: 1 },
          { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 2 },
        ],
        poolGranularity: 'OP',
        defaultPoolLimit: 1,
        runMonitoring: { startTimeoutSeconds: 180, cancelTimeoutSeconds: 180 },
      });
    });
  });

  describe('the concurrency block', () => {
    it('given max_concurrent_runs of -1, 0 and 1000000, when parsed, then each is accepted', () => {
      for (const n of [-1, 0, 1_000_000]) {
        expect(parse(`concurrency: {runs: {max_concurrent_runs: ${n}}}`).maxConcurrentRuns).toBe(n);
      }
    });

    it('given max_concurrent_runs below -1, when parsed, then the error names the key', () => {
      const error = errorOf(`
        concurrency:
          runs:
            max_concurrent_runs: -2
      `);
      expect(error.message).toBe(
        'dagster.yaml: concurrency.runs.max_concurrent_runs: must be an integer from -1 to 1000000 (-1: no limit)',
      );
      expect(error.source).toBe('dagster.yaml');
      expect(error.key).toBe('concurrency.runs.max_concurrent_runs');
    });

    it.each([
      ['1000001', 'above the maximum'],
      ['2.5', 'a fraction'],
      ['"5"', 'a quoted number'],
      ['ten', 'a word'],
      ['null', 'null'],
      ['[5]', 'a list'],
    ])('given max_concurrent_runs of %s (%s), when parsed, then it is rejected naming the key', (value) => {
      const error = errorOf(`concurrency: {runs: {max_concurrent_runs: ${value}}}`);
      expect(error.key).toBe('concurrency.runs.max_concurrent_runs');
      expect(error.message).toMatch(/^dagster\.yaml: concurrency\.runs\.max_concurrent_runs: must be an integer/);
    });

    it('given a tag limit with a value, when parsed, then it limits that exact tag', () => {
      const settings = parse(`
        concurrency:
          runs:
            tag_concurrency_limits:
              - key: database
                value: redshift
                limit: 2
      `);
      expect(settings.tagConcurrencyLimits).toEqual([
        { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 2 },
      ]);
    });

    it('given a tag limit without a value, when parsed, then it limits the key whatever the value', () => {
      const settings = parse(`
        concurrency:
          runs:
            tag_concurrency_limits:
              - {key: team, limit: 7}
      `);
      expect(settings.tagConcurrencyLimits).toEqual([
        { key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 7 },
      ]);
    });

    it('given value {applyLimitPerUniqueValue: true}, when parsed, then there is a limit per unique value', () => {
      const settings = parse(`
        concurrency:
          runs:
            tag_concurrency_limits:
              - key: dagster/backfill
                value:
                  applyLimitPerUniqueValue: true
                limit: 3
      `);
      expect(settings.tagConcurrencyLimits).toEqual([
        { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 3 },
      ]);
    });

    it('given value {applyLimitPerUniqueValue: false}, when parsed, then it is a limit on the key without a value', () => {
      const settings = parse(`
        concurrency:
          runs:
            tag_concurrency_limits:
              - key: dagster/backfill
                value: {applyLimitPerUniqueValue: false}
                limit: 3
      `);
      expect(settings.tagConcurrencyLimits).toEqual([
        { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: false, limit: 3 },
      ]);
    });

    it('given tag_concurrency_limits left empty, when parsed, then there are no tag limits (Dagster allows null)', () => {
      expect(parse('concurrency: {runs: {tag_concurrency_limits: }}').tagConcurrencyLimits).toEqual([]);
      expect(parse('concurrency: {runs: {tag_concurrency_limits: []}}').tagConcurrencyLimits).toEqual([]);
    });

    it('given granularity in any case, when parsed, then it becomes OP or RUN', () => {
      expect(parse('concurrency: {pools: {granularity: op}}').poolGranularity).toBe('OP');
      expect(parse('concurrency: {pools: {granularity: RUN}}').poolGranularity).toBe('RUN');
      expect(parse("concurrency: {pools: {granularity: 'Run'}}").poolGranularity).toBe('RUN');
    });

    it('given an unknown granularity, when parsed, then the error names the key', () => {
      expect(errorOf('concurrency: {pools: {granularity: step}}').message).toBe(
        'dagster.yaml: concurrency.pools.granularity: must be "op" or "run"',
      );
    });

    it('given pools.default_limit, when parsed, then it is the default pool limit', () => {
      expect(parse('concurrency: {pools: {default_limit: 3}}').defaultPoolLimit).toBe(3);
      expect(parse('concurrency: {pools: {default_limit: 0}}').defaultPoolLimit).toBe(0);
    });

    it('given pools.default_limit: null, when parsed, then pools without a limit are explicitly unlimited', () => {
      expect(parse('concurrency: {pools: {default_limit: null}}').defaultPoolLimit).toBeNull();
    });

    it('given pools.default_limit out of range, when parsed, then the error names the key', () => {
      expect(errorOf('concurrency: {pools: {default_limit: -1}}').message).toBe(
        'dagster.yaml: concurrency.pools.default_limit: must be an integer from 0 to 1000000',
      );
    });

    it('given the older default_op_concurrency_limit, when parsed, then it sets the default pool limit', () => {
      expect(parse('concurrency: {default_op_concurrency_limit: 4}').defaultPoolLimit).toBe(4);
    });

    it('given both default_op_concurrency_limit and pools.default_limit, when parsed, then the error names both', () => {
      const error = errorOf(`
        concurrency:
          default_op_concurrency_limit: 1
          pools:
            default_limit: 1
      `);
      expect(error.message).toContain('concurrency.default_op_concurrency_limit');
      expect(error.message).toContain('concurrency.pools.default_limit');
    });

    it('given pools without default_limit next to default_op_concurrency_limit, when parsed, then both are read', () => {
      const settings = parse(`
        concurrency:
          default_op_concurrency_limit: 2
          pools:
            granularity: op
      `);
      expect(settings).toMatchObject({ defaultPoolLimit: 2, poolGranularity: 'OP' });
    });
  });

  describe('the older run_coordinator and run_queue blocks', () => {
    it('given a QueuedRunCoordinator config, when parsed, then its limits are read', () => {
      const settings = parse(`
        run_coordinator:
          module: dagster.core.run_coordinator
          class: QueuedRunCoordinator
          config:
            max_concurrent_runs: 5
            tag_concurrency_limits:
              - key: dagster/backfill
                value: {applyLimitPerUniqueValue: true}
                limit: 1
            dequeue_interval_seconds: 5
      `);
      expect(settings).toEqual({
        maxConcurrentRuns: 5,
        tagConcurrencyLimits: [{ key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 1 }],
        runMonitoring: {},
      });
    });

    it('given run_coordinator config without a class, when parsed, then it is read as a queued coordinator', () => {
      expect(parse('run_coordinator: {config: {max_concurrent_runs: 3}}').maxConcurrentRuns).toBe(3);
    });

    it('given another coordinator class, when parsed, then its config is ignored entirely', () => {
      const settings = parse(`
        run_coordinator:
          module: dagster.core.run_coordinator
          class: DefaultRunCoordinator
          config:
            max_concurrent_runs: 5
            something_of_its_own: true
      `);
      expect(settings).toEqual({ runMonitoring: {} });
    });

    it('given another coordinator class, when parsed, then it does not conflict with concurrency.runs', () => {
      const settings = parse(`
        run_coordinator:
          class: DefaultRunCoordinator
          config: {max_concurrent_runs: 5}
        concurrency:
          runs: {max_concurrent_runs: 8}
      `);
      expect(settings.maxConcurrentRuns).toBe(8);
    });

    it('given a run_queue block, when parsed, then its limits are read', () => {
      const settings = parse(`
        run_queue:
          max_concurrent_runs: 15
          tag_concurrency_limits:
            - key: team
              value: ml
              limit: 2
          max_user_code_failure_retries: 3
          user_code_failure_retry_delay: 10
          block_op_concurrency_limited_runs:
            enabled: true
            op_concurrency_slot_buffer: 1
      `);
      expect(settings).toEqual({
        maxConcurrentRuns: 15,
        tagConcurrencyLimits: [{ key: 'team', value: 'ml', applyLimitPerUniqueValue: false, limit: 2 }],
        runMonitoring: {},
        blockOpConcurrencyLimitedRuns: true,
        opGranularityRunBuffer: 1,
      });
    });

    it('given a bad value in run_coordinator.config, when parsed, then the error names that key', () => {
      const error = errorOf(`
        run_coordinator:
          class: QueuedRunCoordinator
          config:
            tag_concurrency_limits:
              - {key: a, limit: 1}
              - {key: b, limit: -3}
      `);
      expect(error.message).toBe(
        'dagster.yaml: run_coordinator.config.tag_concurrency_limits[1].limit: must be an integer from 0 to 1000000',
      );
    });

    it('given a run_coordinator class that is not a string, when parsed, then the error names the key', () => {
      expect(errorOf('run_coordinator: {class: [QueuedRunCoordinator]}').key).toBe('run_coordinator.class');
    });
  });

  describe('a setting given in two places', () => {
    it('given max_concurrent_runs in concurrency.runs and run_coordinator.config, when parsed, then the error names both', () => {
      const error = errorOf(`
        concurrency:
          runs:
            max_concurrent_runs: 10
        run_coordinator:
          module: dagster.core.run_coordinator
          class: QueuedRunCoordinator
          config:
            max_concurrent_runs: 10
      `);
      expect(error.message).toBe(
        'dagster.yaml: run_coordinator.config.max_concurrent_runs: is also set at concurrency.runs.max_concurrent_runs; set it in one place only',
      );
    });

    it('given tag_concurrency_limits in concurrency.runs and run_queue, when parsed, then the error names both', () => {
      const error = errorOf(`
        concurrency:
          runs:
            tag_concurrency_limits: [{key: a, limit: 1}]
        run_queue:
          tag_concurrency_limits: [{key: a, limit: 1}]
      `);
      expect(error.key).toBe('run_queue.tag_concurrency_limits');
      expect(error.message).toContain('concurrency.runs.tag_concurrency_limits');
    });

    it('given max_concurrent_runs in concurrency.runs and run_queue, when parsed, then the error names both', () => {
      const error = errorOf(`
        concurrency: {runs: {max_concurrent_runs: 1}}
        run_queue: {max_concurrent_runs: 2}
      `);
      expect(error.message).toContain('run_queue.max_concurrent_runs');
      expect(error.message).toContain('concurrency.runs.max_concurrent_runs');
    });

    it('given both run_queue and run_coordinator, when parsed, then the error names both (as Dagster refuses them)', () => {
      const error = errorOf(`
        run_queue:
          max_concurrent_runs: 5
        run_coordinator:
          class: QueuedRunCoordinator
          config:
            tag_concurrency_limits: []
      `);
      expect(error.message).toBe(
        'dagster.yaml: run_queue: cannot be used together with run_coordinator; keep one of them',
      );
    });

    it('given different settings in different places, when parsed, then they combine', () => {
      const settings = parse(`
        concurrency:
          runs: {max_concurrent_runs: 4}
        run_queue:
          tag_concurrency_limits: [{key: team, limit: 1}]
      `);
      expect(settings).toMatchObject({
        maxConcurrentRuns: 4,
        tagConcurrencyLimits: [{ key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 1 }],
      });
    });
  });

  describe('run monitoring', () => {
    it('given start and cancel timeouts, when parsed, then they are collected into runMonitoring', () => {
      expect(parse('run_monitoring: {start_timeout_seconds: 180, cancel_timeout_seconds: 60}').runMonitoring).toEqual({
        startTimeoutSeconds: 180,
        cancelTimeoutSeconds: 60,
      });
    });

    it('given a timeout of exactly 7 days, when parsed, then it is accepted', () => {
      expect(parse('run_monitoring: {cancel_timeout_seconds: 604800}').runMonitoring.cancelTimeoutSeconds).toBe(
        604_800,
      );
    });

    it.each(['0', '-5', '604801', '1.5'])(
      'given start_timeout_seconds of %s, when parsed, then the error names the key',
      (value) => {
        const error = errorOf(`run_monitoring: {start_timeout_seconds: ${value}}`);
        expect(error.message).toBe(
          'dagster.yaml: run_monitoring.start_timeout_seconds: must be an integer from 1 to 604800 (seconds, at most 7 days)',
        );
      },
    );
  });

  describe("Dagster's {env: NAME} form", () => {
    it('given integers from the environment as strings, when parsed, then they are read as integers', () => {
      const settings = parse(
        `
        concurrency:
          runs:
            max_concurrent_runs: {env: MAX_RUNS}
            tag_concurrency_limits:
              - key: {env: TAG_KEY}
                value: {env: TAG_VALUE}
                limit: {env: TAG_LIMIT}
          pools:
            granularity: {env: GRANULARITY}
            default_limit: {env: POOL_LIMIT}
        run_monitoring:
          start_timeout_seconds: {env: START_TIMEOUT}
      `,
        {
          MAX_RUNS: '5',
          TAG_KEY: 'database',
          TAG_VALUE: 'redshift',
          TAG_LIMIT: ' 2 ',
          GRANULARITY: 'run',
          POOL_LIMIT: '1',
          START_TIMEOUT: '240',
        },
      );
      expect(settings).toEqual({
        maxConcurrentRuns: 5,
        tagConcurrencyLimits: [{ key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 2 }],
        poolGranularity: 'RUN',
        defaultPoolLimit: 1,
        runMonitoring: { startTimeoutSeconds: 240 },
      });
    });

    it('given applyLimitPerUniqueValue from the environment, when parsed, then "true" is read as true', () => {
      const settings = parse(
        'concurrency: {runs: {tag_concurrency_limits: [{key: k, value: {applyLimitPerUniqueValue: {env: PER}}, limit: 1}]}}',
        { PER: 'true' },
      );
      expect(settings.tagConcurrencyLimits?.[0]?.applyLimitPerUniqueValue).toBe(true);
    });

    it('given a variable that is not set, when parsed, then the error names the key and the variable', () => {
      const error = errorOf('concurrency: {runs: {max_concurrent_runs: {env: SLUICE_MAX_RUNS}}}', {});
      expect(error.message).toBe(
        'dagster.yaml: concurrency.runs.max_concurrent_runs: environment variable SLUICE_MAX_RUNS is not set',
      );
    });

    it('given a variable that is not an integer, when parsed, then the error names the key, the variable and its value', () => {
      const error = errorOf('concurrency: {runs: {max_concurrent_runs: {env: MAX_RUNS}}}', { MAX_RUNS: 'ten' });
      expect(error.message).toBe(
        'dagster.yaml: concurrency.runs.max_concurrent_runs: must be an integer from -1 to 1000000 (-1: no limit) (environment variable MAX_RUNS is "ten")',
      );
    });

    it('given {env: NAME} with another key beside it, when parsed, then it is rejected', () => {
      const error = errorOf('concurrency: {runs: {max_concurrent_runs: {env: X, default: 3}}}', { X: '1' });
      expect(error.key).toBe('concurrency.runs.max_concurrent_runs');
      expect(error.message).toContain('default');
    });

    it('given the default environment, when parsed, then process.env is used', () => {
      const name = 'SLUICE_CONFIG_FILE_TEST_MAX_RUNS';
      process.env[name] = '7';
      try {
        const settings = parseConcurrencyConfigFile(`run_queue: {max_concurrent_runs: {env: ${name}}}`, FILE);
        expect(settings.maxConcurrentRuns).toBe(7);
      } finally {
        delete process.env[name];
      }
    });
  });

  describe('unknown keys', () => {
    it.each([
      ['concurrency: {runs: {max_concurent_runs: 5}}', 'concurrency.runs.max_concurent_runs', 'max_concurrent_runs'],
      ['concurrency: {pool: {default_limit: 1}}', 'concurrency.pool', 'pools'],
      ['concurrency: {pools: {granulrity: op}}', 'concurrency.pools.granulrity', 'granularity'],
      [
        'concurrency: {runs: {tag_concurrency_limits: [{key: a, lmit: 1}]}}',
        'concurrency.runs.tag_concurrency_limits[0].lmit',
        'limit',
      ],
      [
        'concurrency: {runs: {tag_concurrency_limits: [{key: a, value: {applyLimitPerUniqueValues: true}, limit: 1}]}}',
        'concurrency.runs.tag_concurrency_limits[0].value.applyLimitPerUniqueValues',
        'applyLimitPerUniqueValue',
      ],
      ['run_queue: {max_concurrent_run: 5}', 'run_queue.max_concurrent_run', 'max_concurrent_runs'],
      [
        'run_coordinator: {config: {tag_concurrency_limit: []}}',
        'run_coordinator.config.tag_concurrency_limit',
        'tag_concurrency_limits',
      ],
      ['run_coordinator: {clas: QueuedRunCoordinator}', 'run_coordinator.clas', 'class'],
      ['run_monitoring: {start_timeout_secs: 5}', 'run_monitoring.start_timeout_secs', 'start_timeout_seconds'],
    ])('given %s, when parsed, then the typo is named with a suggestion', (text, key, suggestion) => {
      const error = errorOf(text);
      expect(error.key).toBe(key);
      expect(error.message).toBe(`dagster.yaml: ${key}: unknown key (did you mean ${suggestion}?)`);
    });

    it('given a key unlike any known one, when parsed, then the error lists the keys expected there', () => {
      expect(errorOf('concurrency: {runs: {zzz: 1}}').message).toBe(
        'dagster.yaml: concurrency.runs.zzz: unknown key (expected one of max_concurrent_runs, tag_concurrency_limits)',
      );
    });

    it('given Dagster keys Sluice does not act on inside the blocks it reads, when parsed, then they are read and listed', () => {
      const reading = readConcurrencyConfigFile(
        `
        concurrency:
          pools:
            op_granularity_run_buffer: 2
        run_queue:
          max_user_code_failure_retries: 3
          user_code_failure_retry_delay: 60
          block_op_concurrency_limited_runs: {enabled: true}
          dequeue_interval_seconds: 5
          dequeue_use_threads: true
          dequeue_num_workers: 4
        run_monitoring:
          enabled: true
          poll_interval_seconds: 120
          max_resume_run_attempts: 3
          max_runtime_seconds: 7200
          free_slots_after_run_end_seconds: 60
          cancellation_thread_poll_interval_seconds: 10
      `,
        FILE,
        {},
      );
      expect(reading.settings).toEqual({
        runMonitoring: { maxRuntimeSeconds: 7200 },
        opGranularityRunBuffer: 2,
        blockOpConcurrencyLimitedRuns: true,
      });
      expect(reading.notActedOn).toEqual([
        'run_queue.max_user_code_failure_retries',
        'run_queue.user_code_failure_retry_delay',
        'run_queue.dequeue_interval_seconds',
        'run_queue.dequeue_use_threads',
        'run_queue.dequeue_num_workers',
        'run_monitoring.enabled',
        'run_monitoring.poll_interval_seconds',
        'run_monitoring.max_resume_run_attempts',
        'run_monitoring.free_slots_after_run_end_seconds',
        'run_monitoring.cancellation_thread_poll_interval_seconds',
      ]);

      const coordinator = parse(`
        run_coordinator:
          module: dagster.core.run_coordinator
          class: QueuedRunCoordinator
          config:
            dequeue_interval_seconds: 5
            dequeue_use_threads: true
            dequeue_num_workers: 4
            max_user_code_failure_retries: 3
            user_code_failure_retry_delay: 60
            block_op_concurrency_limited_runs: {enabled: false}
      `);
      expect(coordinator).toEqual({ runMonitoring: {}, blockOpConcurrencyLimitedRuns: false });
    });
  });

  describe('tag limit validation', () => {
    const withLimits = (entries: string) => `concurrency: {runs: {tag_concurrency_limits: ${entries}}}`;
    const base = 'concurrency.runs.tag_concurrency_limits';

    it('given the brief example of a bad limit, when parsed, then the message is exactly the documented one', () => {
      const error = errorOf(withLimits('[{key: a, limit: 1}, {key: b, limit: 1000001}]'));
      expect(error.message).toBe(
        'dagster.yaml: concurrency.runs.tag_concurrency_limits[1].limit: must be an integer from 0 to 1000000',
      );
    });

    it('given a limit of 0, when parsed, then it is accepted (the tag admits nothing)', () => {
      expect(parse(withLimits('[{key: a, limit: 0}]')).tagConcurrencyLimits?.[0]?.limit).toBe(0);
    });

    it.each([
      ['[{limit: 1}]', `${base}[0].key`, 'is required'],
      ['[{key: a}]', `${base}[0].limit`, 'is required'],
      ['[{key: "", limit: 1}]', `${base}[0].key`, 'must be 1 to 255 characters long'],
      [`[{key: ${'k'.repeat(256)}, limit: 1}]`, `${base}[0].key`, 'must be 1 to 255 characters long'],
      [`[{key: a, value: ${'v'.repeat(256)}, limit: 1}]`, `${base}[0].value`, 'must be 1 to 255 characters long'],
      ['[{key: a, value: "", limit: 1}]', `${base}[0].value`, 'must be 1 to 255 characters long'],
      ['[{key: a, value: 123, limit: 1}]', `${base}[0].value`, 'must be a string, not 123 (put it in quotes)'],
      ['[{key: a, value: yes, limit: 1}]', `${base}[0].value`, 'must be a string, not true (put it in quotes)'],
      [
        '[{key: a, value: {applyLimitPerUniqueValue: 1}, limit: 1}]',
        `${base}[0].value.applyLimitPerUniqueValue`,
        'must be true or false',
      ],
      ['[{key: a, value: {}, limit: 1}]', `${base}[0].value.applyLimitPerUniqueValue`, 'is required'],
      ['[{key: a, limit: 1.5}]', `${base}[0].limit`, 'must be an integer from 0 to 1000000'],
      ['[{key: a, limit: "3"}]', `${base}[0].limit`, 'must be an integer from 0 to 1000000'],
      ['[a, b]', `${base}[0]`, 'must be a mapping {key, value, limit}, not "a"'],
      ['{key: a, limit: 1}', base, 'must be a list of {key, value, limit}, not a mapping'],
    ])('given tag limits %s, when parsed, then the error names %s', (entries, key, message) => {
      const error = errorOf(withLimits(entries));
      expect(error.key).toBe(key);
      expect(error.message).toBe(`dagster.yaml: ${key}: ${message}`);
    });

    it('given keys and values of exactly 255 characters, when parsed, then they are accepted', () => {
      const long = 'x'.repeat(255);
      expect(parse(withLimits(`[{key: ${long}, value: ${long}, limit: 1}]`)).tagConcurrencyLimits).toEqual([
        { key: long, value: long, applyLimitPerUniqueValue: false, limit: 1 },
      ]);
    });

    it('given more entries than LIMITS.maxTagLimits, when parsed, then the list is rejected', () => {
      const entries = Array.from({ length: LIMITS.maxTagLimits + 1 }, (_, i) => `{key: k${i}, limit: 1}`);
      expect(errorOf(withLimits(`[${entries.join(', ')}]`)).message).toBe(
        `dagster.yaml: ${base}: must have at most ${LIMITS.maxTagLimits} entries`,
      );
    });

    it('given exactly LIMITS.maxTagLimits entries, when parsed, then they are all read', () => {
      const entries = Array.from({ length: LIMITS.maxTagLimits }, (_, i) => `{key: k${i}, limit: 1}`);
      expect(parse(withLimits(`[${entries.join(', ')}]`)).tagConcurrencyLimits).toHaveLength(LIMITS.maxTagLimits);
    });

    it('given the same key and value twice, when parsed, then the later entry is named as a duplicate', () => {
      const error = errorOf(
        withLimits('[{key: a, value: x, limit: 1}, {key: b, limit: 1}, {key: a, value: x, limit: 5}]'),
      );
      expect(error.message).toBe(
        `dagster.yaml: ${base}[2]: duplicates ${base}[0] (same key, value and applyLimitPerUniqueValue)`,
      );
    });

    it('given the same key twice with no value, when parsed, then it is a duplicate too', () => {
      const error = errorOf(
        withLimits('[{key: a, limit: 1}, {key: a, value: {applyLimitPerUniqueValue: false}, limit: 2}]'),
      );
      expect(error.key).toBe(`${base}[1]`);
    });

    it('given one key limited overall, per unique value and for one value, when parsed, then these are distinct limits', () => {
      const settings = parse(
        withLimits(
          '[{key: a, limit: 10}, {key: a, value: {applyLimitPerUniqueValue: true}, limit: 2}, {key: a, value: x, limit: 1}]',
        ),
      );
      expect(settings.tagConcurrencyLimits).toHaveLength(3);
    });
  });

  describe('YAML problems', () => {
    it('given a YAML syntax error, when parsed, then the error gives its line', () => {
      const error = errorOf(`
        concurrency:
          runs:
            max_concurrent_runs: 5
           tag_concurrency_limits: [
      `);
      expect(error).toBeInstanceOf(ConfigFileError);
      expect(error.key).toBe('');
      expect(error.message).toMatch(/^dagster\.yaml: line 4, column \d+: invalid YAML: /);
    });

    it('given a key repeated in one mapping, when parsed, then it is an error rather than a silent override', () => {
      const error = errorOf(`
        concurrency:
          runs:
            max_concurrent_runs: 5
            max_concurrent_runs: 50
      `);
      expect(error.message).toMatch(/^dagster\.yaml: line 4, column \d+: invalid YAML: .*unique/);
    });

    it('given an alias to an anchor that does not exist, when parsed, then the error gives its line', () => {
      expect(errorOf('concurrency:\n  runs: *runs\n').message).toBe(
        'dagster.yaml: line 2, column 9: invalid YAML: no anchor &runs before this alias',
      );
    });

    it('given several YAML documents in one file, when parsed, then it is rejected with the line of the second', () => {
      expect(errorOf('run_queue: {max_concurrent_runs: 1}\n---\nrun_queue: {max_concurrent_runs: 2}\n').message).toBe(
        'dagster.yaml: line 2, column 1: invalid YAML: the file must hold a single YAML document',
      );
    });

    it.each([
      ['- concurrency', 'a list'],
      ['just some text', '"just some text"'],
      ['42', '42'],
    ])('given a top level of %s, when parsed, then it is rejected as not a mapping', (text, what) => {
      expect(errorOf(text).message).toBe(`dagster.yaml: the top level must be a mapping of settings, not ${what}`);
    });

    it('given a block that is not a mapping, when parsed, then the error names the block', () => {
      expect(errorOf('concurrency: 5').message).toBe('dagster.yaml: concurrency: must be a mapping, not 5');
      expect(errorOf('concurrency: {runs: [1]}').message).toBe(
        'dagster.yaml: concurrency.runs: must be a mapping, not a list',
      );
    });

    it('given YAML 1.1 forms that PyYAML reads (underscores, anchors, merge keys), when parsed, then they mean the same as in Dagster', () => {
      const settings = parse(`
        limits: &limits
          max_concurrent_runs: 1_000
        concurrency:
          runs:
            <<: *limits
            tag_concurrency_limits:
              - &backfill {key: dagster/backfill, limit: 2}
      `);
      expect(settings).toMatchObject({
        maxConcurrentRuns: 1000,
        tagConcurrencyLimits: [{ key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: false, limit: 2 }],
      });
    });

    it('given a ConfigFileError, when inspected, then it carries the source and the key path', () => {
      const error = errorOf('run_monitoring: {start_timeout_seconds: 0}');
      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe('ConfigFileError');
      expect(error.source).toBe('dagster.yaml');
      expect(error.key).toBe('run_monitoring.start_timeout_seconds');
    });
  });
});
