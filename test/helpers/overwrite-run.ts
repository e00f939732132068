import { isDaxError } from '../../src/errors.js';
import type { KvStore } from '../../src/kv/index.js';
import { open } from './kv-bytes.js';

export interface OverwriteRun {
  /** the file's size at create and at the end */
  start: number;
  end: number;
  /** value bytes put */
  written: number;
}

/**
 * Creates a growable store at `path` and puts `next(i)` (a key number and its value) for
 * i = 0, 1, … until `factor` times the store's starting size has been written; checks every
 * key's newest value before the close and across a reopen. A DaxError names the put, the
 * bytes written and the seed; a watchdog fails a run past 240 s.
 */
export function overwriteRun(
  path: string,
  opts: { maxSize: number; autoCompact: boolean },
  factor: number,
  seed: number,
  next: (i: number) => [number, Buffer],
): OverwriteRun {
  const db = open(path, opts);
  const start = db.dax.device.media.size;
  const newest = new Map<number, Buffer>();
  let written = 0;
  let ops = 0;
  const deadline = performance.now() + 240_000;
  try {
    while (written < factor * start) {
      if (performance.now() > deadline) throw new Error(`watchdog: ${ops} puts in 240 s (seed ${seed})`);
      const [k, v] = next(ops++);
      try {
        db.put(Buffer.from(`key-${k}`), v);
      } catch (e) {
        if (isDaxError(e)) throw new Error(`put ${ops} (${written} bytes written, seed ${seed}): ${e.message}`);
        throw e;
      }
      newest.set(k, v);
      written += v.length;
    }
    check(db, newest, 'before close');
    const end = db.dax.device.media.size;
    db.close();
    const again = open(path);
    try {
      check(again, newest, 'after reopen');
    } finally {
      again.close();
    }
    return { start, end, written };
  } finally {
    if (!db.closed) db.close();
  }
}

function check(db: KvStore<Uint8Array, Uint8Array>, newest: Map<number, Buffer>, when: string): void {
  for (const [k, v] of newest) {
    const got = db.get(Buffer.from(`key-${k}`));
    if (got === undefined || !Buffer.from(got).equals(v)) throw new Error(`key-${k} wrong ${when}`);
  }
}
