/**
 * The registry of one handle's snapshots (src/kv/snapshots.ts): random registrations and
 * releases in random orders (repeated sequences, LIFO, FIFO, the middle) against a model
 * multiset. After every step the shared words say what the model says: the oldest held
 * sequence (SNAP_MIN, through oldest()), how many are held (stats()), and whether the handle's
 * HELD bit is set (anyHeld()); releasing a sequence not held is an error. Ages (stats()'s
 * oldestMs): never more than how long the oldest held sequence has been held without a break; a snapshot held past the run that
 * took it is counted from the end of that run, one of another handle from when it was first
 * seen, and the next oldest keeps its own stamp when the oldest is released.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { SNAPSHOTS_BYTES, Snapshots } from '../../src/kv/snapshots.js';
import { workerScript } from '../helpers/workers.js';
import { AssertionError } from '../../src/assert.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-snapshot-registry.test.ts';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
function spin(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

describe('kv snapshot registry', () => {
  it('a closed handle is not kept alive by its queued stamp in a job that never ends', () => {
    // One synchronous job (as the crash checker's, thousands of stores opened and closed):
    // the snapshots' stamping microtasks never run, and must not hold what close() left.
    const count = 2000;
    const retained = (how: string): number =>
      Number(execFileSync(process.execPath, ['--expose-gc', workerScript('snapshots-retention'), String(count), how]));
    const extra = retained('register') - retained('none');
    const perHandleMiB = SNAPSHOTS_BYTES / 2 ** 20;
    expect(extra, `MiB retained beyond handles that took no snapshot (one buffer is ${perHandleMiB} MiB)`).toBeLessThan(
      (count * perHandleMiB) / 4,
    );
  });

  it('oldest, count, the held bit and the age follow random registrations and releases', async () => {
    await withSeed(FILE, (seed) => {
      const rand = rng(seed);
      const snaps = new Snapshots(Snapshots.create(), () => 0);
      let last = 0;
      const held: number[] = []; // the model: every registration, sequence order not kept
      // Date.now() just before each sequence held went from none to held (an age is of a sequence held without a break).
      const since = new Map<number, number>();
      const steps = scaled(20_000);
      for (let step = 0; step < steps; step++) {
        const r = rand();
        if (step % 400 === 0) spin(2); // time passes: an age counted from too early shows
        // More registrations than releases in phases, so the set grows to hundreds and shrinks to none.
        const phase = Math.floor(step / 2000) % 2 === 0 ? 0.55 : 0.4;
        if (r < phase || held.length === 0) {
          if (rand() < 0.5) last += 1 + Math.floor(rand() * 3); // else the same sequence again
          const t = Date.now();
          const S = snaps.register(() => last);
          expect(S).toBe(last);
          if (!held.includes(S)) since.set(S, t);
          held.push(S);
        } else {
          const pick = rand();
          // Newest, oldest, or any.
          const i =
            pick < 0.3
              ? held.length - 1
              : pick < 0.5
                ? held.indexOf(Math.min(...held))
                : Math.floor(rand() * held.length);
          const [S] = held.splice(i, 1);
          snaps.release(S);
          if (!held.includes(S)) expect(() => snaps.release(S)).toThrow(AssertionError);
        }
        const min = held.length === 0 ? Infinity : Math.min(...held);
        expect(snaps.oldest(), `step ${step}`).toBe(min);
        expect(snaps.count).toBe(held.length);
        const stats = snaps.stats();
        expect(stats.snapshots).toBe(held.length);
        // Never older than the oldest held really is.
        expect(stats.oldestMs).toBeLessThanOrEqual(held.length === 0 ? 0 : Date.now() - since.get(min)!);
        expect(snaps.anyHeld()).toBe(held.length > 0);
      }
      snaps.leave();
    });
  });

  it('ages: counted from the end of the taking run, never more than the true age, kept by the next oldest', async () => {
    const buffer = Snapshots.create();
    const a = new Snapshots(buffer, () => 0);
    const b = new Snapshots(buffer, () => 0);
    let last = 1;
    const read = (): number => last;
    // Held across an await: stamped at the end of the run that took it, so the age covers the wait.
    const S1 = a.register(read);
    await sleep(60);
    expect(a.stats().oldestMs).toBeGreaterThanOrEqual(55);
    expect(b.stats().oldestMs).toBeGreaterThanOrEqual(55);
    // A second one, then the first released: the second keeps its own stamp (not reset to 0).
    last = 2;
    const S2 = a.register(read);
    await sleep(60);
    a.release(S1);
    expect(a.stats().oldestMs).toBeGreaterThanOrEqual(55);
    expect(a.stats().oldestMs).toBeLessThan(115);
    a.release(S2);
    expect(a.stats()).toEqual({ snapshots: 0, oldestMs: 0 });
    // A long run before a snapshot is taken does not count: no over-report.
    last = 3;
    a.release(a.register(read));
    spin(80);
    const S3 = a.register(read);
    await Promise.resolve();
    expect(a.stats().oldestMs).toBeLessThan(40);
    expect(b.stats().oldestMs).toBeLessThan(40);
    a.release(S3);
    // Another handle's snapshot held within one long run: counted from when stats() first saw it.
    const S4 = b.register(read);
    expect(a.stats().snapshots).toBe(1);
    spin(60);
    expect(a.stats().oldestMs).toBeGreaterThanOrEqual(55);
    b.release(S4);
    // A new oldest in that slot starts a new count.
    const S5 = b.register(read);
    expect(a.stats().oldestMs).toBeLessThan(40);
    b.release(S5);
    a.leave();
    b.leave();
  });
});
