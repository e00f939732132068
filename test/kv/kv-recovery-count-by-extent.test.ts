/**
 * countByExtent (addon/kv-recovery.cc): recovery's count of winners per log extent, for the
 * segment table's estimate. Held to a plain model (floor((value - origin) / extentBytes), values
 * outside the extents counted as skipped) on seeded random values: extents of a power of two
 * bytes (a multiply and four interleaved counts) and of other sizes (a divide), values below the
 * origin and past the last extent among them. And the merge-tape form (a checkpoint's values and
 * a tail's, the tape's takes counted: every value of the first set counted, the skipped ones taken
 * out again) on seeded random tapes, to the same model over the values taken; a tape that takes
 * another number of values than `count`, or runs past a set, is EINVAL.
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

/** Random values around `extents` extents from `origin` (some below it, some past the end). */
function randomValues(r: () => number, n: number, origin: number, extentBytes: number, extents: number): Float64Array {
  return Float64Array.from({ length: n }, () =>
    r() < 0.05 ? Math.floor(r() * origin) : origin + Math.floor(r() * (extents + 2) * extentBytes),
  );
}

it('the merge-tape form counts exactly the values the tape takes, as the model', async () => {
  await withSeed(FILE, (seed) => {
    const r = rng(seed);
    for (let trial = 0; trial < scaled(40); trial++) {
      const extents = 1 + Math.floor(r() * 300);
      const origin = 4096 * Math.floor(r() * 1000);
      const extentBytes = r() < 0.5 ? 2 ** (12 + Math.floor(r() * 10)) : 4096 * (3 + Math.floor(r() * 500));
      const a = randomValues(r, Math.floor(r() * 5000), origin, extentBytes, extents);
      const b = randomValues(r, Math.floor(r() * 2000), origin, extentBytes, extents);
      // steps of every op in random runs, a and b each walked whole
      const steps: number[] = [];
      let ia = 0;
      let ib = 0;
      while (ia < a.length || ib < b.length) {
        const op = Math.floor(r() * 4);
        if (op <= 1 && ia < a.length) {
          steps.push(op);
          ia++;
        } else if (op >= 2 && ib < b.length) {
          steps.push(op);
          ib++;
        }
      }
      const tape: number[] = [];
      for (const op of steps) {
        const last = tape.length - 1;
        if (last >= 0 && tape[last] >>> 30 === op && r() < 0.8) tape[last]++;
        else tape.push(((op << 30) | 1) >>> 0);
      }
      const want = new Int32Array(extents);
      let skipped = 0;
      let taken = 0;
      ia = 0;
      ib = 0;
      for (const op of steps) {
        const x = op <= 1 ? a[ia++] : b[ib++];
        if (op === 1 || op === 3) continue;
        taken++;
        const e = Math.floor((x - origin) / extentBytes);
        if (e >= 0 && e < extents) want[e]++;
        else skipped++;
      }
      const t = Uint32Array.from(tape);
      const got = new Int32Array(extents).fill(5); // added to, not overwritten
      expect(native().countByExtent(a, taken, origin, extentBytes, got, b, t)).toBe(skipped);
      expect(Array.from(got, (g) => g - 5)).toEqual(Array.from(want));
      expect(native().countByExtent(a, taken + 1, origin, extentBytes, new Int32Array(extents), b, t)).toBe(-22);
      if (t.length > 0) {
        const longer = Uint32Array.from(t);
        longer[longer.length - 1]++;
        expect(native().countByExtent(a, taken + 1, origin, extentBytes, new Int32Array(extents), b, longer)).toBe(-22);
      }
    }
  });
});
