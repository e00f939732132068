/**
 * Damage to a durable record is never a silent rollback. The store: put(doomed), put(a, old),
 * put(z, MARKER), put(a, new), delete(doomed), closed; then one seeded bit of the record of z
 * flips (in its value, its key, its header: anywhere), durably. Reopened:
 *   - strict (default): either the flip was corrected exactly (in the directory, the padding,
 *     a check word: recovery-damage.ts) and everything reads as written, or open refuses with
 *     ECORRUPT naming z; it never serves a = old or doomed;
 *   - salvage: a = new, doomed absent, z throws EIO (or reads MARKER when corrected), the
 *     report names z, and a strict reopen afterwards opens and serves the same.
 * The close writes an index checkpoint ({ checkpoint: true }) that covers z's record: every strict open here checks
 * the records a checkpoint covers and scans the whole log when one fails.
 * Red with kv-no-resync (the first bad record ends its segment as a torn tail: a = old, doomed
 * back, opened without a word), with kv-no-watermark (every bad region taken for a torn
 * tail) and with kv-checkpoint-trust-covered (the checkpoint loaded over the damage: z read
 * flipped, opened without a word).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import type { KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { setBroken, type SwitchName } from '../../src/test-break.js';
import { KvDamageError } from '../../src/kv/recovery.js';
import { daxCodeOf } from '../helpers/expect-code.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-damage-rollback.test.ts';
const td = new TextDecoder();

/** The closed store of the repro, and the device offsets of z's record [start, end). */
function build(): { media: SimMedia; record: [number, number] } {
  const media = createSimMedia(16 * 2 ** 20); // room for the index checkpoint the close writes
  const db = openMedia(media, { checkpoint: true });
  db.put('doomed', 'x');
  db.put('a', 'old');
  db.put('z', 'MARKER');
  db.put('a', 'new');
  db.delete('doomed');
  const entry = db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('z')))!;
  db.close();
  return { media, record: [entry - 32, entry + 32] }; // header, entry header (24), "z", "MARKER", padding
}

function flip(media: SimMedia, at: number, bit: number): SimMedia {
  const image = media.crashImage({ mode: 'none' });
  new Uint8Array(image.buffer)[at] ^= 1 << bit;
  image.persist(at, 1);
  return image;
}

const read = (db: KvStore, key: string): string | undefined => {
  const code = daxCodeOf(() => db.get(key));
  if (code !== undefined) return code;
  const v = db.get(key);
  return v === undefined ? undefined : td.decode(v);
};

/** One trial on the store `built`: returns what went wrong, or undefined. */
function trial(built: { media: SimMedia; record: [number, number] }, r: () => number): string | undefined {
  const { media, record } = built;
  const at = record[0] + Math.floor(r() * (record[1] - record[0]));
  const image = flip(media, at, Math.floor(r() * 8));
  let strictOk = false;
  try {
    const db = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    try {
      // Opened: only an exact correction may explain it.
      if (db.recovery!.corrected.length === 0) return `byte ${at}: opened strict with nothing corrected`;
      const got = [read(db, 'a'), read(db, 'doomed'), read(db, 'z')];
      if (got.join() !== 'new,,MARKER') return `byte ${at}: corrected store reads ${got.join()}`;
      strictOk = true;
    } finally {
      db.close();
    }
  } catch (e) {
    if (!(e instanceof KvDamageError) || e.code !== 'ECORRUPT') throw e;
    if (!/"z"/.test(e.message) && e.report.unknownSequences.length === 0)
      return `byte ${at}: refusal does not name z: ${e.message}`;
  }
  const db = openMedia(image, { formatIfEmpty: false, recovery: 'salvage' });
  const salvaged = [read(db, 'a'), read(db, 'doomed'), read(db, 'z')].join();
  const lost = db.recovery!.lostKeys.map((k) => td.decode(k.key));
  db.close();
  if (strictOk)
    return salvaged === 'new,,MARKER' ? undefined : `byte ${at}: salvage of a corrected store reads ${salvaged}`;
  if (salvaged !== 'new,,EIO' || lost.join() !== 'z') return `byte ${at}: salvage reads ${salvaged}, lost [${lost}]`;
  const again = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
  const after = [read(again, 'a'), read(again, 'doomed'), read(again, 'z')].join();
  again.close();
  return after === 'new,,EIO' ? undefined : `byte ${at}: strict reopen after salvage reads ${after}`;
}

