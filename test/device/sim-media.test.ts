import { describe, expect, it } from 'vitest';
import { createSimMedia, attachSimMedia } from '../../src/device/sim-media.js';
import { isDaxError } from '../../src/errors.js';

const KiB = 1024;

function words(media: { buffer: SharedArrayBuffer }): BigUint64Array {
  return new BigUint64Array(media.buffer);
}

function durableWord(media: ReturnType<typeof createSimMedia>, index: number): bigint {
  return new BigUint64Array(media.durableBytes().buffer, 0, media.size / 8)[index];
}

describe('SimMedia persistence model', () => {
  it('a store made after flush but before drain is not made durable by that drain', () => {
    const m = createSimMedia(64 * KiB);
    const w = words(m);
    w[0] = 1n;
    m.flush(0, 8);
    w[0] = 2n; // after the flush: the snapshot holds 1
    m.drain();
    expect(durableWord(m, 0)).toBe(1n);
    expect([...m.pendingWords()]).toEqual([0]);
    m.persist(0, 8);
    expect(durableWord(m, 0)).toBe(2n);
    expect(m.pendingWords().length).toBe(0);
  });

  it('drain without flush makes nothing durable; flush covers whole 64-byte lines only', () => {
    const m = createSimMedia(64 * KiB);
    const w = words(m);
    w[3] = 7n; // line 0
    w[8] = 9n; // line 1
    m.drain();
    expect(durableWord(m, 3)).toBe(0n);
    m.persist(0, 1); // one byte of line 0 flushes the whole line
    expect(durableWord(m, 3)).toBe(7n);
    expect(durableWord(m, 8)).toBe(0n);
    expect([...m.pendingWords()]).toEqual([8]);
  });

  it('pendingWords lists exactly the words where working and durable differ', () => {
    const m = createSimMedia(256 * KiB);
    const w = words(m);
    const touched = [0, 1, 511, 512, 4096, 32767];
    for (const i of touched) w[i] = BigInt(i + 1);
    expect([...m.pendingWords()]).toEqual(touched);
    w[4096] = 0n; // back to the durable value: no longer pending
    expect([...m.pendingWords()]).toEqual([0, 1, 511, 512, 32767]);
  });
});

describe('SimMedia crash images', () => {
  it("'none' is the durable image, 'all' the working image, { words } exactly the listed words", () => {
    const m = createSimMedia(64 * KiB);
    const w = words(m);
    w[1] = 11n;
    m.persist(8, 8);
    w[2] = 22n;
    w[100] = 33n;
    const none = m.crashImage({ mode: 'none' });
    const all = m.crashImage({ mode: 'all' });
    const some = m.crashImage({ words: [100] });
    expect([words(none)[1], words(none)[2], words(none)[100]]).toEqual([11n, 0n, 0n]);
    expect([words(all)[1], words(all)[2], words(all)[100]]).toEqual([11n, 22n, 33n]);
    expect([words(some)[1], words(some)[2], words(some)[100]]).toEqual([11n, 0n, 33n]);
    for (const image of [none, all, some]) {
      expect(image.pendingWords().length).toBe(0); // working = durable in an image
      expect(image.durableBytes()).toEqual(new Uint8Array(image.buffer));
    }
  });

  it('a crash image is independent of its source', () => {
    const m = createSimMedia(64 * KiB);
    words(m)[5] = 5n;
    const image = m.crashImage({ mode: 'all' });
    words(image)[5] = 6n;
    words(m)[6] = 7n;
    expect(words(m)[5]).toBe(5n);
    expect(words(image)[6]).toBe(0n);
  });

  it("'random' keeps a seeded subset of the pending words, reproducibly", () => {
    const m = createSimMedia(64 * KiB);
    const w = words(m);
    for (let i = 0; i < 1000; i++) w[i * 2] = BigInt(i + 1);
    const pick = (seed: number) => [...m.crashImage({ mode: 'random', seed }).pendingWords()].length;
    const kept = (seed: number) => {
      const image = words(m.crashImage({ mode: 'random', seed }));
      return Array.from({ length: 1000 }, (_, i) => image[i * 2] !== 0n);
    };
    expect(kept(42)).toEqual(kept(42));
    expect(kept(42)).not.toEqual(kept(43));
    const count = kept(42).filter(Boolean).length;
    expect(count).toBeGreaterThan(400);
    expect(count).toBeLessThan(600);
    expect(pick(1)).toBe(0);
    const allKept = words(m.crashImage({ mode: 'random', seed: 1, probability: 1 }));
    expect(allKept[1998]).toBe(1000n);
  });

  it('crash images of a 4 MiB device are cheap (reported, not asserted)', () => {
    const m = createSimMedia(4096 * KiB);
    const w = words(m);
    for (let i = 0; i < 20000; i++) w[(i * 97) % w.length] = BigInt(i + 1);
    m.persist(0, m.size / 2);
    const images = 300;
    const start = performance.now();
    for (let i = 0; i < images; i++) m.crashImage({ mode: 'random', seed: i }).dispose();
    const msPerImage = (performance.now() - start) / images;
    console.log(
      `crash image, 4 MiB sim device, ~${m.pendingWords().length} pending words, random subset, recycled: ${msPerImage.toFixed(2)} ms/image`,
    );
    expect(msPerImage).toBeGreaterThan(0);
  });
});

