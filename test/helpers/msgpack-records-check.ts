/**
 * The record reader (src/kv/msgpack-records.ts) against msgpackr itself: fast-check values
 * (records of a few shapes, shared as a store shares them, holding numbers of every msgpack
 * width, floats, -0, NaN, strings ASCII and not, short and long, arrays, nested records, and
 * the types the reader leaves to msgpackr: maps, binaries, dates, bigints, undefined) are packed
 * by a msgpackr Packr with shared structures and read back both ways from a private copy. Every
 * value the reader takes must equal msgpackr's result (same keys in the same order, same
 * prototypes, numbers by Object.is); `fast` counts the values it took, so a caller can check it
 * took most of them. Used in-process by test/kv/msgpack-records.test.ts and, with a break
 * switch set, by test/workers/msgpack-records-check.ts.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { NOT_RECORDS, readRecordValue, type Structures } from '../../src/kv/msgpack-records.js';

export interface RecordsCheck {
  values: number;
  fast: number;
  mismatches: string[];
}

const SHAPES: readonly (readonly string[])[] = [
  ['id', 'name', 'email', 'age', 'active', 'tags', 'score'],
  ['a', 'b'],
  ['x'],
  ['__proto__', 'y'],
  ['1', '20', 'z'],
  ['key with space', 'a-b', 'if'],
  ['__proto_', '__proto__'],
];

/** A plain object with `keys` in order (own properties even for '__proto__'). */
function record(keys: readonly string[], values: readonly unknown[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  keys.forEach((k, i) =>
    Object.defineProperty(o, k, { value: values[i], enumerable: true, writable: true, configurable: true }),
  );
  return o;
}

const leaf: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: -40, max: 300 }),
  fc.integer(),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  fc.maxSafeInteger(),
  fc.double(),
  fc.constantFrom(-0, 0, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 31) - 1),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('a', '~', ' ', '\u007f', '\u0000', '\u0080', 'é', '\ud800', '😀'), maxLength: 70 }),
  fc.string({ minLength: 40, maxLength: 300 }),
  fc.constant(undefined),
  fc.bigInt(),
  fc.date({ noInvalidDate: true }),
  fc.uint8Array({ maxLength: 8 }),
  fc.constant(new Map([['k', 1]])),
);

const value: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('v'), { maxLength: 5 }),
    fc
      .integer({ min: 0, max: SHAPES.length - 1 })
      .chain((s) =>
        fc
          .array(tie('v'), { minLength: SHAPES[s].length, maxLength: SHAPES[s].length })
          .map((vs) => record(SHAPES[s], vs)),
      ),
  ),
})).v;

/** Deep equality that also compares key order, prototypes and numbers by Object.is. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (typeof a !== typeof b) return false;
  if (typeof a !== 'object' || a === null || b === null) return Object.is(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const ka = Reflect.ownKeys(a);
  const kb = Reflect.ownKeys(b as object);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] !== kb[i]) return false;
    if (!sameValue((a as Record<PropertyKey, unknown>)[ka[i]], (b as Record<PropertyKey, unknown>)[kb[i]]))
      return false;
  }
  return true;
}

/** A Packr as a store's MsgpackCodec sets one up: shared structures, always saved. */
export function sharedPackr(): Packr {
  return new Packr({
    structures: [],
    moreTypes: true,
    copyBuffers: true,
    maxSharedStructures: 32,
    saveStructures: () => true,
  });
}

/** Reads `bytes` both ways; undefined when they agree (or the reader left the value to msgpackr). */
export function compareOne(packr: Packr, bytes: Uint8Array, at = 0): { fast: boolean; mismatch?: string } {
  const copy = Buffer.alloc(at + bytes.length + 8);
  copy.set(bytes, at);
  const structures = (packr as unknown as { structures: Structures }).structures;
  const ours = readRecordValue(copy, at, bytes.length, structures);
  let theirs: unknown;
  try {
    theirs = packr.unpack(copy, { start: at, end: at + bytes.length });
  } catch (e) {
    if (ours === NOT_RECORDS) return { fast: false };
    return { fast: true, mismatch: `msgpackr throws (${String(e)}), the reader gave a value` };
  }
  if (ours === NOT_RECORDS) return { fast: false };
  if (!sameValue(ours, theirs))
    return {
      fast: true,
      mismatch: `bytes ${Buffer.from(bytes).toString('hex')}: reader ${describe(ours)}, msgpackr ${describe(theirs)}`,
    };
  return { fast: true };
}

function describe(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
  } catch {
    return String(v);
  }
}

/** `runs` fast-check values packed and read back both ways (at varying offsets of the copy). */
export function checkRecordsAgainstMsgpackr(seed: number, runs: number): RecordsCheck {
  const packr = sharedPackr();
  const out: RecordsCheck = { values: 0, fast: 0, mismatches: [] };
  fc.assert(
    fc.property(value, fc.integer({ min: 0, max: 200 }), (v, at) => {
      if (v === undefined) return;
      const bytes = Uint8Array.from(packr.pack(v));
      out.values++;
      const r = compareOne(packr, bytes, at);
      if (r.fast) out.fast++;
      if (r.mismatch !== undefined && out.mismatches.length < 5) out.mismatches.push(r.mismatch);
    }),
    { seed, numRuns: runs },
  );
  return out;
}
