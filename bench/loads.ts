/**
 * The single-operation costs that shaped the index's load and store choices, each against its
 * peer in the same process, interleaved (rounds alternate task and peer, the median of the
 * per-round ratios is printed) so a loaded machine shifts both sides alike:
 *
 *   Atomics.load vs a plain typed-array load            (src/index/word-load.ts: loadWord)
 *   Atomics.store vs a plain typed-array store          (release stores on x86)
 *   a length-tracking view of a growable SharedArrayBuffer vs a fixed-length view over it
 *                                                        (src/index/epoch.ts: the limbo view)
 *   performance.now() vs a plain store                   (epoch pins do not read the clock)
 *
 * Each task sums or writes Int32Array elements of a SharedArrayBuffer in a loop of LOOP
 * operations; ns/op is wall time over LOOP. Run after tsc: `node dist/bench/loads.js`
 * (ROUNDS=n for more rounds). Note `uptime` beside the figures.
 */
import os from 'node:os';

const LOOP = 1 << 20;
const ROUNDS = Number(process.env['ROUNDS'] ?? 41);
const WORDS = 1 << 12;

const shared = new SharedArrayBuffer(WORDS * 4);
const i32 = new Int32Array(shared);
const growable = new SharedArrayBuffer(WORDS * 4, { maxByteLength: WORDS * 16 });
const tracking = new Int32Array(growable); // length-tracking: no length given
const fixed = new Int32Array(growable, 0, WORDS);
for (let i = 0; i < WORDS; i++) i32[i] = tracking[i] = i;

let sink = 0;

function atomicsLoad(): void {
  let s = 0;
  for (let i = 0; i < LOOP; i++) s += Atomics.load(i32, i & (WORDS - 1));
  sink += s;
}
function plainLoad(): void {
  let s = 0;
  for (let i = 0; i < LOOP; i++) s += i32[i & (WORDS - 1)];
  sink += s;
}
function atomicsStore(): void {
  for (let i = 0; i < LOOP; i++) Atomics.store(i32, i & (WORDS - 1), i);
}
function plainStore(): void {
  for (let i = 0; i < LOOP; i++) i32[i & (WORDS - 1)] = i;
}
function trackingLoad(): void {
  let s = 0;
  for (let i = 0; i < LOOP; i++) s += tracking[i & (WORDS - 1)];
  sink += s;
}
function fixedLoad(): void {
  let s = 0;
  for (let i = 0; i < LOOP; i++) s += fixed[i & (WORDS - 1)];
  sink += s;
}
function clockRead(): void {
  let s = 0;
  for (let i = 0; i < LOOP; i++) s += performance.now();
  sink += s;
}

function timeNs(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / LOOP;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function pair(name: string, task: () => void, peer: () => void, peerName: string): void {
  for (let i = 0; i < 3; i++) (task(), peer()); // warm up: both optimized before timing
  const ratios: number[] = [];
  const taskNs: number[] = [];
  const peerNs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const first = r % 2 === 0;
    const a = first ? timeNs(task) : 0;
    const b = timeNs(peer);
    const t = first ? a : timeNs(task);
    taskNs.push(t);
    peerNs.push(b);
    ratios.push(t / b);
  }
  console.log(
    `${name.padEnd(28)} ${median(taskNs).toFixed(2).padStart(7)} ns/op   ${peerName.padEnd(22)} ${median(peerNs)
      .toFixed(2)
      .padStart(7)} ns/op   ratio ${median(ratios).toFixed(2)} (median of ${ROUNDS} interleaved rounds)`,
  );
}

console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}, load ${os.loadavg().map((l) => l.toFixed(1))}`);
pair('Atomics.load', atomicsLoad, plainLoad, 'plain load');
pair('Atomics.store', atomicsStore, plainStore, 'plain store');
pair('length-tracking view load', trackingLoad, fixedLoad, 'fixed-length view load');
pair('performance.now()', clockRead, plainStore, 'plain store');
if (sink === 42) console.log(''); // keeps the loops' results alive
