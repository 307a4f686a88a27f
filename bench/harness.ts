/**
 * Benchmark plumbing: sizes from the environment, a clock, a GC handle, statistics and tables.
 * Benchmarks measure and print; they never assert timings (tests assert behaviour).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** BENCH_SCALE multiplies every default size (0.1: a quick run). */
export const SCALE = (() => {
  const raw = process.env.BENCH_SCALE;
  const scale = raw === undefined || raw === '' ? 1 : Number(raw);
  if (!Number.isFinite(scale) || scale <= 0) throw new Error(`BENCH_SCALE must be a positive number, got ${raw}`);
  return scale;
})();

/** Scales a default size, never below `min`. */
export const scaled = (n: number, min = 1): number => Math.max(min, Math.round(n * SCALE));

/**
 * A list of sizes: the env variable `name` (comma separated) if set, else the defaults scaled.
 * e.g. BENCH_QUEUE_SIZES=100,1000
 */
export function sizes(name: string, defaults: number[], min = 1): number[] {
  const raw = process.env[name];
  if (raw) {
    const list = raw.split(',').map((s) => Number(s.trim()));
    if (list.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`${name} must list positive integers`);
    return list;
  }
  return defaults.map((n) => scaled(n, min));
}

export function size(name: string, fallback: number, min = 1): number {
  return sizes(name, [fallback], min)[0] as number;
}

/** Which sections to run: BENCH_SECTIONS=1,3 (default: all). */
export function sectionEnabled(n: number): boolean {
  const raw = process.env.BENCH_SECTIONS;
  if (!raw) return true;
  return raw.split(',').some((s) => Number(s.trim()) === n);
}

/** A real full GC when we can get one: --expose-gc, else V8's flag set at run time. */
export const gc: (() => void) | null = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    return null;
  }
})();

export function collect(): void {
  if (gc) {
    gc();
    gc();
  }
}

/** Retained memory: heapUsed after a full GC when available, else rss. */
export function retainedBytes(): number {
  collect();
  const usage = process.memoryUsage();
  return gc ? usage.heapUsed : usage.rss;
}
export const memoryMetric = gc ? 'heapUsed after GC' : 'rss (no GC available)';

export const now = (): number => performance.now();

/** CPU milliseconds (user + system, whole process) since `from`. */
export function cpuMs(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
}

/**
 * Milliseconds per repetition, twice: wall clock, and CPU time of the process. On a shared
 * machine the wall clock also counts time spent waiting for a core; CPU time does not.
 */
export interface Samples {
  wall: number[];
  cpu: number[];
}

export function emptySamples(): Samples {
  return { wall: [], cpu: [] };
}

/** Times one call into `into`. */
export function timeInto<T>(into: Samples, op: () => T): T {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const result = op();
  const wall = performance.now() - t0;
  into.cpu.push(cpuMs(c0));
  into.wall.push(wall);
  return result;
}

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

export function stats(ms: readonly number[]) {
  const sorted = [...ms].sort((a, b) => a - b);
  const total = ms.reduce((a, b) => a + b, 0);
  return {
    n: ms.length,
    mean: total / Math.max(1, ms.length),
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.at(-1) ?? Number.NaN,
    total,
  };
}

export interface MeasureOptions {
  /** Untimed work before each timed repetition. */
  before?: () => void;
  /** Untimed work after each timed repetition. */
  after?: () => void;
  warmup?: number;
  minReps?: number;
  maxReps?: number;
  /** Stop once the timed work has used this much (and minReps were done). */
  budgetMs?: number;
}

/** Times `op` repeatedly. */
export function measure(op: () => void, options: MeasureOptions = {}): Samples {
  const { before, after, warmup = 3, minReps = 5, maxReps = 2_000, budgetMs = 300 } = options;
  for (let i = 0; i < warmup; i++) {
    before?.();
    op();
    after?.();
  }
  const samples = emptySamples();
  let spent = 0;
  while (samples.wall.length < maxReps && (samples.wall.length < minReps || spent < budgetMs)) {
    before?.();
    timeInto(samples, op);
    after?.();
    spent += samples.wall.at(-1) as number;
  }
  return samples;
}

/** Load average over the last minute, and cores: how shared the machine was. */
export function load(): string {
  return `load ${loadavg()[0]?.toFixed(2)} on ${availableParallelism()} cores`;
}

// ---------------------------------------------------------------------------------------------
// Formatting

export const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** A number with about three significant digits. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1000) return fmtInt(n);
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

export const us = (ms: number): string => fmt(ms * 1000);
export const ratio = (a: number, b: number): string => `${fmt(a / b)}×`;

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${fmt(v)} ${units[u]}`;
}

export function fileSize(path: string): number {
  try {
    const main = statSync(path).size;
    let wal = 0;
    try {
      wal = statSync(`${path}-wal`).size;
    } catch {
      // no WAL file
    }
    return main + wal;
  } catch {
    return 0;
  }
}

/** Prints a compact right-aligned table (first column left-aligned). */
export function table(headers: string[], rows: Array<Array<string | number>>): void {
  const cells = [headers, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  console.log(`  ${line(headers)}`);
  console.log(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const r of cells.slice(1)) console.log(`  ${line(r)}`);
}

export function heading(title: string): void {
  console.log(`\n## ${title}\n`);
}

export function note(text: string): void {
  console.log(`  ${text}`);
}

/** A temporary directory removed at exit. */
export function tempDir(prefix = 'sluice-bench-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
