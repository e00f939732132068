/**
 * Worker for test/index/tree-lock-pin.test.ts (run with and without
 * DAXSTORE_TEST_BREAK=tree-lock-unpinned, read at module load): retires an item while holding
 * treeLock, collects hard (as other threads' collect() would), and reports whether the item
 * was released before unlockTree().
 */
import { parentPort } from 'node:worker_threads';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';

const KIND = 7; // a kind of this test's own: its reclaimer only records
const epoch = EpochDomain.create();
const tree = RadixTree.create(epoch);
const released: number[] = [];
epoch.registerReclaimer(KIND, (payload) => released.push(payload));

tree.lockTree();
epoch.retire(KIND, 42);
for (let i = 0; i < 10; i++) epoch.collect();
const releasedWhileLocked = released.length > 0;
tree.unlockTree();
for (let i = 0; i < 10; i++) epoch.collect();
parentPort!.postMessage({ releasedWhileLocked, releasedAfter: released.length === 1 && released[0] === 42 });
