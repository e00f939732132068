/**
 * R6 at the index level: a reader pinned in an epoch keeps a replaced node and a retired
 * leaf valid until it unpins, and both are reclaimed after. The scenario runs in a worker
 * twice: normally (must hold) and with DAXSTORE_TEST_BREAK=epoch (retire releases at once),
 * where it must fail, so this test is shown to detect a broken grace period.
 */
import { test, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { workerScript } from '../helpers/workers.js';

interface R6Result {
  validWhilePinned: boolean;
  reclaimedAfter: boolean;
  liveWords: number;
  limbo: number;
}

function runR6(breakSwitch: string | undefined): Promise<R6Result> {
  const env = { ...process.env };
  if (breakSwitch === undefined) delete env['DAXSTORE_TEST_BREAK'];
  else env['DAXSTORE_TEST_BREAK'] = breakSwitch;
  return new Promise((resolve, reject) => {
    const w = new Worker(workerScript('index-r6-worker'), { env });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

test('a pinned reader keeps a replaced node and a deleted leaf valid until it unpins; both are reclaimed after', async () => {
  const r = await runR6(undefined);
  expect(r).toEqual({ validWhilePinned: true, reclaimedAfter: true, liveWords: 0, limbo: 0 });
});

test('with DAXSTORE_TEST_BREAK=epoch the same reader sees reclaimed memory (the test goes red)', async () => {
  const r = await runR6('epoch');
  expect(r.validWhilePinned).toBe(false);
});
