/**
 * The churn harness's hang report: a role that cannot finish (here an mf-writer blocked on an
 * entry lock the main thread holds) must come back with where its thread is (its JS stack,
 * taken through the inspector) and what it waits for (the locked entry, with its owner and
 * WAITERS bit), instead of a bare timeout.
 */
import { describe, expect, it } from 'vitest';
import { grab, unlock } from '../../src/index/entry-lock.js';
import { pageKey } from '../../src/dax/layout.js';
import { simSpace, MIB } from './helpers.js';
import { sleepMs, startChurn } from './churn-harness.js';
import { Ew } from '../../src/index/entry-word.js';
import { Lay } from '../../src/index/nodes.js';
import { testSeed } from '../helpers/seed.js';

describe('churn harness hang report', () => {
  it('names the stuck role, its stack and the entry lock it waits on', async () => {
    const { space } = simSpace(4 * MIB);
    const obj = space.object(72, { create: true, size: 4 * 4096 });
    obj.write(4096, new Uint8Array(4096).fill(0x31));
    const held = grab(space.tree, pageKey(72, 1));
    const churn = startChurn(
      space,
      4,
      testSeed(),
      [{ role: 'mf-writer', objectId: 72, from: 1, to: 2 }],
      undefined,
      1500,
    );
    await churn.ready();
    // Stop only once the writer sleeps on the held entry (WAITERS set): READY comes before the
    // role's loop, and a stop that early lets it return without ever writing.
    const word = (): number =>
      space.epoch.guard(() =>
        Atomics.load(space.tree.arena.i32, space.tree.findLeafPinned(pageKey(72, 1)) + Lay.W_ENTRY),
      );
    // Bounded by time, not by rounds: on a loaded machine the worker may still be loading its
    // modules after a second.
    const deadline = Date.now() + 60_000;
    while ((word() & Ew.WAITERS) === 0 && Date.now() < deadline) await sleepMs(2);
    expect(word() & Ew.WAITERS, 'the writer to sleep on the held entry within 60 s').not.toBe(0);
    const [writer] = await churn.stop();
    const report = churn.hangReport() ?? '';
    unlock(space.tree, held);
    expect(writer).toBe('timeout: mf-writer');
    expect(report).toMatch(/role mf-writer \(worker thread \d+\):/);
    expect(report).toMatch(/at grab \(.*entry-lock\.js/); // asleep in the entry lock...
    expect(report).toMatch(/at writePage \(.*object\.js/); // ...of write()'s page
    expect(report).toContain(`page 1: value LOCKED by participant ${space.tree.threadId} WAITERS`);
    space.close();
  }, 90_000);
});
