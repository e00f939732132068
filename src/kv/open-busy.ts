/**
 * The EBUSY of a second open() of a store this process already holds (from this thread or a
 * worker), told apart from one held by another process, so the message can say what to do:
 * share the open store (db.share() here, attach(handle) there). The flock is the truth
 * (region.ts); /proc/locks says which process holds it. No shared state.
 */
import { readFileSync, statSync } from 'node:fs';
import { DaxError, isDaxError } from '../errors.js';
import { openRegion, type MappedMedia, type OpenRegionOptions } from '../device/region.js';

/** openRegion, whose EBUSY says so when the holder of the store's lock is this process. */
export function openRegionExplained(path: string, opts: OpenRegionOptions): MappedMedia {
  try {
    return openRegion(path, opts);
  } catch (e) {
    if (!isDaxError(e, 'EBUSY') || !heldByThisProcess(path)) throw e;
    throw new DaxError(
      'EBUSY',
      `open: ${path} is already open in this process (another open() from this thread or a worker holds it). ` +
        `A store has one opener per process: share it with db.share() and attach(handle) in the worker, or close it first`,
      { path, cause: e },
    );
  }
}

/** Whether this process holds a flock on `path` (by device and inode in /proc/locks). False when that cannot be told. */
export function heldByThisProcess(path: string): boolean {
  let dev: number, ino: bigint, locks: string;
  try {
    const st = statSync(path, { bigint: true });
    dev = Number(st.dev);
    ino = st.ino;
    locks = readFileSync('/proc/locks', 'utf8');
  } catch {
    return false;
  }
  // Linux's dev_t: major in bits 8..19 (and 32..), minor in bits 0..7 and 20..31 (glibc's gnu_dev_major/minor).
  const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >>> 12) & ~0xff);
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${ino}`;
  // "1: FLOCK  ADVISORY  WRITE 12345 00:1a:4242 0 EOF" (a waiter's line has "->" after the number)
  return locks.split('\n').some((line) => {
    const f = line.trim().split(/\s+/);
    return f[1] === 'FLOCK' && f[4] === String(process.pid) && f[5] === id;
  });
}