describe('SimMedia hooks, faults and sharing', () => {
  it('fence hooks run at the start of each drain, before anything becomes durable', () => {
    const m = createSimMedia(64 * KiB);
    const seen: bigint[] = [];
    const off = m.onFence(() => seen.push(durableWord(m, 0)));
    const before = m.fenceCount;
    words(m)[0] = 1n;
    m.persist(0, 8);
    words(m)[0] = 2n;
    m.persist(0, 8);
    off();
    m.persist(0, 8);
    expect(seen).toEqual([0n, 1n]);
    expect(m.fenceCount - before).toBe(3);
  });

  it('an injected persist EIO fails the n-th drain, makes nothing durable and leaves the words pending', () => {
    const m = createSimMedia(64 * KiB);
    const w = words(m);
    m.injectFault({ persistEio: 2 });
    w[0] = 1n;
    m.persist(0, 8); // 1st: fine
    w[1] = 2n;
    let error: unknown;
    try {
      m.persist(8, 8); // 2nd: fails
    } catch (e) {
      error = e;
    }
    expect(isDaxError(error, 'EIO')).toBe(true);
    expect(durableWord(m, 1)).toBe(0n);
    expect([...m.pendingWords()]).toEqual([1]);
    m.drain(); // marks were dropped: a later drain alone does not persist it
    expect(durableWord(m, 1)).toBe(0n);
    m.persist(8, 8); // flush again: durable, and the fault fired only once
    expect(durableWord(m, 1)).toBe(2n);
  });

  it('copyOut of a poisoned page throws EIO naming the offset; other pages read fine', () => {
    const m = createSimMedia(64 * KiB);
    new Uint8Array(m.buffer).fill(9, 0, 16 * KiB);
    m.injectPoison(8 * KiB + 100, 1);
    const dest = new Uint8Array(8 * KiB);
    expect(() => m.copyOut(4 * KiB, 8 * KiB, dest)).toThrow(/EIO.*offset 8192/);
    m.copyOut(0, 8 * KiB, dest);
    expect(dest.every((b) => b === 9)).toBe(true);
    m.clearPoison(8 * KiB, 4 * KiB);
    m.copyOut(8 * KiB, 4 * KiB, dest);
  });

  it('attachSimMedia(share()) sees the same working image, marks, durable image and fence count', () => {
    const m = createSimMedia(64 * KiB);
    const other = attachSimMedia(m.share());
    words(other)[0] = 3n;
    other.flush(0, 8);
    m.drain(); // drains the attached media's marks too (same shared marks)
    expect(durableWord(m, 0)).toBe(3n);
    expect(other.fenceCount).toBe(m.fenceCount);
  });

  it('bad arguments are typed errors', () => {
    const m = createSimMedia(64 * KiB);
    expect(() => createSimMedia(1000)).toThrow(/EINVAL/);
    expect(() => m.flush(64 * KiB - 4, 8)).toThrow(/ERANGE/);
    expect(() => m.flush(-1, 8)).toThrow(/EINVAL/);
    expect(() => m.crashImage({ words: [8192] })).toThrow(/ERANGE/);
    expect(() => m.copyOut(0, 16, new Uint8Array(8))).toThrow(/EINVAL/);
    m.close();
    expect(() => m.persist(0, 8)).toThrow(/ECLOSED/);
  });
});
