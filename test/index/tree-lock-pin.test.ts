/**
 * A treeLock holder is pinned in the epoch: what it retires under the lock stays valid until
 * it unlocks, whatever collect() does meanwhile. Writers rely on it: deleteLocked marks the
 * leaf it just retired, copy-on-write reads the node it replaced. Without the pin, a
 * kv-workers run with compaction failed about 1 in 8 with a corrupt free list.
 */
import { expect, test } from 'vitest';
import { runWorker } from '../helpers/workers.js';

type Result = { releasedWhileLocked: boolean; releasedAfter: boolean };

test('an item retired under treeLock is released only after unlockTree', async () => {
  expect(await runWorker<Result>('index-tree-lock-pin', {}, 30_000, { DAXSTORE_TEST_BREAK: '' })).toEqual({
    releasedWhileLocked: false,
    releasedAfter: true,
  });
});

test('with DAXSTORE_TEST_BREAK=tree-lock-unpinned it is released while the lock is held (goes red)', async () => {
  const r = await runWorker<Result>('index-tree-lock-pin', {}, 30_000, { DAXSTORE_TEST_BREAK: 'tree-lock-unpinned' });
  expect(r.releasedWhileLocked).toBe(true);
});
