/**
 * Worker of test/device/participants-facts.test.ts: claims a participant id, posts it, then ends
 * as `mode` says: 'return', 'throw', 'exit', 'loop' (spins until terminated), 'wait' (sleeps in
 * Atomics.wait until terminated), 'finally' (spins inside try/finally: the finally stores 2 into
 * flags[1]), 'cas-store' / 'cas-call-store' (loops: flags[2] = flags[3] = 0, CAS flags[2] 0 -> 1,
 * [a call with a loop,] flags[3] = 1: a termination between the CAS and the store leaves 1, 0).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { participantId } from '../../src/device/participants.js';

const { mode, flags: buffer } = workerData as { mode: string; flags: SharedArrayBuffer };
const flags = new Int32Array(buffer);
parentPort!.postMessage(participantId());
// 'return', 'throw', 'exit': end only once the test has seen the participant alive (flags[7] = 1)
if (mode === 'return' || mode === 'throw' || mode === 'exit') Atomics.wait(flags, 7, 0);
let sink = 0;
/** A call with a loop inside: a back edge between the CAS and the store wherever V8 inlines it. */
function callee(x: number): number {
  for (let i = 0; i < 1000; i++) x = (x * 7 + i) | 0;
  return x;
}
if (mode === 'throw') throw new Error('on purpose');
if (mode === 'exit') process.exit(0);
if (mode === 'loop') for (;;) sink = (sink + 1) | 0;
if (mode === 'wait') Atomics.wait(flags, 6, 0);
if (mode === 'finally') {
  try {
    Atomics.store(flags, 0, 1);
    for (;;) sink = (sink + 1) | 0;
  } finally {
    Atomics.store(flags, 1, 2);
  }
}
if (mode === 'cas-store') {
  Atomics.store(flags, 0, 1);
  for (;;) {
    flags[2] = 0;
    flags[3] = 0;
    Atomics.compareExchange(flags, 2, 0, 1);
    flags[3] = 1;
  }
}
if (mode === 'cas-call-store') {
  Atomics.store(flags, 0, 1);
  for (;;) {
    flags[2] = 0;
    flags[3] = 0;
    Atomics.compareExchange(flags, 2, 0, 1);
    sink = callee(sink);
    flags[3] = 1;
  }
}
