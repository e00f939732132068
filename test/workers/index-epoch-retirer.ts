/**
 * Worker: retire the given kind-0 and kind-1 payloads; release what it can (it has a
 * reclaimer for kind 0 only), then close. Kind-1 items are left for another thread.
 */
import { workerData, parentPort } from 'node:worker_threads';
import { EpochDomain, type EpochHandle } from '../../src/index/epoch.js';

const { handle, arena, blocks } = workerData as { handle: EpochHandle; arena: number[]; blocks: number[] };
const domain = EpochDomain.attach(handle);
const releasedHere: number[] = [];
domain.registerReclaimer(0, (payload) => releasedHere.push(payload));
for (let i = 0; i < Math.max(arena.length, blocks.length); i++) {
  if (i < arena.length) domain.retire(0, arena[i], 64);
  if (i < blocks.length) domain.retire(1, blocks[i], 1);
}
for (let i = 0; i < 3; i++) domain.collect();
const threadId = domain.threadId;
domain.close();
parentPort!.postMessage({ threadId, releasedHere });
