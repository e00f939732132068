/**
 * R4 at the index level: a blocking grab of an entry this thread holds is EDEADLK at once,
 * never a hang, whether the thread took it in sync code or in an async task; the async
 * variant waits for this thread's own sync holder instead (it can be released later).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { grab, grabAsync, tryGrab, unlock, replace } from '../../src/index/entry-lock.js';
import { isDaxError } from '../../src/errors.js';
import { expectBaseline } from './tree-helpers.js';

const key = new TextEncoder().encode('self');

function setup(): { tree: RadixTree; epoch: EpochDomain } {
  const epoch = EpochDomain.create();
  return { tree: RadixTree.create(epoch), epoch };
}

test('sync grab of an entry this thread holds throws EDEADLK immediately', () => {
  const { tree, epoch } = setup();
  const ref = grab(tree, key);
  replace(tree, ref, 7);
  const t0 = performance.now();
  let err: unknown;
  try {
    grab(tree, key);
  } catch (e) {
    err = e;
  }
  expect(isDaxError(err, 'EDEADLK')).toBe(true);
  expect((err as Error).message).toContain('73656c66'); // names the key
  expect(performance.now() - t0).toBeLessThan(50);
  expect(tryGrab(tree, key)).toBeUndefined();
  unlock(tree, ref);
  expect(tree.lookup(key)).toBe(7);
  expect(tree.delete(key)).toBe(true);
  expectBaseline(tree, epoch);
});

test('EDEADLK leaves the held entry untouched and the placeholder rule intact', () => {
  const { tree, epoch } = setup();
  const ref = grab(tree, key); // a placeholder: absent key
  expect(() => grab(tree, key)).toThrow(/EDEADLK/);
  expect(tree.count()).toBe(1);
  unlock(tree, ref); // unlocked while EMPTY: removed
  expect(tree.count()).toBe(0);
  expectBaseline(tree, epoch);
});

test('grabAsync of an entry held by this thread waits until sync code releases it', async () => {
  const { tree, epoch } = setup();
  const ref = grab(tree, key);
  replace(tree, ref, 1);
  let got = false;
  const pending = grabAsync(tree, key).then((r) => {
    got = true;
    return r!;
  });
  await new Promise((r) => setTimeout(r, 20));
  expect(got).toBe(false);
  unlock(tree, ref);
  const ref2 = await pending;
  expect(ref2.value).toBe(1);
  unlock(tree, ref2);
  expect(tree.stats().lostWakeups).toBe(0);
  expect(tree.delete(key)).toBe(true);
  expectBaseline(tree, epoch);
});

test('sync grab of an entry held by an async task of this thread is EDEADLK', async () => {
  const { tree, epoch } = setup();
  const ref = (await grabAsync(tree, key))!;
  expect(() => grab(tree, key)).toThrow(/EDEADLK/);
  unlock(tree, ref);
  expectBaseline(tree, epoch);
});
