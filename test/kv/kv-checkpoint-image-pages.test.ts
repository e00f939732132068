/**
 * The arena run a clean reopen copies its checkpoint's tree image into is populated by the
 * covered check's thread 2 MiB at a time; once its 2 MiB pages took longer than a threshold on
 * average (fresh huge pages the host took back cost several times small ones), the rest's whole 2 MiB
 * pages are advised small (MADV_NOHUGEPAGE) and populated so, and once the image is loaded the
 * run is advised huge again and collapsed on a background thread (recovery.ts withEarlyWork).
 * Proven from the kernel's side, in /proc/self/smaps, with the threshold at 0
 * (DAXSTORE_IMAGE_RUN_SMALL_AFTER_US=0: small after the first four whole 2 MiB pages): when the
 * advice is given back, the bytes of this process's mappings flagged `nh` have grown by the
 * run's whole huge pages but those; after the open they are back to what they were before it (the
 * image loaded, the store equal to its full scan). With DAXSTORE_IMAGE_RUN_HUGE=1 nothing is
 * advised small. AnonHugePages is printed, not asserted (the kernel may find no free 2 MiB page).
 * Red with kv-checkpoint-run-left-small (the advice not given back: the run stays `nh`).
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import { RadixTree } from '../../src/index/radix-tree.js';
import { withBroken } from '../../src/test-break.js';
import { rng, withSeed } from '../helpers/seed.js';
import { closedStoreOfKeys, expectCheckpointEqualsFull, expectModel } from './kv-checkpoint-helpers.js';

const FILE = 'test/kv/kv-checkpoint-image-pages.test.ts';
const MIB = 2 ** 20;
const THP_MODE = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
const WATCHDOG_MS = 120_000;
const SKIP = !THP_MODE.includes('[madvise]') && !THP_MODE.includes('[always]');
const KNOBS = ['DAXSTORE_IMAGE_RUN_SMALL_AFTER_US', 'DAXSTORE_IMAGE_RUN_HUGE'] as const;
const saved = KNOBS.map((k) => process.env[k]);

/**
 * Bytes of this process's mappings whose VmFlags carry `flag` and `dc` (V8's WebAssembly memory,
 * the arena's, is kept out of fork children: thread stacks, also `nh`, are not), and their
 * AnonHugePages bytes.
 */
function flagged(flag: string): { bytes: number; anonHuge: number } {
  let bytes = 0;
  let anonHuge = 0;
  for (const block of readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const flags = (/^VmFlags:(.*)$/m.exec(block)?.[1] ?? '').split(' ');
    if (!flags.includes(flag) || !flags.includes('dc')) continue;
    const [lo, hi] = block
      .slice(0, block.indexOf(' '))
      .split('-')
      .map((h) => parseInt(h, 16));
    bytes += hi - lo;
    anonHuge += Number(/^AnonHugePages:\s+(\d+) kB$/m.exec(block)?.[1] ?? 0) * 1024;
  }
  return { bytes, anonHuge };
}

const restoreHugePages = RadixTree.prototype.restoreHugePages;
afterEach(() => {
  RadixTree.prototype.restoreHugePages = restoreHugePages;
  KNOBS.forEach((k, i) => {
    if (saved[i] === undefined) delete process.env[k];
    else process.env[k] = saved[i];
  });
});

/**
 * A clean reopen of a store of 320,000 keys (an image of ~19 MiB, several whole 2 MiB pages in
 * its run past the first four), equal to its full scan, the image loaded: the run's words, the `nh` bytes grown when
 * restoreHugePages is called (undefined: not called) and those left after the open, each
 * against the `nh` bytes before it.
 */
function reopenPages(seed: number): {
  words: number;
  nhGrowth?: number;
  nhLeft: number;
  fill?: { cpuMs: number; smallFromBytes: number };
} {
  const { image, model } = closedStoreOfKeys(rng(seed), 320_000, 128 * MIB);
  const before = flagged('nh').bytes;
  const seen: Array<{ words: number; nhGrowth: number }> = [];
  RadixTree.prototype.restoreHugePages = function (this: RadixTree, run: number, words: number) {
    seen.push({ words, nhGrowth: flagged('nh').bytes - before });
    restoreHugePages.call(this, run, words);
  };
  const db = expectCheckpointEqualsFull(image);
  const nhLeft = flagged('nh').bytes - before;
  try {
    expect(db.recovery!.checkpoint!.imageLoaded).toBe(true);
    expect(seen.length).toBeLessThanOrEqual(1);
    expectModel(db, model);
    console.log(`AnonHugePages of hg mappings after the open: ${flagged('hg').anonHuge} B`);
    return {
      words: seen[0]?.words ?? db.dax.tree.stats().arenaBytes / 4,
      nhGrowth: seen[0]?.nhGrowth,
      nhLeft,
      fill: db.recovery!.checkpoint!.runFill,
    };
  } finally {
    db.close();
  }
}

describe.skipIf(SKIP)('the image run of a clean reopen', () => {
  test(
    'populated small after dear 2 MiB pages, then given its huge-page advice back',
    async () => {
      process.env.DAXSTORE_IMAGE_RUN_SMALL_AFTER_US = '0';
      await withSeed(FILE, (seed) => {
        const run = reopenPages(seed);
        expect(run.words * 4).toBeGreaterThan(16 * MIB);
        // The whole 2 MiB pages after the first four populated (a partial one before them), rounded inward at the end.
        expect(run.nhGrowth).toBeGreaterThan(run.words * 4 - 12 * MIB);
        expect(run.nhGrowth).toBeLessThanOrEqual(run.words * 4 - 8 * MIB);
        expect(run.nhLeft).toBe(0);
        // The stats say so: small from the end of the fourth whole 2 MiB page in the run.
        expect(run.fill!.smallFromBytes).toBeGreaterThanOrEqual(8 * MIB);
        expect(run.fill!.smallFromBytes).toBeLessThanOrEqual(10 * MIB);
        expect(run.fill!.cpuMs).toBeGreaterThan(0);
      });
    },
    WATCHDOG_MS,
  );

  test(
    'with DAXSTORE_IMAGE_RUN_HUGE=1 nothing is advised small',
    async () => {
      process.env.DAXSTORE_IMAGE_RUN_SMALL_AFTER_US = '0';
      process.env.DAXSTORE_IMAGE_RUN_HUGE = '1';
      await withSeed(FILE, (seed) => {
        const run = reopenPages(seed);
        expect(run.nhGrowth).toBeUndefined();
        expect(run.nhLeft).toBe(0);
        expect(run.fill!.smallFromBytes).toBe(-1);
      });
    },
    WATCHDOG_MS,
  );

  test(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-run-left-small: the run stays advised small after the open',
    async () => {
      process.env.DAXSTORE_IMAGE_RUN_SMALL_AFTER_US = '0';
      await withSeed(FILE, (seed) => {
        const run = withBroken('kv-checkpoint-run-left-small', () => reopenPages(seed));
        expect(run.nhGrowth).toBeGreaterThan(0);
        expect(run.nhLeft).toBe(run.nhGrowth);
      });
    },
    WATCHDOG_MS,
  );
});
