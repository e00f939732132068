/**
 * Worker of test/kv/kv-reap-closed-handle.test.ts: a thread whose store handle is closed while
 * its epoch domain stays open (a DaxSpace attached to the store's space keeps it). Attaches both,
 * closes the store handle, answers 'ready'; on 'reap' runs its domain's reapDead() and answers
 * what it returned; on 'end' closes the space and answers.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { DaxSpace } from '../../src/dax/space.js';

const { handle } = workerData as { handle: KvHandle };
const db = attach(handle);
const space = DaxSpace.attach(handle.space);
db.close();
parentPort!.on('message', (m: string) => {
  if (m === 'reap') parentPort!.postMessage(space.epoch.reapDead());
  else {
    space.close();
    parentPort!.postMessage('ended');
  }
});
parentPort!.postMessage('ready');
