/**
 * The merge of a checkpoint's winners with the tail's (addon/kv-recovery.cc RunMerge, through
 * native().mergeKvColumns): seeded random column sets over entry headers in a plain buffer,
 * merged (the tail's sequences read from its entries, or handed over as the pick gives them) and
 * the tape decoded, against a plain model of the rules (recovery-native.ts
 * mergeColumns): a key only in the checkpoint is taken; a tail entry of a sequence above the
 * checkpoint's wins; else the pick's order (sequence, intact before LOST, lowest offset); a
 * winning DEL removes the key; with dropStale a tail entry of a covered sequence is left out
 * whether the checkpoint has its key or not. Runs of the checkpoint's keys between two tail keys
 * range from none to the whole set (the gallop's doubling and bisection), tails from empty to
 * larger than the checkpoint. Not covered here: entries read from a real log (kv-checkpoint*.test.ts
 * compare whole reopens with full scans).
 */
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native/addon.js';
import { ENTRY_FLAG_LOST } from '../../src/kv/layout.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-checkpoint-merge.test.ts';
const ENTRY_BYTES = 24;
const LOST = ENTRY_FLAG_LOST;

interface Side {
  keys: string[];
  values: number[]; // entry offsets; a tail DEL as -(offset + 1)
}

function columns(side: Side): { values: Float64Array; starts: Uint32Array; lengths: Uint16Array; keys: Uint8Array } {
  const bytes = side.keys.map((k) => Buffer.from(k, 'latin1'));
  const keys = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  const starts = new Uint32Array(bytes.length);
  const lengths = new Uint16Array(bytes.length);
  let at = 0;
  bytes.forEach((b, i) => {
    keys.set(b, at);
    starts[i] = at;
    lengths[i] = b.length;
    at += b.length;
  });
  return { values: Float64Array.from(side.values), starts, lengths, keys };
}

/** One random case: the media of entry headers, both sides, the covered sequence. */
function randomCase(r: () => number) {
  const universe = 1 + Math.floor(r() * (r() < 0.3 ? 20 : 2000));
  const names = [...new Set(Array.from({ length: universe }, () => Math.floor(r() * 1e9).toString(36)))].sort((x, y) =>
    Buffer.compare(Buffer.from(x, 'latin1'), Buffer.from(y, 'latin1')),
  );
  const inA = r();
  const inB = r() < 0.2 ? r() * 0.02 : r();
  const media = new Uint8Array((2 * names.length + 1) * ENTRY_BYTES);
  const dv = new DataView(media.buffer);
  let next = ENTRY_BYTES; // offset 0 unused
  const covered = 1000;
  const entry = (sequence: number, lost: boolean): number => {
    const at = next;
    next += ENTRY_BYTES;
    dv.setUint32(at, (lost ? LOST : 0) << 24, true);
    dv.setBigUint64(at + 8, BigInt(sequence), true);
    return at;
  };
  const a: Side = { keys: [], values: [] };
  const b: Side = { keys: [], values: [] };
  for (const k of names) {
    const hasA = r() < inA;
    const hasB = r() < inB || !hasA;
    // sequences around the covered one, ties included, so every rule is reached
    if (hasA) {
      a.keys.push(k);
      a.values.push(entry(900 + Math.floor(r() * 100), r() < 0.1));
    }
    if (hasB) {
      const at = entry(r() < 0.5 ? 1001 + Math.floor(r() * 50) : 950 + Math.floor(r() * 50), r() < 0.1);
      b.keys.push(k);
      b.values.push(r() < 0.2 ? -(at + 1) : at);
    }
  }
  return { media, a, b, covered };
}

/** What the merge must take, in key order: ['a', i] or ['b', j]. */
function model(media: Uint8Array, a: Side, b: Side, covered: number, dropStale: boolean): string[] {
  const dv = new DataView(media.buffer);
  const seq = (at: number): number => Number(dv.getBigUint64(at + 8, true));
  const lost = (at: number): boolean => ((dv.getUint32(at, true) >>> 24) & LOST) !== 0;
  const out: string[] = [];
  const inA = new Map(a.keys.map((k, i) => [k, i]));
  const inB = new Map(b.keys.map((k, j) => [k, j]));
  const all = [...new Set([...a.keys, ...b.keys])].sort((x, y) =>
    Buffer.compare(Buffer.from(x, 'latin1'), Buffer.from(y, 'latin1')),
  );
  for (const k of all) {
    const i = inA.get(k);
    const j = inB.get(k);
    if (j === undefined) {
      out.push(`a${i}`);
      continue;
    }
    const v = b.values[j];
    const del = v < 0;
    const tb = del ? -v - 1 : v;
    if (dropStale && seq(tb) <= covered) {
      if (i !== undefined) out.push(`a${i}`);
      continue;
    }
    let tail = true;
    if (i !== undefined) {
      const ta = a.values[i];
      const sa = seq(ta);
      const sb = seq(tb);
      tail = sb > covered || (sa !== sb ? sb > sa : lost(ta) !== lost(tb) ? lost(ta) : tb < ta);
      if (!tail) out.push(`a${i}`);
    }
    if (tail && !del) out.push(`b${j}`);
  }
  return out;
}

/** The entries the tape takes, in order. */
function taken(tape: Uint32Array): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  for (const w of tape) {
    const op = w >>> 30;
    const run = w & (2 ** 30 - 1);
    for (let n = 0; n < run; n++) {
      if (op === 0) out.push(`a${i}`);
      if (op <= 1) i++;
      else {
        if (op === 2) out.push(`b${j}`);
        j++;
      }
    }
  }
  return out;
}

describe('checkpoint merge', () => {
  it('takes what the rules pick, with and without the stale-entry rule (seeded column sets)', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      for (let t = 0; t < scaled(300); t++) {
        const { media, a, b, covered } = randomCase(r);
        const ca = columns(a);
        const cb = columns(b);
        // the tail's sequences as the pick hands them over (read from its entries), or none: the merge reads them
        const dv = new DataView(media.buffer);
        const sequences = BigUint64Array.from(b.values, (v) => dv.getBigUint64((v < 0 ? -v - 1 : v) + 8, true));
        for (const [dropStale, bSequences] of [
          [true, undefined],
          [false, undefined],
          [true, sequences],
          [false, sequences],
        ] as const) {
          const tape = new Uint32Array(3 * b.keys.length + 1);
          const counts = new Float64Array(4);
          const n = native().mergeKvColumns(
            media,
            a.keys.length,
            ca.values,
            ca.starts,
            ca.lengths,
            ca.keys,
            b.keys.length,
            cb.values,
            cb.starts,
            cb.lengths,
            cb.keys,
            covered,
            tape,
            counts,
            dropStale,
            bSequences,
          );
          const want = model(media, a, b, covered, dropStale);
          const name = `case ${t}, dropStale ${dropStale}, sequences ${bSequences === undefined ? 'read' : 'given'}`;
          expect(n, name).toBe(want.length);
          expect(taken(tape.subarray(0, counts[3])), name).toEqual(want);
        }
      }
    });
  });
});
