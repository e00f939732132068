/**
 * Space amplification under steady overwrites: a fixed set of keys overwritten at random (values
 * of varying size, durability 'none'), nobody calls compact(). Once steady (after the log has
 * been written over twice), at every sample:
 *   - a store created without a size (it grows as it needs): its data area (file bytes less its
 *     metadata) stays within twice the log's live bytes plus FIXED_BYTES, and the file stops
 *     growing: the second half of the overwrites grows it by nothing (garbage does not grow it);
 *   - a growable store created large (most of it free): its log (segments x 2 MiB) stays
 *     within twice its live bytes plus FIXED_LOG_BYTES. (A store of a fixed size has all its
 *     bytes already: its log is bounded at AUTO_AMPLIFICATION_FIXED, kv-space-auto-compact.)
 * Every key holds its newest value at the end and after reopen. Seeded (sizes, the order of
 * the overwrites); DAXSTORE_LONG writes the log over many more times; a watchdog ends a run
 * that stops making progress. Red with DAXSTORE_TEST_BREAK=kv-compaction-grows (compaction's
 * copies grow the full store: the file passes the bound) and kv-no-auto-compact (the large
 * store's log fills its free space).
 */
import { describe, expect, it } from 'vitest';
import { open } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { tempPaths } from '../helpers/temp-paths.js';
import { withBroken } from '../../src/test-break.js';
import { AUTO_MIN_DEAD_SEGMENTS } from '../../src/kv/store.js';
import { SEGMENT_BYTES } from '../../src/kv/layout.js';
import { GROW_STEP_BYTES } from '../../src/device/device.js';

const FILE = 'test/kv/kv-space-steady.test.ts';
const MiB = 2 ** 20;
const temp = tempPaths('steady');
/**
 * The log's fixed overhead: the dead segments automatic compaction waits for, the writer's and
 * the priority writer's open segments, and a segment of copies' slack.
 */
const FIXED_LOG_BYTES = (AUTO_MIN_DEAD_SEGMENTS + 3) * SEGMENT_BYTES;
/**
 * A growable store's data area beyond twice its live bytes: the log's overhead and the reserve
 * (two extents), and a growth step's (the smallest, GROW_STEP_BYTES: a larger step is a quarter
 * of a store whose log is at most 1.5 times its live bytes when it grows, so 1.875 times in all).
 */
const FIXED_BYTES = FIXED_LOG_BYTES + 2 * SEGMENT_BYTES + GROW_STEP_BYTES;
const WATCHDOG_MS = scaled(150_000);
const TEST_MS = WATCHDOG_MS + 60_000;

/** Key n's value of version v (mean length `mean`): its length and bytes follow from the three. */
function valueOf(n: number, v: number, mean: number): Buffer {
  const b = Buffer.alloc(mean / 2 + ((n * 31 + v * 17) % mean), (n + v) & 0xff);
  b.writeUInt32LE(n, 0);
  b.writeUInt32LE(v, 4);
  return b;
}

const keyOf = (n: number): Buffer => Buffer.from(`k-${n}`);

interface Steady {
  /** the largest (data bytes or log bytes) - 2 x live bytes seen once steady */
  worstOver: number;
  worstRatio: number;
  /** file bytes when the second half of the overwrites began, and at the end */
  fileMid: number;
  fileEnd: number;
  autoCompactions: number;
}

/**
 * Puts `keys` keys, then overwrites them at random until the log has been written over
 * `rounds` times (in live bytes), sampling every 4096 puts from round 2 on; checks every key at
 * the end and across a reopen.
 */
