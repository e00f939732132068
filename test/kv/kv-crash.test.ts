/**
 * Crash test on the simulated device, per durability mode. At fences during a random
 * single-thread workload (puts, deletes, batches, transactions, deleteRange, flushed()), crash
 * images (durable image + a random subset of pending 8-byte words) are recovered and must
 * equal the model state after some prefix of the operations:
 *   - 'sync': every acknowledged operation (prefix >= operations completed before the fence);
 *   - 'group': at least everything before the last flushed();  'none': anything from the open.
 * Equality of whole states also proves no batch or transaction is half-applied (red with
 * kv-txn-record-per-write) and no value torn, and that an aborted transaction wrote nothing; the
 * device audit proves no block leaked or was double-owned. Not covered: several threads
 * (kv-workers), poisoned media, real power loss.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { type Durability, type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { setBroken, type SwitchName } from '../../src/test-break.js';
import { replayHint, rng, scaled, testSeed } from '../helpers/seed.js';

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
  /**
   * A transaction of 2 to 5 steps: copy (read a key, its own writes included, and write what it
   * read to another, deleting it when the source is absent), put or delete; one in five throws
   * at its end and must write nothing. Every draw is made before the callback runs.
   */
  const transaction = (db: KvStore, model: Map<string, string>): void => {
    type Step =
      { kind: 'copy'; from: Uint8Array; to: Uint8Array } | { kind: 'put' | 'del'; key: Uint8Array; value: Uint8Array };
    const steps: Step[] = Array.from({ length: 2 + Math.floor(rand() * 4) }, () => {
      const s = rand();
      if (s < 0.4) return { kind: 'copy', from: key(), to: key() };
      return { kind: s < 0.8 ? 'put' : 'del', key: key(), value: value() };
    });
    const abort = rand() < 0.2;
    const after = new Map(model);
    for (const st of steps)
      if (st.kind === 'copy') {
        const v = after.get(hex(st.from));
        if (v === undefined) after.delete(hex(st.to));
        else after.set(hex(st.to), v);
      } else if (st.kind === 'put') after.set(hex(st.key), hex(st.value));
      else after.delete(hex(st.key));
    try {
      db.transactionSync((txn) => {
        for (const st of steps)
          if (st.kind === 'copy') {
            const v = txn.get(st.from);
            if (v === undefined) txn.delete(st.to);
            else txn.put(st.to, v);
          } else if (st.kind === 'put') txn.put(st.key, st.value);
          else txn.delete(st.key);
        if (abort) throw new Error('aborted by the test');
      });
    } catch (e) {
      if (!abort) throw e;
      return;
    }
    model.clear();
    for (const [k, v] of after) model.set(k, v);
  };
  try {
    for (let i = 0; i < ops; i++) {
      const r = rand();
      if (r < 0.38) {
        const k = key(),
          v = value();
        db.put(k, v);
        model.set(hex(k), hex(v));
      } else if (r < 0.5) {
        transaction(db, model);
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
        const { images } = runMode(durability, baseSeed, scaled(ops));
        expect(images).toBeGreaterThan(durability === 'sync' ? 500 : 100);
      } catch (e) {
        console.error(`kv crash (${durability}) failed with ${replayHint(baseSeed, FILE)}`);
        throw e;
      }
    });
  }

  for (const name of ['kv-skip-drain', 'kv-skip-checksum', 'kv-txn-record-per-write'] as SwitchName[]) {
    it(`goes red with DAXSTORE_TEST_BREAK=${name}`, () => {
      setBroken(name, true);
      try {
        expect(() => runMode('sync', baseSeed, 150)).toThrow(/no allowed prefix/);
      } finally {
        setBroken(name, false);
      }
    });
  }
});
