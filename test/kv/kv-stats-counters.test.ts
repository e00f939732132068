/**
 * stats() counters under concurrent writers: each writer counts puts, keys, dead entries and
 * deletes into its own slot (store.ts count(), plain stores, no shared Atomics RMW), and
 * stats() sums the slots. Two workers write disjoint keys at the same time; afterwards every
 * counter equals what they did (and keys equals the keys actually present). With
 * DAXSTORE_TEST_BREAK=kv-counters-shared in the workers (all writers count into ONE shared word
 * with a plain read and store: what per-writer slots replace) counts are lost and it goes red.
 * Also: counts survive a slot changing hands (a closed handle's slot reused by the next).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { runWorker } from '../helpers/workers.js';

const WORKERS = 2;

async function run(
  puts: number,
  env?: Record<string, string>,
): Promise<{
  expected: { puts: number; deletes: number; keys: number };
  stats: { puts: number; deletes: number; keys: number; deadEntries: number };
  present: number;
}> {
  const db = openMedia(createSimMedia(128 * 2 ** 20), { durability: 'none' });
  try {
    const handle = db.share();
    const barrier = new SharedArrayBuffer(4);
    const results = await Promise.all(
      Array.from({ length: WORKERS }, (_, worker) =>
        runWorker<[number, number]>(
          'kv-counter',
          { handle, worker, workers: WORKERS, barrier, puts, deleteEvery: 3 },
          120_000,
          env,
        ),
      ),
    );
    const expectedPuts = results.reduce((n, r) => n + r[0], 0);
    const expectedDeletes = results.reduce((n, r) => n + r[1], 0);
    const s = db.stats();
    return {
      expected: { puts: expectedPuts, deletes: expectedDeletes, keys: expectedPuts - expectedDeletes },
      stats: { puts: s.puts, deletes: s.deletes, keys: s.keys, deadEntries: s.deadEntries },
      present: [...db.range()].length,
    };
  } finally {
    db.close();
  }
}

describe('kv stats counters with concurrent writers', () => {
  it('2 workers at once: puts, deletes and keys are exact', async () => {
    const { expected, stats, present } = await run(40_000);
    expect(present).toBe(expected.keys);
    expect(stats).toEqual({ ...expected, deadEntries: expected.deletes });
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-counters-shared in the workers (lost counts)', async () => {
    let red = false;
    for (let attempt = 0; attempt < 3 && !red; attempt++) {
      const { expected, stats } = await run(40_000, { DAXSTORE_TEST_BREAK: 'kv-counters-shared' });
      red = stats.puts !== expected.puts || stats.keys !== expected.keys || stats.deletes !== expected.deletes;
      console.log(
        `kv-counters-shared: puts ${stats.puts} of ${expected.puts}, keys ${stats.keys} of ${expected.keys}, deletes ${stats.deletes} of ${expected.deletes}`,
      );
    }
    expect(red).toBe(true);
  });

  it('a slot that changes hands keeps its counts (workers one after another reuse one slot)', async () => {
    const db = openMedia(createSimMedia(32 * 2 ** 20));
    try {
      const handle = db.share();
      for (let worker = 0; worker < 3; worker++)
        await runWorker('kv-counter', {
          handle,
          worker,
          workers: 1,
          barrier: new SharedArrayBuffer(4),
          puts: 10,
          deleteEvery: 10,
        });
      db.put('main', 'v');
      expect(db.stats()).toMatchObject({ puts: 31, deletes: 3, keys: 28, deadEntries: 3 });
    } finally {
      db.close();
    }
  });
});
