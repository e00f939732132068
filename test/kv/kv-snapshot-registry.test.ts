/**
 * The registry of one handle's snapshots (src/kv/snapshots.ts): random registrations and
 * releases in random orders (repeated sequences, LIFO, FIFO, the middle) against a model
 * multiset. After every step the shared words say what the model says: the oldest held
 * sequence (SNAP_MIN, through oldest()), how many are held (stats()), and whether the handle's
 * HELD bit is set (anyHeld()); releasing a sequence not held is an error.
 */
import { describe, expect, it } from 'vitest';
import { Snapshots } from '../../src/kv/snapshots.js';
import { AssertionError } from '../../src/assert.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-snapshot-registry.test.ts';

describe('kv snapshot registry', () => {
  it('oldest, count and the held bit follow random registrations and releases', async () => {
    await withSeed(FILE, (seed) => {
      const rand = rng(seed);
      const snaps = new Snapshots(Snapshots.create(), () => 0);
      let last = 0;
      const held: number[] = []; // the model: every registration, sequence order not kept
      const steps = scaled(20_000);
      for (let step = 0; step < steps; step++) {
        const r = rand();
        // More registrations than releases in phases, so the set grows to hundreds and shrinks to none.
        const phase = Math.floor(step / 2000) % 2 === 0 ? 0.55 : 0.4;
        if (r < phase || held.length === 0) {
          if (rand() < 0.5) last += 1 + Math.floor(rand() * 3); // else the same sequence again
          const S = snaps.register(() => last);
          expect(S).toBe(last);
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
        expect(snaps.stats().snapshots).toBe(held.length);
        expect(snaps.anyHeld()).toBe(held.length > 0);
      }
      snaps.leave();
    });
  });
});
