/**
 * Shared helpers of the index tests: key encoders, worker control, and the baseline check every
 * test ends with (arena, limbo and wait table back to empty). Seeds: ../helpers/seed.ts.
 */
import { expect } from 'vitest';
import type { EpochDomain } from '../../src/index/epoch.js';
import type { RadixTree } from '../../src/index/radix-tree.js';
import { HEADER_WORDS } from '../../src/index/arena.js';
import { RETIRE_ARENA_NODE } from '../../src/index/epoch.js';

export function hex(k: Uint8Array): string {
  return Buffer.from(k).toString('hex');
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Drive the epoch until nothing is left in limbo for the tree's arena kind. */
export function drainLimbo(epoch: EpochDomain): void {
  for (let i = 0; i < 8; i++) epoch.collect();
}

/** Every entry deleted, limbo drained, no waiter left: the tree is back at its empty baseline. */
export function expectBaseline(tree: RadixTree, epoch: EpochDomain): void {
  drainLimbo(epoch);
  expect(tree.count()).toBe(0);
  expect(tree.arena.liveWords()).toBe(0);
  expect(tree.stats().liveBytes).toBe(HEADER_WORDS * 4);
  expect(epoch.stats().limbo[RETIRE_ARENA_NODE]).toBe(0);
  expect(tree.waitTable.stats().waiting).toBe(0);
  expect(tree.waitTable.batonsTotal()).toBe(0);
  expect(tree.stats().poisonHits).toBe(0);
  expect(tree.stats().lostWakeups).toBe(0);
}

import { Worker } from 'node:worker_threads';
import { workerScript } from '../helpers/workers.js';
import type { TreeWorkerData } from '../workers/index-tree-worker.js';

export const C_STOP = 0;
export const C_MAX_INSIDE = 2;
export const C_READY = 3;
export const C_START = 4;
export const C_BAD_READS = 5;

export function newControl(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4096));
}

/** Start one index-tree-worker (optionally with DAXSTORE_TEST_BREAK set for it only); resolves with its result. */
export function startTreeWorker<T>(data: TreeWorkerData, breakSwitch?: string, timeoutMs = 30_000): Promise<T> {
  const env = { ...process.env };
  if (breakSwitch !== undefined) env['DAXSTORE_TEST_BREAK'] = breakSwitch;
  else delete env['DAXSTORE_TEST_BREAK'];
  return new Promise<T>((resolve, reject) => {
    const worker = new Worker(workerScript('index-tree-worker'), { workerData: data, env });
    let result: { value: T } | undefined;
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`index-tree-worker ${data.mode} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    worker.once('message', (value: T) => (result = { value }));
    worker.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    worker.once('exit', (code) => {
      clearTimeout(timer);
      if (result !== undefined) resolve(result.value);
      else reject(new Error(`index-tree-worker ${data.mode} exited with code ${code} and no result`));
    });
  });
}

/** Release workers blocked in waitStart() once `n` are ready (so they really overlap). */
export async function startWhenReady(control: Int32Array, n: number): Promise<void> {
  while (Atomics.load(control, C_READY) < n) await new Promise((r) => setTimeout(r, 2));
  Atomics.store(control, C_START, 1);
  Atomics.notify(control, C_START);
}
