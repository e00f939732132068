/**
 * Worker: takes and releases little locks (one Int32 word per lock, 0 free / 1 held) using
 * the wait table the way entry locks do: try; else prepare, RE-CHECK, then sleep with a
 * bounded timeout; unlock stores 0 then wakeOne. "Observer" iterations wait shared until a
 * lock is free without taking it (the reverse-map waiters). Checks mutual exclusion and
 * counts timeouts and lost wake-ups (a timeout that finds the lock free).
 */
import { workerData, parentPort } from 'node:worker_threads';
import { WaitTable, WAIT_ARM_BROKEN, WAIT_KEY_BROKEN, type WaitTableHandle } from '../../src/index/wait-table.js';
import { rng } from '../helpers/seed.js';

interface Job {
  handle: WaitTableHandle;
  locks: SharedArrayBuffer; // Int32 per lock, then Int32 counter per lock, then [order cursor, order...]; word 3 * lockCount + 62 counts sleeps past their re-check, 63 the start barrier
  lockCount: number;
  keys: number[]; // wait key per lock
  iterations: number;
  timeoutMs: number;
  seed: number;
  observeEvery: number; // every n-th iteration waits shared instead of locking; 0 = never
  recordOrder: boolean;
  holdSpins: number; // up to this many loads inside the critical section
  durationMs: number; // stop after this long (checked every 64 iterations), 0 = run all iterations
  startTogether: number; // workers to wait for before starting (a barrier word after the order log), 0 = none
}
const job = workerData as Job;
const table = WaitTable.attach(job.handle);
const words = new Int32Array(job.locks);
const random = rng(job.seed);
const rand = (n: number): number => Math.floor(random() * n);
let timeouts = 0;
let lostWakeups = 0;
let exclusionBroken = 0;

function sleepOnce(lock: number, mode: 'exclusive' | 'shared', free: () => boolean): boolean {
  const waiter = table.prepare(job.keys[lock], mode);
  if (free()) {
    table.cancel(waiter);
    return true;
  }
  sleeps++;
  Atomics.add(words, 3 * job.lockCount + 62, 1); // past its re-check: only a wake-up lets it on now
  if (table.wait(waiter, job.timeoutMs) === 'timed-out') {
    timeouts++;
    if (Atomics.load(words, lock) === 0) lostWakeups++;
  }
  return false;
}

function lock(l: number): void {
  const tryLock = (): boolean => Atomics.compareExchange(words, l, 0, 1) === 0;
  while (!tryLock()) if (sleepOnce(l, 'exclusive', tryLock)) return;
}

function unlock(l: number): void {
  Atomics.store(words, l, 0);
  table.wakeOne(job.keys[l]);
}

function observe(l: number): void {
  const isFree = (): boolean => Atomics.load(words, l) === 0;
  while (!isFree()) if (sleepOnce(l, 'shared', isFree)) return;
}

if (job.startTogether > 0) {
  const barrier = 3 * job.lockCount + 63;
  Atomics.add(words, barrier, 1);
  Atomics.notify(words, barrier);
  while (Atomics.load(words, barrier) < job.startTogether)
    Atomics.wait(words, barrier, Atomics.load(words, barrier), 1);
}
let locked = 0;
let sleeps = 0;
const end = Date.now() + job.durationMs;
for (let i = 0; i < job.iterations; i++) {
  if (job.durationMs > 0 && (i & 63) === 0 && Date.now() > end) break;
  const l = rand(job.lockCount);
  if (job.observeEvery > 0 && i % job.observeEvery === job.observeEvery - 1) {
    observe(l);
    continue;
  }
  lock(l);
  locked++;
  const counter = job.lockCount + l;
  const before = words[counter];
  for (let spin = rand(job.holdSpins); spin > 0; spin--) if (Atomics.load(words, l) !== 1) exclusionBroken++;
  words[counter] = before + 1;
  if (job.recordOrder) {
    const cursor = 2 * job.lockCount;
    words[cursor + 1 + Atomics.add(words, cursor, 1)] = job.seed;
  }
  unlock(l);
}
parentPort!.postMessage({
  locked,
  sleeps,
  timeouts,
  lostWakeups,
  exclusionBroken,
  broken: WAIT_ARM_BROKEN || WAIT_KEY_BROKEN,
});
