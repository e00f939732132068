import type { KvStore } from '../../src/kv/index.js';

/** Puts key-0, key-1, … with value(i) until a put throws; returns how many landed and the error. */
export function fillUntilError(db: KvStore, value: (i: number) => Uint8Array): { n: number; err: unknown } {
  let n = 0;
  for (;;) {
    try {
      db.put(`key-${n}`, value(n));
      n++;
    } catch (err) {
      return { n, err };
    }
  }
}