describe('damage to a durable record', () => {
  it('is refused (strict) or salvaged, never served as a rollback: seeded flips anywhere in the record', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const built = build();
      const problems: string[] = [];
      for (let i = 0; i < scaled(40); i++) {
        const p = trial(built, r);
        if (p !== undefined) problems.push(p);
      }
      expect(problems).toEqual([]);
    });
  }, 240_000); // three opens a trial: minutes on a loaded machine

  it('a flip inside MARKER (the value): strict refuses naming z, salvage keeps a = new and doomed deleted', () => {
    const { media, record } = build();
    const image = flip(media, record[1] - 8 + 2, 4); // the second byte of "MARKER" (entry + 26)
    try {
      openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
      expect.unreachable('strict open served a damaged store');
    } catch (e) {
      expect(e).toBeInstanceOf(KvDamageError);
      expect((e as KvDamageError).code).toBe('ECORRUPT');
      expect((e as KvDamageError).message).toMatch(/keys whose newest version is lost: "z"/);
    }
    const db = openMedia(image, { formatIfEmpty: false, recovery: 'salvage' });
    expect([read(db, 'a'), read(db, 'doomed'), read(db, 'z')]).toEqual(['new', undefined, 'EIO']);
    expect(db.recovery!.salvaged).toMatchObject({ lostMarkers: 1, padded: 1 });
    db.put('z', 'rewritten');
    expect(read(db, 'z')).toBe('rewritten');
    db.close();
  });

  it('the closed store carries an index checkpoint: an undamaged reopen loads it, a damaged one scans whole', () => {
    const { media, record } = build();
    const clean = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expect(clean.recovery!.checkpoint?.loaded).toBeDefined();
    expect([read(clean, 'a'), read(clean, 'doomed'), read(clean, 'z')]).toEqual(['new', undefined, 'MARKER']);
    clean.close();
    const image = flip(media, record[1] - 8 + 2, 4);
    try {
      openMedia(image, { formatIfEmpty: false });
      expect.unreachable('strict open served a damaged store');
    } catch (e) {
      expect(e).toBeInstanceOf(KvDamageError);
      const use = (e as KvDamageError).report.checkpoint!;
      expect(use.loaded).toBeUndefined();
      expect(use.ignored.join()).toMatch(
        /the segment at block \d+ it covers does not hash to what it stores.*; scanned whole/,
      );
    }
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-trust-covered: the checkpoint is trusted, z served flipped', () => {
    const { media, record } = build();
    const image = flip(media, record[1] - 8 + 2, 4);
    setBroken('kv-checkpoint-trust-covered', true);
    try {
      const db = openMedia(image, { formatIfEmpty: false });
      expect(db.recovery!.checkpoint?.loaded).toBeDefined();
      expect(db.recovery!.damage).toEqual([]);
      expect(read(db, 'z')).not.toBe('MARKER');
      db.close();
    } finally {
      setBroken('kv-checkpoint-trust-covered', false);
    }
  });

  for (const name of ['kv-no-resync', 'kv-no-watermark'] as SwitchName[]) {
    it(`goes red with DAXSTORE_TEST_BREAK=${name}: the damage is taken for a torn tail, a = old and doomed come back silently`, () => {
      const { media, record } = build();
      const image = flip(media, record[1] - 8 + 2, 4);
      setBroken(name, true);
      try {
        const db = openMedia(image, { formatIfEmpty: false });
        expect([read(db, 'a'), read(db, 'doomed'), read(db, 'z')]).toEqual(['old', 'x', undefined]);
        expect(db.recovery!.damage).toEqual([]);
        db.close();
      } finally {
        setBroken(name, false);
      }
    });
  }
});
