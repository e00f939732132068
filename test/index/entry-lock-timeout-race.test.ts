/**
 * The lost-wake-up detector is exact at a slice's timeout: an unlock landing just as
 * a 250 ms wait slice times out, or while a woken waiter ahead in the queue has not yet taken
 * the entry (a baton in flight), is not counted as a lost wake-up. Each interleaving is staged
 * deterministically in one worker thread (test/workers/index-timeout-race.ts) through the wait
 * table's test hook, and each goes red with its mechanism switched off:
 * DAXSTORE_TEST_BREAK=timeout-unordered (the check runs after the slot mutex is dropped, the
 * old order) and =baton-uncounted (the check ignores batons out).
 */
import { test, expect } from 'vitest';
import { runWorker } from '../helpers/workers.js';
import type { TimeoutRaceResult } from '../workers/index-timeout-race.js';

function run(scenario: 'unlock-at-timeout' | 'baton-in-flight', breakSwitch = ''): Promise<TimeoutRaceResult> {
  return runWorker<TimeoutRaceResult>('index-timeout-race', { scenario }, 30_000, { DAXSTORE_TEST_BREAK: breakSwitch });
}

test('an unlock landing as a wait slice times out is not a lost wake-up', async () => {
  const r = await run('unlock-at-timeout');
  expect(r.hookFired).toBe(true);
  expect(r.lostWakeups).toBe(0);
  expect(r.batonsLeft).toBe(0);
  expect(r.waiting).toBe(0);
});

test('with DAXSTORE_TEST_BREAK=timeout-unordered the same interleaving counts a false lost wake-up', async () => {
  const r = await run('unlock-at-timeout', 'timeout-unordered');
  expect(r.hookFired).toBe(true);
  expect(r.lostWakeups).toBe(1);
});

test('a waiter timing out while a woken waiter ahead of it has not yet taken the entry is not a lost wake-up', async () => {
  const r = await run('baton-in-flight');
  expect(r.hookFired).toBe(true);
  expect(r.lostWakeups).toBe(0);
  expect(r.batonsLeft).toBe(0);
  expect(r.waiting).toBe(0);
});

test('with DAXSTORE_TEST_BREAK=baton-uncounted the baton interleaving counts a false lost wake-up', async () => {
  const r = await run('baton-in-flight', 'baton-uncounted');
  expect(r.hookFired).toBe(true);
  expect(r.lostWakeups).toBe(1);
});
