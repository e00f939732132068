/**
 * Worker of test/index/index-thread-death.test.ts: the survivor. On each request it takes and
 * releases the entry lock of every key (meeting whatever a dead worker held), checks the whole
 * structure (verifyTree: treeLock, counts, tags, order), writes every key, and reports the
 * tree's content. In a worker so that a hang is caught by the test's watchdog.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EpochDomain, type EpochHandle } from '../../src/index/epoch.js';
import { RadixTree, type RadixTreeHandle } from '../../src/index/radix-tree.js';
import { grab, unlock } from '../../src/index/entry-lock.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { treeRepairStats } from '../../src/index/tree-repair.js';
import { spinLockStats } from '../../src/device/spin-lock.js';
import { INDEX_DEATH_KEYS } from './index-death-ops.js';
import { testKey } from './index-keys.js';

const { tree: th, epoch: eh } = workerData as { tree: RadixTreeHandle; epoch: EpochHandle };
const epoch = EpochDomain.attach(eh);
const tree = RadixTree.attach(th, epoch);

function content(): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let k = 0; k < INDEX_DEATH_KEYS; k++) {
    const v = tree.lookup(testKey(k));
    if (v !== undefined) out.push([k, v]);
  }
  return out;
}

parentPort!.on('message', (req: { id: number; t: 'check' | 'write'; writes?: Array<[number, number]> }) => {
  try {
    let result: unknown;
    if (req.t === 'check') {
      const before = content(); // lock-free reads first: nothing may be half done for them either
      for (let k = 0; k < INDEX_DEATH_KEYS; k++) unlock(tree, grab(tree, testKey(k)));
      const shape = verifyTree(tree);
      result = {
        before,
        after: content(),
        leaves: shape.leaves,
        repairs: treeRepairStats.repairs,
        stolen: spinLockStats.stolen,
      };
    } else {
      for (const [k, v] of req.writes!) {
        if (v === 0) tree.delete(testKey(k));
        else tree.insert(testKey(k), v);
      }
      verifyTree(tree);
      result = content();
    }
    parentPort!.postMessage({ id: req.id, ok: true, result });
  } catch (e) {
    parentPort!.postMessage({ id: req.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
});
parentPort!.postMessage({ id: 0, ok: true, result: 'ready' });
