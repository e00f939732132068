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

/** Calls put(0), put(1), … until `db` opens a new segment: the one it was filling is closed (and committed). */
export function putUntilNewSegment(db: KvStore, put: (i: number) => void): void {
  const segments = db.stats().segments;
  for (let i = 0; db.stats().segments === segments; i++) put(i);
}
