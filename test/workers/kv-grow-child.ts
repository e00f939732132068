/**
 * Child process of test/kv/kv-growth-crash.test.ts: writes keys "k<n>" ('sync': durable on
 * return) into a growable store and records after each put how many are acknowledged (a
 * 4-byte count at offset 0 of the ack file), until it kills itself (SIGKILL) at a chosen step
 * of a chosen growth (testHooks.growStep), or writes them all.
 *
 *   node kv-grow-child.js <store> <ack file> <keys> <growth number> <step>
 */
import fs from 'node:fs';
import { open } from '../../src/kv/index.js';
import { testHooks } from '../../src/test-break.js';
import { growValue } from '../helpers/grow.js';

const [store, ackFile, keysArg, growthArg, step] = process.argv.slice(2);
const keys = Number(keysArg);
const killAt = Number(growthArg);
let growths = 0;
testHooks.growStep = (at) => {
  if (at === 'start') growths++;
  if (growths === killAt && at === step) process.kill(process.pid, 'SIGKILL');
};
const ack = fs.openSync(ackFile, 'w');
const count = Buffer.alloc(4);
const db = open(store, { maxSize: 256 * 2 ** 20, keyEncoding: 'binary', valueEncoding: 'binary' });
for (let n = 0; n < keys; n++) {
  db.put(Buffer.from(`k${n}`), growValue(0, n));
  count.writeUInt32LE(n + 1, 0);
  fs.writeSync(ack, count, 0, 4, 0);
}
db.close();
fs.closeSync(ack);
