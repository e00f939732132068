/**
 * The process's membarrier registration (addon/membarrier.h) runs once, on a thread of its own,
 * from the first prepareEpochDomains() or EpochDomain.create() in any thread; every later
 * create, in any thread, waits for it and gets the same answer. Here two workers ask first, at
 * once (nothing in this process asked before), then this thread: all see one result, and a
 * domain pins with membarrier exactly when it is 0.
 */
import { expect, it } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { native } from '../../src/native/addon.js';
import { PLAIN_LOADS_ARE_ACQUIRE } from '../../src/index/word-load.js';
import { runWorker } from '../helpers/workers.js';

it('two workers asking first and this thread after them get one registration, and domains pin by it', async () => {
  const results = await Promise.all([
    runWorker<{ registered: number; ordering: string }>('index-membarrier-first', {}),
    runWorker<{ registered: number; ordering: string }>('index-membarrier-first', {}),
  ]);
  const registered = native().membarrierRegister();
  expect(registered).toBeLessThanOrEqual(0);
  const wanted = PLAIN_LOADS_ARE_ACQUIRE && process.env['DAXSTORE_NO_MEMBARRIER'] !== '1';
  const expected = wanted && registered === 0 ? 'membarrier' : 'seq-cst';
  expect(results).toEqual([
    { registered, ordering: expected },
    { registered, ordering: expected },
  ]);
  const domain = EpochDomain.create();
  expect(domain.pinOrdering()).toBe(expected);
  domain.close();
});
