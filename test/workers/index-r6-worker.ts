/**
 * R6 at the index level, run in a worker so the test can start it with and without
 * DAXSTORE_TEST_BREAK=epoch (read at module load): a reader pinned in an epoch keeps a
 * replaced inner node and a deleted leaf valid until it unpins; after that both are
 * reclaimed (poisoned: poisonReclaimed mode). Posts what it saw.
 */
import { parentPort } from 'node:worker_threads';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { Hw } from '../../src/index/arena.js';
import { blockWords, isLive } from '../../src/index/nodes.js';

const epoch = EpochDomain.create();
const tree = RadixTree.create(epoch, { poisonReclaimed: true });
const enc = new TextEncoder();
// A full N4 root: the next child grows it by copy-on-write (a node with room takes a new
// child by an in-place append, which leaves no old node to keep valid).
for (const k of ['a', 'b', 'c', 'g']) tree.insert(enc.encode(k), k.charCodeAt(0));

const i32 = () => tree.arena.i32;
const reader = epoch.pinAsync(); // the reader's own participant
const oldRoot = Atomics.load(i32(), Hw.ROOT);
// The node's own words only: what lies past it is another block and may change.
const rootWords = Array.from(i32().subarray(oldRoot, oldRoot + blockWords(i32(), oldRoot)));
let leafB = 0;
epoch.guard(() => (leafB = tree.findLeafPinned(enc.encode('b'))));
// Header and key words (the entry word legitimately changes: delete sets DELETED).
const leafWords = [i32()[leafB], i32()[leafB + 4]];

// Writers: grow the root (N4 -> N16 by copy-on-write) and delete 'b', then collect hard.
for (const k of ['d', 'e', 'f']) tree.insert(enc.encode(k), 1);
tree.delete(enc.encode('b'));
for (let i = 0; i < 10; i++) epoch.collect();

const same = (off: number, words: number[]) => words.every((w, j) => i32()[off + j] === w);
const validWhilePinned =
  Atomics.load(i32(), Hw.ROOT) !== oldRoot &&
  isLive(i32()[oldRoot]) &&
  same(oldRoot, rootWords) &&
  i32()[leafB] === leafWords[0] &&
  i32()[leafB + 4] === leafWords[1];

reader.release();
for (let i = 0; i < 10; i++) epoch.collect();
const reclaimedAfter = !isLive(i32()[oldRoot]) && !isLive(i32()[leafB]);

for (const k of ['a', 'c', 'd', 'e', 'f', 'g']) tree.delete(enc.encode(k));
for (let i = 0; i < 10; i++) epoch.collect();
parentPort!.postMessage({
  validWhilePinned,
  reclaimedAfter,
  liveWords: tree.arena.liveWords(),
  limbo: epoch.stats().limbo[0],
});
