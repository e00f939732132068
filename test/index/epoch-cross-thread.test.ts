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
