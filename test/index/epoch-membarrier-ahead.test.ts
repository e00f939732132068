/**
 * The process's membarrier registration (addon/membarrier.h) runs once, on a thread of its own,
 * from the first prepareEpochDomains() or EpochDomain.create() in any thread; create() does not
 * wait for it (it asks which commands the kernel offers), the first barrier does, and every
 * caller in any thread gets the same answer. Here two workers ask first, at once (nothing in
 * this process asked before), then this thread: all see one result, a domain pins with
 * membarrier exactly when the kernel offers it, and a barrier then succeeds.
 */
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { native } from '../../src/native/addon.js';
import { PLAIN_LOADS_ARE_ACQUIRE } from '../../src/index/word-load.js';
import { runWorker, workerScript } from '../helpers/workers.js';

it('two workers asking first and this thread after them get one registration, and domains pin by it', async () => {
  const results = await Promise.all([
    runWorker<{ registered: number; ordering: string }>('index-membarrier-first', {}),
    runWorker<{ registered: number; ordering: string }>('index-membarrier-first', {}),
  ]);
  const registered = native().membarrierRegister();
  expect(registered).toBeLessThanOrEqual(0);
  const offered = native().membarrierOffered();
  if (offered) expect(native().membarrier()).toBe(0);
  const wanted = PLAIN_LOADS_ARE_ACQUIRE && process.env['DAXSTORE_NO_MEMBARRIER'] !== '1';
  const expected = wanted && offered ? 'membarrier' : 'seq-cst';
  expect(results).toEqual([
    { registered, ordering: expected },
    { registered, ordering: expected },
  ]);
  const domain = EpochDomain.create();
  expect(domain.pinOrdering()).toBe(expected);
  domain.close();
});

it('a registration that fails after the kernel offered it: advances use the global barrier', () => {
  const wanted = PLAIN_LOADS_ARE_ACQUIRE && process.env['DAXSTORE_NO_MEMBARRIER'] !== '1';
  if (!wanted || !native().membarrierOffered()) return; // nothing asymmetric to fall back from
  const out = execFileSync(process.execPath, [workerScript('index-membarrier-unregistered')], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  const got = JSON.parse(out) as { ordering: string; registered: number; barrier: number; released: number };
  expect(got).toMatchObject({ failing: true, offered: true, ordering: 'membarrier', barrier: 0, released: 8 });
  expect(got.registered).toBeLessThan(0);
});
