/** `sluice verify [STORE_URL]`: checks a whole log from the record alone, read-only. */
import { StoreUnavailableError, StoreUsageError } from '../eventstore/errors.js';
import { openEventStore } from '../eventstore/open.js';
import { describeReport, type VerifyReport, verifyLog } from '../verify/verify.js';
import { CliError } from './client.js';
import { type CommandOutput, output } from './command.js';

/** Reads the log at `storeUrl`; a broken rule is a CliError (exit 1) naming its position. */
export async function verify(storeUrl: string, graceSeconds: number | undefined): Promise<CommandOutput> {
  let store: Awaited<ReturnType<typeof openEventStore>>;
  try {
    store = await openEventStore(storeUrl, { readonly: true });
  } catch (error) {
    if (error instanceof StoreUsageError || error instanceof StoreUnavailableError)
      throw new CliError(error.message, 2);
    throw error;
  }
  let report: VerifyReport;
  try {
    report = await verifyLog(store, { gaplessPositions: storeUrl.startsWith('sqlite:'), graceSeconds });
  } catch (error) {
    if (error instanceof StoreUnavailableError)
      throw new CliError(`cannot read ${store.description}: ${error.message}`, 2);
    throw error;
  } finally {
    await store.close();
  }
  const text = describeReport(store.description, report);
  if (!report.ok) throw new CliError(text, 1);
  return output(
    text,
    JSON.parse(JSON.stringify(report, (_key, value) => (typeof value === 'bigint' ? value.toString() : value))),
  );
}

/** The --grace option: whole seconds, 0 or more. */
export function graceOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 0)
    throw new CliError(`--grace ${value}: give whole seconds, 0 or more`, 2);
  return seconds;
}
