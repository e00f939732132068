/** A stalled participant (a worker pinned and asleep) delays reclamation, shows in stats, never breaks it. */
import { expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { EpochDomain, RETIRE_ARENA_NODE } from '../../src/index/epoch.js';
import { runWorker } from '../helpers/workers.js';

it('a stalled participant delays reclamation, shows in stats, and releasing it lets everything go', async () => {
  const domain = EpochDomain.create();
  const mainId = domain.threadId; // claimed first: a closed worker's slot is free for reuse
  const released: number[] = [];
  domain.registerReclaimer(RETIRE_ARENA_NODE, (payload) => released.push(payload));
  const control = new Int32Array(new SharedArrayBuffer(8));
  const done = runWorker<{ threadId: number }>('index-epoch-pinner', {
    handle: domain.handle(),
    control: control.buffer,
  });
  while (Atomics.load(control, 0) === 0) await sleep(5);

  for (let i = 0; i < 100; i++) domain.retire(RETIRE_ARENA_NODE, i);
  for (let i = 0; i < 10; i++) domain.collect();
  expect(released).toEqual([]);
  const first = domain.stats();
  expect(first.pinned).toBe(1);
  expect(first.limbo[RETIRE_ARENA_NODE]).toBe(100);
  await sleep(80);
  domain.collect();
  const later = domain.stats();
  expect(later.oldestPinAgeMs).toBeGreaterThanOrEqual(first.oldestPinAgeMs + 60);
  expect(released).toEqual([]);

  Atomics.store(control, 1, 1);
  Atomics.notify(control, 1);
  const { threadId } = await done;
  expect(threadId).not.toBe(mainId);
  domain.collect();
  domain.collect();
  expect(released.sort((a, b) => a - b)).toEqual([...Array(100).keys()]);
  const end = domain.stats();
  expect(end.pinned).toBe(0);
  expect(end.oldestPinAgeMs).toBe(0);
  expect(end.limbo.every((n) => n === 0)).toBe(true);
  domain.close();
});