function steady(
  seed: number,
  keys: number,
  mean: number,
  rounds: number,
  opts: { size?: number; maxSize: number; autoCompact?: boolean },
  measured: 'file' | 'log',
): Steady {
  const path = temp.next();
  const random = rng(seed);
  const versions = new Uint32Array(keys);
  let db = open(path, { ...opts, durability: 'none' });
  const dataOffset = db.dax.device.dataOffset;
  const out: Steady = { worstOver: -Infinity, worstRatio: 0, fileMid: 0, fileEnd: 0, autoCompactions: 0 };
  const deadline = performance.now() + WATCHDOG_MS;
  try {
    for (let n = 0; n < keys; n++) db.put(keyOf(n), valueOf(n, 0, mean));
    const live = db.stats().liveBytes;
    const total = Math.ceil((rounds * live) / (mean + 70));
    for (let i = 0; i < total; i++) {
      const n = Math.floor(random() * keys);
      db.put(keyOf(n), valueOf(n, ++versions[n], mean));
      if ((i & 4095) !== 0) continue;
      if (performance.now() > deadline)
        throw new Error(`watchdog: ${i} of ${total} overwrites after ${WATCHDOG_MS / 1000} s (seed ${seed})`);
      if (i < (2 * total) / rounds) continue; // the log written over twice: steady from here
      const s = db.stats();
      if (out.fileMid === 0 && i >= total / 2) out.fileMid = s.fileBytes;
      const used = measured === 'file' ? s.fileBytes - dataOffset : s.segments * SEGMENT_BYTES;
      out.worstOver = Math.max(out.worstOver, used - 2 * s.liveBytes);
      out.worstRatio = Math.max(out.worstRatio, used / s.liveBytes);
    }
    const s = db.stats();
    out.fileEnd = s.fileBytes;
    out.autoCompactions = s.autoCompactions;
    const check = (when: string): void => {
      for (let n = 0; n < keys; n++) {
        const got = db.get(keyOf(n));
        if (got === undefined || !Buffer.from(got).equals(valueOf(n, versions[n], mean)))
          throw new Error(
            `k-${n} (version ${versions[n]}) ${got === undefined ? 'lost' : 'wrong'} ${when} (seed ${seed})`,
          );
      }
      expect(db.stats().keys).toBe(keys);
    };
    check('before close');
    db.close();
    db = open(path);
    check('after reopen');
    return out;
  } finally {
    db.close();
  }
}

describe('space amplification under steady overwrites', () => {
  it(
    'a growable store stays within twice its live bytes plus a fixed overhead, and stops growing',
    { timeout: TEST_MS },
    async () => {
      await withSeed(FILE, (seed) => {
        // ~65,000 keys of ~800 B: ~55 MiB live, where a log allowed 4x its live bytes grows the
        // store far past the bound.
        const keys = 60_000 + Math.floor(rng(seed ^ 0x51)() * 10_000);
        const r = steady(seed, keys, 800, scaled(4), { maxSize: 1024 * MiB }, 'file');
        expect(r.worstOver, `worst data area ${r.worstRatio.toFixed(2)}x live`).toBeLessThanOrEqual(FIXED_BYTES);
        expect(r.fileEnd, 'the file grew in the second half of the overwrites').toBe(r.fileMid);
      });
    },
  );

  it('the same with autoCompact: false: a full store compacts before it grows', { timeout: TEST_MS }, async () => {
    await withSeed(FILE, (seed) => {
      const keys = 50_000 + Math.floor(rng(seed ^ 0x53)() * 10_000);
      const r = steady(seed, keys, 800, scaled(4), { maxSize: 1024 * MiB, autoCompact: false }, 'file');
      expect(r.worstOver, `worst data area ${r.worstRatio.toFixed(2)}x live`).toBeLessThanOrEqual(FIXED_BYTES);
      expect(r.fileEnd, 'the file grew in the second half of the overwrites').toBe(r.fileMid);
    });
  });

  it(
    'a growable store created large keeps its log within twice its live bytes plus a fixed overhead',
    { timeout: TEST_MS },
    async () => {
      await withSeed(FILE, (seed) => {
        const keys = 80_000 + Math.floor(rng(seed ^ 0x52)() * 20_000);
        const r = steady(seed, keys, 100, scaled(4), { size: 256 * MiB, maxSize: 1024 * MiB }, 'log');
        expect(r.worstOver, `worst log ${r.worstRatio.toFixed(2)}x live`).toBeLessThanOrEqual(FIXED_LOG_BYTES);
        expect(r.autoCompactions).toBeGreaterThan(0);
      });
    },
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-compaction-grows: reclaiming garbage grows the store',
    { timeout: TEST_MS },
    async () => {
      await withSeed(FILE, (seed) => {
        // Without automatic steps every compaction runs in a full store (before a write's ENOSPC),
        // where the broken copies grow it.
        const r = withBroken('kv-compaction-grows', () =>
          steady(seed, 60_000, 800, 4, { maxSize: 1024 * MiB, autoCompact: false }, 'file'),
        );
        expect(
          r.worstOver > FIXED_BYTES || r.fileEnd > r.fileMid,
          `worst ${r.worstRatio.toFixed(2)}x live, ${(r.worstOver / MiB).toFixed(1)} MiB over, file ${r.fileMid} then ${r.fileEnd}`,
        ).toBe(true);
      });
    },
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-no-auto-compact: the large store’s log passes the bound',
    { timeout: TEST_MS },
    async () => {
      await withSeed(FILE, (seed) => {
        const r = withBroken('kv-no-auto-compact', () =>
          steady(seed, 90_000, 100, 4, { size: 256 * MiB, maxSize: 1024 * MiB }, 'log'),
        );
        expect(r.worstOver).toBeGreaterThan(FIXED_LOG_BYTES);
      });
    },
  );
});
