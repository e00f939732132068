/**
 * Child process for the prefault bound test: opens argv[2] as a fresh region of argv[3] MiB,
 * asks for a prefault of the whole region argv[4] times in a row (as a writer opening
 * segments faster than their prefaults end would), reading this process's thread count
 * (/proc/self/status Threads) after each ask, and prints {before, max, started} as JSON:
 * the count before the first ask, the highest seen, and the asks handed to a thread.
 */
import fs from 'node:fs';
import { openRegion } from '../../src/device/region.js';

const threads = (): number => Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1]);

const [file = '', mib = '256', asks = '64'] = process.argv.slice(2);
const size = Number(mib) * 2 ** 20;
const media = openRegion(file, { create: true, sizeBytes: size });
const before = threads();
let max = before;
for (let i = 0; i < Number(asks); i++) {
  media.prefault(0, size);
  max = Math.max(max, threads());
}
const started = media.prefaultStarted;
media.close();
process.stdout.write(JSON.stringify({ before, max, started }));
