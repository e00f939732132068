/**
 * Worker for the lost-wake-up detector's red runs: stages, deterministically and in
 * one thread, the two interleavings in which an entry is legitimately free while a waiter's
 * 250 ms slice times out, and reports how many lost wake-ups the tree counted (must be 0).
 * Run with DAXSTORE_TEST_BREAK=timeout-unordered or =baton-uncounted (read at module load), or neither.
 *   - unlock-at-timeout: this thread holds the entry; grabAsync waits on it; the
 *     wait-table hook unlocks it right after the timed-out waiter dequeued itself. Ordered
 *     (the check runs under the slot mutex before the hook) the check saw it held; with
 *     timeout-unordered the check runs after the unlock and counts a false lost wake-up.
 *   - baton-in-flight: a queued exclusive waiter X (a registration that has not run yet, like
 *     a descheduled thread) is ahead of grabAsync's waiter Y; the hook unlocks just before Y
 *     dequeues itself at its timeout, which wakes X (baton out): the entry is free, Y queued,
 *     and nothing is lost. With baton-uncounted the check counts it.
 */
import { parentPort } from 'node:worker_threads';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { grab, grabAsync, unlock, type EntryRef } from '../../src/index/entry-lock.js';
import { waitKey } from '../../src/index/wait-table.js';
import { testHooks } from '../../src/test-break.js';

export interface TimeoutRaceResult {
  lostWakeups: number;
  batonsLeft: number;
  waiting: number;
  hookFired: boolean;
}

const KEY = Uint8Array.of(1, 2, 3, 4);

async function unlockAtTimeout(): Promise<TimeoutRaceResult> {
  const tree = RadixTree.create(EpochDomain.create());
  tree.insert(KEY, 7); // a real entry: unlocking an EMPTY placeholder would delete it (wake-all)
  const held = grab(tree, KEY);
  let hookFired = false;
  testHooks.waitTimeout = (stage) => {
    if (stage !== 'after-dequeue' || hookFired) return;
    hookFired = true;
    unlock(tree, held); // lands exactly as the slice timed out
  };
  const ref = await grabAsync(tree, KEY); // waits on this thread's own lock (allowed for async)
  testHooks.waitTimeout = undefined;
  unlock(tree, ref!);
  tree.delete(KEY);
  return finish(tree, hookFired);
}

async function batonInFlight(): Promise<TimeoutRaceResult> {
  const tree = RadixTree.create(EpochDomain.create());
  tree.insert(KEY, 7); // a real entry: unlocking an EMPTY placeholder would delete it (wake-all)
  const held = grab(tree, KEY);
  const wk = waitKey(tree.treeId, KEY);
  const x = tree.waitTable.prepare(wk, 'exclusive'); // X: queued first, does not run until the end
  let hookFired = false;
  testHooks.waitTimeout = (stage) => {
    if (stage !== 'before-dequeue' || hookFired) return;
    hookFired = true;
    unlock(tree, held); // WAITERS is set (Y set it): wakes the queue's head, X
  };
  const ref: EntryRef | undefined = await grabAsync(tree, KEY); // Y: times out behind X, then takes the free entry
  testHooks.waitTimeout = undefined;
  // X runs at last: it was woken, and as grab would, it returns its baton once it re-armed.
  if (tree.waitTable.wait(x, 0) === 'woken') tree.waitTable.returnBaton(wk);
  unlock(tree, ref!);
  tree.delete(KEY);
  return finish(tree, hookFired);
}

function finish(tree: RadixTree, hookFired: boolean): TimeoutRaceResult {
  return {
    lostWakeups: tree.stats().lostWakeups,
    batonsLeft: tree.waitTable.batonsTotal(),
    waiting: tree.waitTable.stats().waiting,
    hookFired,
  };
}

const scenario = (await import('node:worker_threads')).workerData as {
  scenario: 'unlock-at-timeout' | 'baton-in-flight';
};
// A pending Atomics.waitAsync does not keep the event loop alive: this timer does.
const keepAlive = setInterval(() => undefined, 20);
parentPort!.postMessage(scenario.scenario === 'unlock-at-timeout' ? await unlockAtTimeout() : await batonInFlight());
clearInterval(keepAlive);
