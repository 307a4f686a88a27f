/**
 * Structured logs: one JSON object per line (pino), readable lines when stdout is a terminal.
 * Secrets are redacted by key wherever they appear in a logged object.
 */
import { type DestinationStream, type LevelWithSilent, type Logger, pino } from 'pino';
import type { CommandRecord } from '../app/command-path.js';

export type { Logger } from 'pino';

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Keys never written out, at the top level or one object down (headers, settings, errors). */
export const REDACTED_PATHS = [
  'authorization',
  'token',
  'tokens',
  'password',
  '*.authorization',
  '*.token',
  '*.tokens',
  '*.password',
  'headers["x-sluice-token"]',
  '*.headers.authorization',
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Where lines go; default stdout, pretty-printed when it is a terminal. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  // pino-pretty loads in pino's worker thread, and only for a terminal: servers started by
  // scripts and containers never pay for it.
  const destination =
    options.destination ??
    (process.stdout.isTTY
      ? pino.transport({ target: 'pino-pretty', options: { colorize: true, destination: 1 } })
      : pino.destination({ dest: 1, sync: true }));
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'sluice' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

/** A logger whose every JSON line goes to a function: for callers that collect lines (tests). */
export function lineLogger(write: (line: string) => void, level: LevelWithSilent = 'info'): Logger {
  return createLogger({ level, destination: { write: (line: string) => write(line.trimEnd()) } });
}

/** One line per command: what, about which run, who asked, how it ended, how long it took. */
export function logCommand(logger: Logger, record: CommandRecord): void {
  const fields = {
    command: record.command,
    run: record.runId,
    actor: record.actor,
    outcome: record.outcome,
    ...(record.errorCode === undefined ? {} : { errorCode: record.errorCode }),
    events: record.events,
    durationMs: Math.round(record.durationMs * 1000) / 1000,
  };
  if (record.outcome === 'error') logger.error(fields, `command ${record.command} failed`);
  else logger.info(fields, `command ${record.command} ${record.outcome}`);
}
