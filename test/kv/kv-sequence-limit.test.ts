/**
 * Sequences cross from the Int32 counter to the BigInt one (store.ts SEQ_COUNT) without going
 * back: the puts around the crossing get consecutive sequences, the Int32 word never passes
 * its limit, and recovery keeps the newest value (a crossing that restarted lower would make
 * it pick an older put). The counter is moved next to its limit through the shared buffer
 * (2^30 real puts would take minutes).
 */
import { expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { SEQ_COUNT, SEQ_INT_LIMIT } from '../../src/kv/store.js';

const td = new TextDecoder();

it('sequences stay increasing across the Int32 limit, and recovery keeps the newest value', () => {
  const media = createSimMedia(8 * 2 ** 20);
  const db = openMedia(media, { durability: 'sync' });
  db.put('a', '0');
  const base = db.stats().sequence;
  const word = new Int32Array(db.share().shared);
  Atomics.store(word, SEQ_COUNT, SEQ_INT_LIMIT - 2);
  const seen: number[] = [];
  for (let i = 1; i <= 5; i++) {
    db.put('a', String(i));
    db.put(`k${i}`, String(i));
    seen.push(db.stats().sequence);
  }
  // Sequences (base - 1) + (LIMIT - 2) + 2, + 4, ...: the crossing neither repeats nor skips back.
  const first = base - 1 + SEQ_INT_LIMIT;
  expect(seen).toEqual([first, first + 2, first + 4, first + 6, first + 8]);
  expect(Atomics.load(word, SEQ_COUNT)).toBe(SEQ_INT_LIMIT);
  db.close();
  const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
  expect(td.decode(again.get('a')!)).toBe('5');
  expect(again.stats().sequence).toBe(first + 8);
  // The reopened store starts a fresh Int32 count above the recovered maximum.
  again.put('a', '6');
  expect(again.stats().sequence).toBe(first + 9);
  again.close();
});
