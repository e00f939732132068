/**
 * A store created without `size` grows from its small start past several growth steps under
 * seeded random puts, overwrites, deletes and batches (some large values) from two worker
 * threads, and never loses an acknowledged write: each worker checks its own keys as it goes
 * and at the end; the main thread checks every key of both against the workers' models while
 * the store is open and after a reopen, and that the store grew at least three times.
 *
 * Sized for CI (8,000 operations per worker: about 100 MiB written, three growths); DAXSTORE_LONG=n runs n times as many.
 * Every worker runs under a watchdog (runWorker's timeout): a hang is a failure naming it.
 */
import { describe, expect, it } from 'vitest';
import { open } from '../helpers/kv-bytes.js';
import { scaled, withSeed } from '../helpers/seed.js';
import { runWorker } from '../helpers/workers.js';
import { growKey, randomValue } from '../helpers/grow.js';
import { growStepBytes } from '../../src/device/device.js';
import { HUGE_BYTES, alignUp } from '../../src/device/layout.js';
import type { KvStore } from '../../src/kv/index.js';
import { tempPaths } from '../helpers/temp-paths.js';

const FILE = 'test/kv/kv-growth-random.test.ts';
const MiB = 2 ** 20;
const WORKERS = 2;
const temp = tempPaths('growrand');

interface WorkerResult {
  versions: number[];
  wrong: number;
  firstWrong: string[];
}

/** Growth steps from `start` bytes to `end` (Device.grow's rule: a quarter of the data area, 16 MiB to 256 MiB, 2 MiB aligned). */
function growthSteps(start: number, end: number, dataOffset: number): number {
  let steps = 0;
  for (let size = start; size < end; steps++) {
    size = alignUp(size + growStepBytes(size, dataOffset), HUGE_BYTES);
  }
  return steps;
}

/** Every key of every worker is what its model says: its last acknowledged version, or absent. */
function checkAll(db: KvStore<Uint8Array, Uint8Array>, results: WorkerResult[], when: string): void {
  let present = 0;
  for (const [w, res] of results.entries())
    res.versions.forEach((v, n) => {
      const got = db.get(growKey(w, n));
      if (v === 0) {
        if (got !== undefined) throw new Error(`${when}: r${w}/${n} was deleted, found ${got.length} bytes`);
        return;
      }
      present++;
      if (got === undefined || !Buffer.from(got).equals(randomValue(w, n, v)))
        throw new Error(`${when}: r${w}/${n} version ${v} ${got === undefined ? 'lost' : 'wrong'}`);
    });
  expect(db.getCount()).toBe(present);
}

describe('growth under random writes', () => {
  it(
    'two workers write a store from its small start past several growths: nothing acknowledged is lost',
    () =>
      withSeed(FILE, async (seed) => {
        const p = temp.next();
        const ops = scaled(8000);
        let db = open(p, { maxSize: 2048 * MiB });
        const device = db.dax.device;
        const start = device.media.size;
        const results = await Promise.all(
          Array.from({ length: WORKERS }, (_, worker) =>
            runWorker<WorkerResult>('kv-grow-random', { handle: db.share(), worker, seed, ops }, 300_000 * scaled(1)),
          ),
        );
        for (const [w, res] of results.entries())
          if (res.wrong !== 0) throw new Error(`worker ${w}: ${res.wrong} reads wrong: ${res.firstWrong.join('; ')}`);
        const end = device.media.size;
        const steps = growthSteps(start, end, device.dataOffset);
        expect(steps, `grew from ${start} to ${end} bytes`).toBeGreaterThanOrEqual(3);
        checkAll(db, results, 'before close');
        db.close();
        db = open(p);
        try {
          expect(db.dax.device.media.size).toBe(end);
          checkAll(db, results, 'after reopen');
        } finally {
          db.close();
        }
      }),
    900_000,
  );
});
