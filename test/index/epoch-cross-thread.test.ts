/** Limbo is shared: what one worker retires, another thread releases with its own reclaimer. */
import { expect, it } from 'vitest';
import { EpochDomain, RETIRE_ARENA_NODE, RETIRE_DEVICE_BLOCK } from '../../src/index/epoch.js';
import { runWorker } from '../helpers/workers.js';

it('items retired by one worker are released by another thread, each exactly once', async () => {
  const domain = EpochDomain.create();
  const mainId = domain.threadId; // claimed first: a closed worker's slot is free for reuse
  const blocksReleased: [number, number][] = [];
  domain.registerReclaimer(RETIRE_DEVICE_BLOCK, (payload, size) => blocksReleased.push([payload, size]));
  const arena = Array.from({ length: 150 }, (_, i) => i * 4096);
  const blocks = Array.from({ length: 200 }, (_, i) => 2 ** 40 + i);
  const result = await runWorker<{ threadId: number; releasedHere: number[] }>('index-epoch-retirer', {
    handle: domain.handle(),
    arena,
    blocks,
  });
  // The worker released its own kind (arena) and none of the device blocks it has no reclaimer for.
  expect(result.releasedHere).toEqual(arena);
  expect(result.threadId).not.toBe(mainId);
  expect(domain.stats().limbo[RETIRE_DEVICE_BLOCK]).toBe(200);
  domain.collect();
  domain.collect();
  expect(blocksReleased).toEqual(blocks.map((b) => [b, 1]));
  expect(domain.collect()).toBe(0);
  const s = domain.stats();
  expect(s.released).toBe(350);
  expect(s.limbo[RETIRE_ARENA_NODE] + s.limbo[RETIRE_DEVICE_BLOCK]).toBe(0);
  domain.close();
});

/**
 * The limbo grows (one thread) while another thread holds a view of its old size: each thread
 * reads it through a fixed-length view that lockLimbo extends when L_BYTES says it grew
 * (epoch.ts). A worker attached before the growth releases every item exactly once; with
 * DAXSTORE_TEST_BREAK=limbo-view-stale in that worker (no refresh) it does not.
 */
async function releaseAfterGrowth(
  breakSwitch?: string,
): Promise<{ released: number[]; error: string; expected: number[] }> {
  const domain = EpochDomain.create();
  domain.threadId; // claim the main thread's slot
  const control = new SharedArrayBuffer(8);
  const c = new Int32Array(control);
  const worker = runWorker<{ released: number[]; error: string }>(
    'index-epoch-releaser',
    { handle: domain.handle(), control },
    60_000,
    breakSwitch === undefined ? undefined : { DAXSTORE_TEST_BREAK: breakSwitch },
  );
  while (Atomics.load(c, 0) === 0) await new Promise((r) => setTimeout(r, 2));
  const expected = Array.from({ length: 5000 }, (_, i) => 2 ** 40 + i); // 79 chunks: the limbo grows from 8 several times
  for (const p of expected) domain.retire(RETIRE_DEVICE_BLOCK, p, 1); // no reclaimer here: they stay in limbo
  Atomics.store(c, 1, 1);
  Atomics.notify(c, 1);
  const r = await worker;
  domain.close();
  return { ...r, expected };
}

it('a thread whose limbo view predates a growth by another thread releases every item exactly once', async () => {
  const { released, error, expected } = await releaseAfterGrowth();
  expect(error).toBe('');
  expect([...released].sort((a, b) => a - b)).toEqual(expected);
});

it('goes red with DAXSTORE_TEST_BREAK=limbo-view-stale (the old view misses the grown chunks)', async () => {
  const { released, error, expected } = await releaseAfterGrowth('limbo-view-stale');
  console.log(
    `limbo-view-stale: released ${released.length} of ${expected.length}${error === '' ? '' : `, error ${error.slice(0, 120)}`}`,
  );
  expect(error !== '' || JSON.stringify([...released].sort((a, b) => a - b)) !== JSON.stringify(expected)).toBe(true);
});
