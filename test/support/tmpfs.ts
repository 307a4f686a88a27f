/**
 * A small filesystem of its own for a test: a tmpfs mounted on a temp dir, to fill it for real
 * (ENOSPC from the kernel, not a simulated limit) and then give it room again by remounting.
 * Needs root: without it the test is skipped with a message, except under CI=true, where it fails.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const canMount = process.getuid?.() === 0;

/** Why a test that needs mounts cannot run here; null when it can. Under CI it must run. */
export function mountUnavailable(): string | null {
  if (canMount) return null;
  if (process.env.CI === 'true')
    throw new Error('the full-disk tests need root (to mount a tmpfs) and CI=true never skips them');
  return 'not root: the full-disk tests mount a tmpfs; run them as root (CI does)';
}

export interface Tmpfs {
  path: string;
  /** Fills what is left with a file, until the kernel answers ENOSPC; returns the bytes written. */
  fill(): number;
  /** Deletes what fill() wrote: the room it took is free again. */
  free(): void;
  /** Gives the filesystem this many MiB (remount), so the full disk has room again. */
  resize(mebibytes: number): void;
  unmount(): void;
}

export function mountTmpfs(mebibytes: number): Tmpfs {
  const path = mkdtempSync(join(tmpdir(), 'sluice-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mebibytes}m`, 'tmpfs', path]);
  let fillers = 0;
  return {
    path,
    fill() {
      const fd = openSync(join(path, `filler-${fillers++}`), 'w');
      const chunk = Buffer.alloc(64 * 1024, 1);
      let written = 0;
      try {
        for (;;) written += writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        closeSync(fd);
      }
      // A last partial chunk may still fit: take it too, so nothing at all is left.
      const small = openSync(join(path, `filler-${fillers++}`), 'w');
      try {
        for (;;) written += writeSync(small, Buffer.alloc(512, 1));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        closeSync(small);
      }
      return written;
    },
    free() {
      for (let i = 0; i < fillers; i++) rmSync(join(path, `filler-${i}`), { force: true });
    },
    resize(size: number) {
      execFileSync('mount', ['-o', `remount,size=${size}m`, path]);
    },
    unmount() {
      try {
        execFileSync('umount', ['-l', path]);
      } finally {
        rmSync(path, { recursive: true, force: true });
      }
    },
  };
}
