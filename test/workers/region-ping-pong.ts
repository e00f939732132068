/**
 * Worker: ping-pong over an Int32 turn word in a mapped region. Player p waits until
 * the word equals p, then stores 1 - p and notifies, `rounds` times.
 */
import { workerData, parentPort } from 'node:worker_threads';
import { attachMedia } from '../../src/device/attach-media.js';
import type { MediaHandle } from '../../src/device/media.js';

const { handle, player, rounds, turnOffset } = workerData as {
  handle: MediaHandle;
  player: 0 | 1;
  rounds: number;
  turnOffset: number;
};
const media = attachMedia(handle);
const turn = new Int32Array(media.buffer, turnOffset, 2); // [0] whose turn, [1] rounds played
for (let i = 0; i < rounds; i++) {
  while (Atomics.load(turn, 0) !== player) Atomics.wait(turn, 0, 1 - player, 5_000);
  Atomics.add(turn, 1, 1);
  Atomics.store(turn, 0, 1 - player);
  Atomics.notify(turn, 0);
}
media.close();
parentPort?.postMessage({ done: true });
