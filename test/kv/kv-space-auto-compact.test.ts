/**
 * Overwrites never fill a store, and nobody calls compact(): a few hundred live keys
 * overwritten (with random deletes and re-puts) many times the store's size. Automatic
 * compaction keeps the log small as it goes: the store never holds more than a handful of
 * segments (its live data fits in one), where without it the log fills every extent before a
 * write runs out of space and reclaims. The repro first: 200 keys in a 16 MiB store,
 * more overwrites than the 96,579 after which it hit ENOSPC. Every key right at the end and
 * after reopen. Seeded (sizes, values, the mix); a watchdog ends a run that stops making
 * progress. Red with DAXSTORE_TEST_BREAK=kv-no-auto-compact (the segment count climbs to
 * the store's size).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { open } from '../helpers/kv-bytes.js';
import { setBroken } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-space-auto-compact.test.ts';
const MiB = 2 ** 20;
/** Segments a store with under 100 KiB live may hold with automatic compaction: its own, the priority one, and what a step leaves. */
const MAX_SEGMENTS = 6;

interface Outcome {
  maxSegments: number;
  compactionRuns: number;
}

function run(seed: number, sizeBytes: number, keys: number, overwrites: number): Outcome {
  const dir = mkdtempSync('/dev/shm/kv-space-auto-');
  try {
    const file = path.join(dir, 'store');
    const random = rng(seed);
    const model = new Map<string, Buffer>();
    let db = open(file, { size: sizeBytes, durability: random() < 0.5 ? 'sync' : 'none' });
    const deadline = performance.now() + 120_000;
    let maxSegments = 0;
    try {
      for (let i = 0; i < overwrites; i++) {
        if ((i & 1023) === 0) {
          if (performance.now() > deadline) throw new Error(`watchdog: ${i} of ${overwrites} writes after 120 s`);
          maxSegments = Math.max(maxSegments, db.stats().segments);
        }
        const key = `key-${Math.floor(random() * keys)}`;
        if (random() < 0.02) {
          db.delete(key);
          model.delete(key);
          continue;
        }
        const value = Buffer.alloc(50 + Math.floor(random() * 250), i & 0xff);
        value.writeUInt32LE(i, 0);
        db.put(key, value);
        model.set(key, value);
        if (i === overwrites >> 1 && random() < 0.5) {
          db.close();
          db = open(file);
        }
      }
      const compactionRuns = db.stats().compactionRuns;
      for (const [k, v] of model) expect(Buffer.from(db.get(k)!).equals(v), k).toBe(true);
      db.close();
      db = open(file);
      for (const [k, v] of model) expect(Buffer.from(db.get(k)!).equals(v), k).toBe(true);
      expect(db.stats().keys).toBe(model.size);
      expect(db.dax.device.audit()).toEqual([]);
      return { maxSegments, compactionRuns };
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('automatic compaction', () => {
  it('200 keys in a 16 MiB store take 120,000 overwrites (the repro ran out at 96,579) without compact()', async () => {
    await withSeed(FILE, (seed) => {
      const r = run(seed, 16 * MiB, 200, scaled(120_000));
      expect(r.compactionRuns).toBeGreaterThan(0);
    });
  });

  it('keeps the log to a few segments while overwrites write many times the store size', async () => {
    await withSeed(FILE, (seed) => {
      const random = rng(seed ^ 0x5eed);
      const size = [32, 48, 64][Math.floor(random() * 3)] * MiB;
      const keys = 100 + Math.floor(random() * 200);
      // ~175 bytes a write: 3x the store size in writes (DAXSTORE_LONG: more)
      const r = run(seed, size, keys, scaled(Math.ceil((3 * size) / 175)));
      expect(r.maxSegments, `store of ${size / MiB} MiB, ${keys} keys`).toBeLessThanOrEqual(MAX_SEGMENTS);
    });
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-no-auto-compact: the log fills the store first', async () => {
    setBroken('kv-no-auto-compact', true);
    try {
      await withSeed(FILE, (seed) => {
        const r = run(seed, 32 * MiB, 200, Math.ceil((3 * 32 * MiB) / 175));
        expect(r.maxSegments).toBeGreaterThan(MAX_SEGMENTS);
      });
    } finally {
      setBroken('kv-no-auto-compact', false);
    }
  });
});
