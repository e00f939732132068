/**
 * Crash test on the simulated device, per durability mode. At fences during a random
 * single-thread workload (puts, deletes, batches, deleteRange, flushed()), crash images
 * (durable image + a random subset of pending 8-byte words) are recovered and must equal
 * the model state after some prefix of the operations:
 *   - 'sync': every acknowledged operation (prefix >= operations completed before the fence);
 *   - 'group': at least everything before the last flushed();  'none': anything from the open.
 * Equality of whole states also proves no batch is half-applied and no value torn; the
 * device audit proves no block leaked or was double-owned. Not covered: several threads
 * (kv-workers), poisoned media, real power loss.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { type Durability, type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { setBroken, type SwitchName } from '../../src/test-break.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-crash.test.ts';

const baseSeed = testSeed();
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
type State = string; // canonical listing

function listing(db: KvStore): State {
  return [...db.range()].map(([k, v]) => `${hex(k)}=${hex(v)}`).join(',');
}
function modelListing(m: Map<string, string>): State {
  return [...m.entries()]
    .sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex')))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

function runMode(durability: Durability, seed: number, ops: number): { images: number } {
  const rand = rng(seed);
  const media = createSimMedia(8 * 2 ** 20, { name: `kv-crash-${durability}` });
  const db = openMedia(media, { durability });
  const model = new Map<string, string>();
  const states: State[] = [modelListing(model)];
  let done = 0; // operations completed (acknowledged)
  let durablePoint = 0; // prefix guaranteed durable
  const pending: Array<{ image: SimMedia; lo: number; hi: number }> = [];
  let images = 0;
  const unhook = media.onFence(() => {
    for (let i = 0; i < 3; i++)
      pending.push({
        image: media.crashImage({ mode: 'random', seed: (rand() * 2 ** 32) >>> 0, probability: rand() }),
        lo: durability === 'sync' ? done : durablePoint,
        hi: done + 1,
      });
  });
  const checkPending = (): void => {
    while (pending.length > 0) {
      const { image, lo, hi } = pending.pop()!;
      const again = openMedia(image, { formatIfEmpty: false });
      try {
        const got = listing(again);
        const ok = states.slice(lo, Math.min(hi, states.length - 1) + 1).includes(got);
        if (!ok)
          throw new Error(
            `crash image (ops ${lo}..${hi}) recovered a state that is no allowed prefix: ${got.slice(0, 300)}`,
          );
        expect(again.dax.device.audit()).toEqual([]);
        expect(again.stats().keys).toBe(got === '' ? 0 : got.split(',').length);
        if (images % 10 === 0) {
          // Writing after recovery resumes the segment past a torn tail: what it appends must survive.
          again.put(Uint8Array.of(0x7a), Uint8Array.of(1, 2, 3));
          again.close();
          const third = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
          expect(listing(third)).toBe(got === '' ? '7a=010203' : `${got},7a=010203`);
          third.close();
        }
      } finally {
        again.close();
        image.dispose();
      }
      images++;
    }
  };
  const key = (): Uint8Array => Uint8Array.of(97 + Math.floor(rand() * 16), Math.floor(rand() * 3));
  const value = (): Uint8Array => Uint8Array.from({ length: Math.floor(rand() * 300) }, () => (rand() * 256) | 0);
  try {
    for (let i = 0; i < ops; i++) {
      const r = rand();
      if (r < 0.5) {
        const k = key(),
          v = value();
        db.put(k, v);
        model.set(hex(k), hex(v));
      } else if (r < 0.7) {
        const k = key();
        db.delete(k);
        model.delete(hex(k));
      } else if (r < 0.88) {
        const batch = Array.from({ length: 2 + Math.floor(rand() * 4) }, () =>
          rand() < 0.75 ? { type: 'put' as const, key: key(), value: value() } : { type: 'del' as const, key: key() },
        );
        db.batch(batch);
        for (const o of batch)
          if (o.type === 'put') model.set(hex(o.key), hex(o.value));
          else model.delete(hex(o.key));
      } else if (r < 0.92) {
        const lo = key();
        db.deleteRange({ gte: lo, lt: Uint8Array.of(lo[0] + 1) });
        for (const k of [...model.keys()])
          if (Buffer.compare(Buffer.from(k, 'hex'), Buffer.from(lo)) >= 0 && Buffer.from(k, 'hex')[0] < lo[0] + 1)
            model.delete(k);
      } else {
        void db.flushed();
        durablePoint = done;
      }
      done++;
      states.push(modelListing(model));
      if (durability === 'sync') durablePoint = done;
      if (rand() < 0.3)
        pending.push({
          image: media.crashImage({ mode: 'random', seed: (rand() * 2 ** 32) >>> 0, probability: rand() }),
          lo: durablePoint,
          hi: done,
        });
      checkPending();
    }
    expect(listing(db)).toBe(states[done]);
  } finally {
    unhook();
    db.close();
  }
  checkPending();
  return { images };
}

describe('kv crash consistency on the simulated device', () => {
  for (const [durability, ops] of [
    ['sync', 250],
    ['group', 300],
    ['none', 300],
  ] as const) {
    // Each crash image is reopened and checked: minutes on a loaded machine.
    it(`${durability}: every crash image recovers an allowed prefix of the operations`, { timeout: 240_000 }, () => {
      try {
        const { images } = runMode(durability, baseSeed, ops);
        expect(images).toBeGreaterThan(durability === 'sync' ? 500 : 100);
      } catch (e) {
        console.error(`kv crash (${durability}) failed with ${replayHint(baseSeed, FILE)}`);
        throw e;
      }
    });
  }

  for (const name of ['kv-skip-drain', 'kv-skip-checksum'] as SwitchName[]) {
    it(`goes red with DAXSTORE_TEST_BREAK=${name}`, () => {
      setBroken(name, true);
      try {
        expect(() => runMode('sync', baseSeed, 150)).toThrow();
      } finally {
        setBroken(name, false);
      }
    });
  }
});
