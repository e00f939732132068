/**
 * A batch is one change for readers of every thread, not only across crashes: a worker loops
 * batches that write the same version n into every one of 200 keys while two reader workers
 * loop get(first key) then get(last key) (and the same with getView inside read()). Batches
 * publish in key order, so a reader that saw the first key at n and then the last key below n
 * saw part of a batch; none may (store.ts publishBatchLocked: every entry's seqlock opened
 * before any is finished). With DAXSTORE_TEST_BREAK=kv-batch-publish-per-key in the writer
 * (each key published on its own, as before) readers do see partial batches: red.
 * Not covered here: range() and snapshots (kv-snapshot tests), deletes inside the batch.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { runWorker } from '../helpers/workers.js';
import { scaled } from '../helpers/seed.js';
import { breakEnv } from '../../src/test-break.js';
import type { MvccWorkerResult } from '../workers/kv-mvcc.js';

const KEYS = 200;

async function run(
  durationMs: number,
  writerEnv?: Record<string, string>,
): Promise<{ writer: MvccWorkerResult; readers: MvccWorkerResult[] }> {
  const db = openMedia(createSimMedia(64 * 2 ** 20), { durability: 'none' });
  try {
    const handle = db.share();
    const control = new SharedArrayBuffer(8);
    const c = new Int32Array(control);
    const parties = 3;
    const common = { handle, control, parties, keys: KEYS };
    const writer = runWorker<MvccWorkerResult>('kv-mvcc', { ...common, role: 'batch-writer' }, 60_000, writerEnv);
    const readers = [0, 1].map(() => runWorker<MvccWorkerResult>('kv-mvcc', { ...common, role: 'pair-reader' }));
    while (Atomics.load(c, 0) < parties) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, durationMs));
    Atomics.store(c, 1, 1);
    return { writer: await writer, readers: await Promise.all(readers) };
  } finally {
    db.close();
  }
}

describe('kv batch visibility', () => {
  it('no reader of another thread sees part of a batch (get and getView pairs)', async () => {
    const { writer, readers } = await run(scaled(600));
    const pairs = readers.reduce((n, r) => n + r.ops, 0);
    console.log(`batches ${writer.ops}, reads ${pairs}, partial ${readers.map((r) => r.partial).join(',')}`);
    expect(writer.ops).toBeGreaterThan(2); // few on a loaded machine: each batch is 200 keys
    expect(pairs).toBeGreaterThan(100);
    for (const r of readers) {
      expect(r.torn).toBe(0);
      expect(r.partial, r.detail.join('; ')).toBe(0);
    }
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-batch-publish-per-key in the writer', async () => {
    let partial = 0;
    for (let attempt = 0; attempt < 3 && partial === 0; attempt++) {
      const { readers } = await run(600, breakEnv('kv-batch-publish-per-key'));
      partial = readers.reduce((n, r) => n + r.partial, 0);
      console.log(
        `kv-batch-publish-per-key: ${partial} partial batches seen in ${readers.reduce((n, r) => n + r.ops, 0)} reads (${readers[0].detail[0] ?? ''})`,
      );
    }
    expect(partial).toBeGreaterThan(0);
  });
});
