/**
 * Worker for the wait table's red runs: stages, deterministically and in one thread, the
 * interleaving each protocol step exists to survive, and reports what happened. Run with
 * DAXSTORE_TEST_BREAK=wait-arm or =wait-key (read at module load), or neither.
 *   - armed before re-check: prepare, then a wake-up lands (between the caller's re-check and
 *     its sleep), then wait: the waiter must come back 'woken', not time out.
 *   - key-matched wake-ups: on a one-slot table, a waiter of key B queued before a waiter of
 *     key A; wakeOne(A) must wake A's waiter and leave B's queued.
 */
import { parentPort } from 'node:worker_threads';
import { WaitTable } from '../../src/index/wait-table.js';

const KEY_A = 1001;
const KEY_B = 2002;

function wakeBetweenRecheckAndSleep(): 'woken' | 'timed-out' {
  const table = WaitTable.create();
  const waiter = table.prepare(KEY_A, 'exclusive');
  table.wakeOne(KEY_A); // the unlock that lands after the re-check found the lock held
  return table.wait(waiter, 50);
}

function wakeOneOnCollidingKeys(): { aWoken: boolean; bWoken: boolean } {
  const table = WaitTable.create({ slots: 1 });
  const b = table.prepare(KEY_B, 'exclusive');
  const a = table.prepare(KEY_A, 'exclusive');
  table.wakeOne(KEY_A);
  // cancel() reports whether a wake-up had already been delivered to that waiter.
  return { aWoken: table.cancel(a), bWoken: table.cancel(b) };
}

parentPort!.postMessage({ armed: wakeBetweenRecheckAndSleep(), keyed: wakeOneOnCollidingKeys() });
