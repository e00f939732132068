/**
 * countByExtent (addon/kv-recovery.cc): recovery's count of winners per log extent, for the
 * segment table's estimate. Held to a plain model (floor((value - origin) / extentBytes), values
 * outside the extents counted as skipped) on seeded random values: extents of a power of two
 * bytes (a multiply and four interleaved counts) and of other sizes (a divide), values below the
 * origin and past the last extent among them. Does not cover the merge-tape form (the checkpoint
 * merge tests reach it through recovery).
 */
import { expect, it } from 'vitest';
import { native } from '../../src/native/addon.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-recovery-count-by-extent.test.ts';

it('counts each value in its extent and the rest as skipped, exactly as the model', async () => {
  await withSeed(FILE, (seed) => {
    const r = rng(seed);
    for (let trial = 0; trial < scaled(40); trial++) {
      const count = 1 + Math.floor(r() * 20000);
      const extents = 1 + Math.floor(r() * 300);
      const origin = 4096 * Math.floor(r() * 1000);
      const extentBytes = r() < 0.5 ? 2 ** (12 + Math.floor(r() * 10)) : 4096 * (3 + Math.floor(r() * 500));
      const values = new Float64Array(count + 3); // longer than count: the rest is not read
      for (let i = 0; i < values.length; i++)
        values[i] =
          r() < 0.05
            ? Math.floor(r() * origin)
            : origin + Math.floor(r() * (extents + 2) * extentBytes) - (r() < 0.01 ? 1 : 0);
      const want = new Int32Array(extents);
      let skipped = 0;
      for (let i = 0; i < count; i++) {
        const e = Math.floor((values[i] - origin) / extentBytes);
        if (e >= 0 && e < extents) want[e]++;
        else skipped++;
      }
      const got = new Int32Array(extents).fill(5); // added to, not overwritten
      expect(native().countByExtent(values, count, origin, extentBytes, got)).toBe(skipped);
      expect(Array.from(got, (g) => g - 5)).toEqual(Array.from(want));
    }
  });
});
