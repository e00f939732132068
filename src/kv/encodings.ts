/**
 * Key and value encodings of the key-value store: how a JS key or value becomes the bytes of
 * a record, and back. Each thread has its own encoder state (msgpackr's and ordered-binary's are
 * per module instance, and module instances are per thread); the one state shared between
 * threads is a msgpack store's shared structures, kept in the store (structures.ts).
 *
 * Keys ('binary' | 'utf8' | 'ordered'):
 *   binary   Uint8Array (or a string, as its UTF-8) -> the bytes; read back as Uint8Array
 *   utf8     string -> its UTF-8; read back as string
 *   ordered  ordered-binary (lmdb-js's key encoding): strings, numbers, booleans, null and
 *            arrays of strings, numbers and booleans (compound keys; null is not a part: its
 *            byte is the separator), each sorting in its natural order: numbers
 *            numerically (-Infinity .. Infinity, -0 is 0, NaN refused), strings by code
 *            point, arrays element by element, and across types null < false < true <
 *            numbers < strings. Read back as the same value.
 * Values ('binary' | 'utf8' | 'json' | 'msgpack'):
 *   binary   Uint8Array or string (UTF-8) -> the bytes; read back as Uint8Array (own ArrayBuffer)
 *   utf8     string; json: JSON.stringify / JSON.parse; msgpack: msgpackr (lmdb-js's
 *            default), any structured value (objects, arrays, Map, Set, Date, typed arrays,
 *            bigint, Error ...). Plain objects are msgpackr records: the key lists of up to
 *            MAX_SHARED_STRUCTURES shapes are kept in the store (structures.ts, MsgpackCodec),
 *            other shapes inside the value. undefined is refused as a value: get() of a
 *            missing key is undefined.
 *
 * Decoding never writes to the mapping and never returns a view of it: ordered keys and
 * msgpack values are decoded from a private copy (ordered-binary's readKey writes a terminator
 * byte into its source; msgpackr's native string extraction refuses a SharedArrayBuffer), and
 * msgpackr copies embedded binaries (copyBuffers); utf8 and json decode from the mapping, and
 * so do ordered keys of ASCII strings and numbers (readSimpleOrderedKey, which writes nothing).
 * msgpack values go to the record reader first (msgpack-records.ts), which reads the usual
 * records itself and leaves every other value to msgpackr.
 *
 * Ordered keys: a one-part array is the same key as its part (['a'] is stored, and read
 * back, as 'a'), and the empty array is the empty key.
 *
 * msgpackr keeps ONE output buffer per module instance (module-level state shared by every
 * Packr, in this thread, ours and any other code's, lmdb-js included). packIntoStage points
 * it at the record stage (the value lands where the record wants it: no copy), and every
 * use of ours ends by parking it on a full private buffer: the next pack anywhere starts a
 * fresh buffer, so nobody else's earlier results (subarrays of their buffer) are ever
 * overwritten and nobody else ever writes into the stage.
 */
import { Packr, Unpackr, RESERVE_START_SPACE } from 'msgpackr';
import { writeKey, readKey } from 'ordered-binary';
import { DaxError } from '../errors.js';
import { describeValue } from '../options.js';
import { MAX_KEY_BYTES } from './layout.js';
import { stageViews } from './record-stage.js';
import { INLINE_STRING_MAX, NOT_RECORDS, type Structures, asciiString, readRecordValue } from './msgpack-records.js';
import { payloadBytes, STRUCTURES_PAYLOAD_BYTES, type SharedStructures } from './structures.js';

export type KeyEncoding = 'binary' | 'utf8' | 'ordered';
export type ValueEncoding = 'binary' | 'utf8' | 'json' | 'msgpack';
export const KEY_ENCODINGS: readonly KeyEncoding[] = ['binary', 'utf8', 'ordered'];
export const VALUE_ENCODINGS: readonly ValueEncoding[] = ['binary', 'utf8', 'json', 'msgpack'];
/** What a new store uses when open() names no encoding (lmdb-js's defaults). */
export const DEFAULT_KEY_ENCODING: KeyEncoding = 'ordered';
export const DEFAULT_VALUE_ENCODING: ValueEncoding = 'msgpack';

/** One part of a compound ordered key. */
export type OrderedKeyPart = string | number | boolean;
/** A key of keyEncoding 'ordered': a part or null, or an array of parts (a compound key). */
export type OrderedKey = OrderedKeyPart | null | OrderedKeyPart[];
/** The key type a key encoding reads back. */
export type KeyOf<E extends KeyEncoding> = E extends 'binary'
  ? Uint8Array<ArrayBuffer>
  : E extends 'utf8'
    ? string
    : OrderedKey;
/** The value type a value encoding reads back (json and msgpack: whatever was stored). */
export type ValueOf<E extends ValueEncoding> = E extends 'binary'
  ? Uint8Array<ArrayBuffer>
  : E extends 'utf8'
    ? string
    : // eslint-disable-next-line @typescript-eslint/no-explicit-any
      any;
/** What put() takes for a key read back as K: bytes also as a string (its UTF-8). */
export type KeyInput<K> = K extends Uint8Array ? Uint8Array | string : K;
/** What put() takes for a value read back as V: bytes also as a string (its UTF-8). */
export type ValueInput<V> = V extends Uint8Array ? Uint8Array | string : V;

// ---- keys ------------------------------------------------------------------------------

/**
 * Writes the ordered-binary bytes of `key` at scratch[1..] and returns their count (EINVAL for
 * a key of another type or longer than MAX_KEY_BYTES). `scratch` has room for
 * ORDERED_SCRATCH_BYTES: ordered-binary writes up to 4 bytes past a number's end, and a
 * compound key may run past MAX_KEY_BYTES before its length is known. Numbers and short ASCII
 * strings are written here (writeNumber, writeAsciiString: every get and put encodes its key,
 * and writeKey adds its own dispatch, a DataView and a call per part; docs/PERFORMANCE.md);
 * anything else goes through ordered-binary's writeKey. The bytes are the same either way
 * (test/kv/kv-encodings.test.ts compares them with writeKey's).
 */
export function writeOrderedKey(scratch: Uint8Array, key: unknown, op: string): number {
  let end: number;
  if (Array.isArray(key)) {
    // A compound key: each part checked and written in one pass, as writeKey writes an array
    // (parts in sequence, 0x00 between them), -0 as 0.
    end = 1;
    for (let i = 0; i < key.length; i++) {
      const part: unknown = key[i];
      if (i > 0) scratch[end++] = 0;
      if (typeof part === 'number') {
        if (part !== part) throw badPart(part, op); // NaN
        end = writeNumber(part, scratch, end, true);
      } else if (typeof part === 'string') {
        const ascii = writeAsciiString(part, scratch, end);
        end = ascii >= 0 ? ascii : writePart(part, scratch, end, true, op);
      } else if (typeof part === 'boolean') end = writePart(part, scratch, end, true, op);
      else throw badPart(part, op);
      if (end - 1 > MAX_KEY_BYTES) throw tooLong(op);
    }
  } else if (typeof key === 'number') {
    if (key !== key) throw new DaxError('EINVAL', `${op}: key NaN has no order (ordered keys)`);
    end = writeNumber(key, scratch, 1, false);
  } else if (typeof key === 'string') {
    const ascii = writeAsciiString(key, scratch, 1);
    end = ascii >= 0 ? ascii : writePart(key, scratch, 1, false, op);
  } else {
    checkOrderedKey(key, op);
    end = writePart(key as OrderedKeyPart | null, scratch, 1, false, op);
  }
  if (end - 1 > MAX_KEY_BYTES) throw tooLong(op);
  return end - 1;
}

/** The bits of a number being written (big-endian: its high word first). */
const numberBits = new DataView(new ArrayBuffer(8));

/**
 * writeKey of a number (not NaN; -0 is written as 0) at scratch[at..]; returns the end.
 * ordered-binary's layout: the float's 64 bits shifted right by 4 behind a 0x1 type nibble
 * (negative numbers: the bits inverted, a 0x0 nibble), big-endian, then the last 4 bits in
 * the high nibble of a ninth byte. In a compound key (inSequence) and for negative numbers all
 * 9 bytes are kept; alone, a number drops its trailing zero bytes (9, 8, 6 or 4 bytes). Like
 * writeKey, it writes 12 bytes whatever the length (the rest zeros).
 */
function writeNumber(n: number, scratch: Uint8Array, at: number, inSequence: boolean): number {
  numberBits.setFloat64(0, n === 0 ? 0 : n);
  const high = numberBits.getInt32(0);
  const low = numberBits.getInt32(4);
  let w0: number;
  let w1: number;
  let last: number;
  let length = 9;
  if (n < 0) {
    w0 = (high ^ 0x7fffffff) >>> 4;
    w1 = ~((low >>> 4) | (high << 28));
    last = ((low & 0xf) ^ 0xf) << 4;
  } else {
    w0 = (high >>> 4) | 0x10000000;
    w1 = (low >>> 4) | (high << 28);
    last = (low & 0xf) << 4;
    if ((low & 0xf) === 0 && !inSequence) length = low & 0xfffff ? 8 : low !== 0 || (high & 0xf) !== 0 ? 6 : 4;
  }
  scratch[at] = w0 >>> 24;
  scratch[at + 1] = w0 >>> 16;
  scratch[at + 2] = w0 >>> 8;
  scratch[at + 3] = w0;
  scratch[at + 4] = w1 >>> 24;
  scratch[at + 5] = w1 >>> 16;
  scratch[at + 6] = w1 >>> 8;
  scratch[at + 7] = w1;
  scratch[at + 8] = last;
  scratch[at + 9] = 0;
  scratch[at + 10] = 0;
  scratch[at + 11] = 0;
  return at + length;
}

/**
 * writeKey of a string of 1 to 63 characters, each 0x05-0x7f and the first 0x1c or above, at
 * scratch[at..] (ordered-binary writes such a string as its bytes, nothing escaped); returns
 * the end, or -1 for any other string (then writeKey writes it).
 */
function writeAsciiString(s: string, scratch: Uint8Array, at: number): number {
  const n = s.length;
  if (n === 0 || n >= 0x40 || s.charCodeAt(0) < 28) return -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c <= 4 || c >= 0x80) return -1;
    scratch[at + i] = c;
  }
  return at + n;
}

/** writeKey of one key or part at scratch[at..]; returns the end. */
function writePart(
  part: OrderedKeyPart | null,
  scratch: Uint8Array,
  at: number,
  inSequence: boolean,
  op: string,
): number {
  try {
    return writeKey(part, scratch, at, inSequence);
  } catch (e) {
    if (e instanceof RangeError) throw tooLong(op);
    throw new DaxError('EINVAL', `${op}: key ${describeValue(part)} cannot be encoded: ${String(e)}`, { cause: e });
  }
}

/** A multiple of 4: ordered-binary views its target through a DataView of the length rounded up to 4. */
export const ORDERED_SCRATCH_BYTES = 4 * MAX_KEY_BYTES + 16;

function tooLong(op: string): DaxError {
  return new DaxError('EINVAL', `${op}: key encodes to more than ${MAX_KEY_BYTES} bytes`);
}

function badPart(part: unknown, op: string): DaxError {
  return new DaxError(
    'EINVAL',
    `${op}: a compound key's parts must be strings, numbers (not NaN) or booleans, got ${describeValue(part)}` +
      (part === null ? ' (null is a key only on its own: its byte is the parts separator)' : ''),
  );
}

function checkOrderedKey(key: unknown, op: string): void {
  if (typeof key === 'string' || typeof key === 'boolean' || key === null) return;
  if (typeof key === 'number') {
    if (Number.isNaN(key)) throw new DaxError('EINVAL', `${op}: key NaN has no order (ordered keys)`);
    return;
  }
  if (Array.isArray(key)) {
    for (const part of key)
      if (!(typeof part === 'string' || typeof part === 'boolean' || (typeof part === 'number' && !Number.isNaN(part))))
        throw badPart(part, op);
    return;
  }
  throw new DaxError(
    'EINVAL',
    `${op}: key must be a string, number, boolean, null or an array of those (keyEncoding 'ordered'), got ${describeValue(key)}` +
      (key instanceof Uint8Array ? `; open the store with keyEncoding 'binary' for byte keys` : ''),
  );
}

/**
 * readKey of the keys most stores use, read in place (nothing written, nothing copied): a key
 * whose parts are all ASCII strings of 1 to INLINE_STRING_MAX characters, each 0x05-0x7f and
 * the first 0x1c or above (as writeAsciiString writes them), or numbers of 9 bytes (every
 * number in a compound key; alone, one whose bits fill the ninth byte), parts separated by
 * 0x00. Returns what readKey returns for the same bytes (a part alone, or an array of the
 * parts), or undefined for any other key (then readKey reads it). A number is decoded as
 * readKey decodes 9 or more bytes followed by a 0x00 or the end: the float's bits shifted left
 * by 4 past the type nibble, inverted for a negative number (type nibble 0x0).
 */
function readSimpleOrderedKey(u8: Uint8Array, start: number, length: number): OrderedKey | undefined {
  const end = start + length;
  let p = start;
  let first: OrderedKeyPart | undefined;
  let parts: OrderedKeyPart[] | undefined;
  for (;;) {
    const c = u8[p];
    let part: OrderedKeyPart;
    if (c >= 0x1c && c < 0x80) {
      const from = p;
      for (; p < end; p++) {
        const b = u8[p];
        if (b === 0) break;
        if (b <= 4 || b >= 0x80) return undefined;
      }
      if (p - from > INLINE_STRING_MAX) return undefined;
      const string = asciiString(u8, from, p - from);
      if (string === undefined) return undefined;
      part = string;
    } else if (c >= 8 && c < 24) {
      if (p + 9 > end || (p + 9 < end && u8[p + 9] !== 0)) return undefined;
      let high = ((u8[p] << 24) | (u8[p + 1] << 16) | (u8[p + 2] << 8) | u8[p + 3]) << 4;
      let low = (u8[p + 4] << 24) | (u8[p + 5] << 16) | (u8[p + 6] << 8) | u8[p + 7];
      high |= low >>> 28;
      low = (low << 4) | (u8[p + 8] >> 4);
      if (c < 16) {
        high ^= 0x7fffffff;
        low = ~low;
      }
      numberWords[NUMBER_HIGH] = high;
      numberWords[NUMBER_LOW] = low;
      part = numberFloat[0];
      p += 9;
    } else return undefined;
    if (first === undefined) first = part;
    else if (parts === undefined) parts = [first, part];
    else parts.push(part);
    if (p === end) return parts ?? first;
    // u8[p] is the 0x00 between two parts: another part follows
    if (++p === end) return undefined;
  }
}

/** A number's bits as two int32 words (high, low: their index by the platform's byte order). */
const numberFloat = new Float64Array(1);
const numberWords = new Int32Array(numberFloat.buffer);
const NUMBER_LOW = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1 ? 0 : 1;
const NUMBER_HIGH = 1 - NUMBER_LOW;

/** Reader of ordered keys: a private copy with a zero after it (readKey writes its terminator into its source). */
const orderedReadScratch = new Uint8Array(MAX_KEY_BYTES + 8);

/** The ordered key whose bytes are u8[start, start + length) (any memory: copied first). */
export function readOrderedKey(u8: Uint8Array, start: number, length: number): OrderedKey {
  if (length === 0) return [];
  const simple = readSimpleOrderedKey(u8, start, length);
  if (simple !== undefined) return simple;
  for (let i = 0; i < length; i++) orderedReadScratch[i] = u8[start + i];
  orderedReadScratch[length] = 0;
  return readKey(orderedReadScratch, 0, length) as OrderedKey;
}

/**
 * Where orderedKeyBytes encodes before copying out (a batch of many keys allocates no scratch
 * per key). A Buffer, as the store's own key scratches are: writeOrderedKey's byte stores then
 * meet one kind of target, which keeps them monomorphic in optimized code.
 */
const orderedWriteScratch = Buffer.allocUnsafeSlow(ORDERED_SCRATCH_BYTES);

/** The ordered-binary bytes of `key` (an owned copy), for bounds and batches. */
export function orderedKeyBytes(key: unknown, op: string): Uint8Array {
  const n = writeOrderedKey(orderedWriteScratch, key, op);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = orderedWriteScratch[1 + i];
  return out;
}

/**
 * The byte range a prefix covers with ordered keys: a string prefix covers the keys whose
 * encoding starts with its bytes; an array prefix covers that compound key and every longer
 * one that starts with its parts ([bytes, bytes ++ 0x01): parts are separated by 0x00, and a
 * 0x01 never follows a part's bytes: strings escape it).
 */
export function orderedPrefixRange(prefix: unknown, op: string): { gte: Uint8Array; lt?: Uint8Array } | undefined {
  if (typeof prefix === 'string') return undefined; // a plain byte prefix
  if (!Array.isArray(prefix))
    throw new DaxError(
      'EINVAL',
      `${op}: option prefix must be a string or an array (a compound key's first parts), got ${describeValue(prefix)}`,
    );
  const bytes = orderedKeyBytes(prefix, op);
  const lt = new Uint8Array(bytes.length + 1);
  lt.set(bytes);
  lt[bytes.length] = 0x01;
  return { gte: bytes, lt };
}

// ---- values ----------------------------------------------------------------------------

// msgpackr's defaults (lmdb-js's): plain objects as records, so a Map stays a Map. With a store's
// shared structures (structures.ts) a record's keys are in the store, not in the value; without
// them each value carries its own record definitions and decodes alone.
/** Our own packs write into the stage or into this scratch; after each, the module's buffer is parked (header). */
const plainPackr = new Packr({ moreTypes: true, copyBuffers: true });
const PARK_BYTES = 8192;
// Buffers, not plain Uint8Arrays: msgpackr writes long strings with Buffer's utf8Write.
const parking = Buffer.allocUnsafeSlow(PARK_BYTES);
let batchScratch = Buffer.allocUnsafeSlow(64 * 1024);

/** Leaves msgpackr's module-level buffer on a private full one: the next pack anywhere starts a fresh buffer. */
function park(): void {
  plainPackr.useBuffer(parking);
  plainPackr.position = PARK_BYTES;
}

function packError(value: unknown, op: string, e: unknown): DaxError {
  if (e instanceof DaxError) return e;
  return new DaxError('EINVAL', `${op}: value ${describeValue(value)} cannot be encoded as msgpack: ${String(e)}`, {
    cause: e,
  });
}

function checkDefined(value: unknown, op: string, encoding: string): void {
  if (value === undefined)
    throw new DaxError('EINVAL', `${op}: value is undefined (valueEncoding '${encoding}'; use delete to remove a key)`);
  // msgpackr packs a function as undefined: the key would read back as if it were absent.
  if (typeof value === 'function')
    throw new DaxError(
      'EINVAL',
      `${op}: value is a function, which has no ${encoding} form (valueEncoding '${encoding}')`,
    );
}

/** Most shapes a store shares (msgpackr's default with shared structures: one-byte record ids). */
export const MAX_SHARED_STRUCTURES = 32;

/**
 * msgpack encoder and decoder of one store handle: msgpackr with the store's shared structures
 * (structures.ts) when it has an area for them, else self-contained values. One per handle:
 * its in-memory copy of the set is reloaded from the store when a value names a record id it
 * lacks, and when a save finds another saver was first.
 */
export class MsgpackCodec {
  private readonly packr: Packr;

  constructor(shared: SharedStructures | undefined) {
    if (shared === undefined) {
      this.packr = plainPackr;
      return;
    }
    // The byte size of the shared set as saved, memoized by its length (the set only grows).
    let sizedLength = -1;
    let sizedBytes = 0;
    const packr: Packr = new Packr({
      moreTypes: true,
      copyBuffers: true,
      maxSharedStructures: MAX_SHARED_STRUCTURES,
      getStructures: () => shared.load(),
      // false when another saver was first: msgpackr marks its set stale and packs again after a reload.
      saveStructures: (structures: {}[]): boolean =>
        shared.save(
          structures as string[][],
          (packr as unknown as { lastNamedStructuresLength?: number }).lastNamedStructuresLength ?? 0,
        ),
      shouldShareStructure: (keys: string[]): boolean => {
        const all = (packr as unknown as { structures: string[][] & { sharedLength?: number } }).structures;
        const n = all.sharedLength ?? 0;
        if (n !== sizedLength) {
          sizedBytes = payloadBytes(all.slice(0, n));
          sizedLength = n;
        }
        return sizedBytes + 1 + payloadBytes([keys]) - 2 <= STRUCTURES_PAYLOAD_BYTES;
      },
    });
    this.packr = packr;
  }

  /** After a failed pack: msgpackr may hold a new shared structure it never saved; reload the set before the next pack. */
  private forget(): void {
    if (this.packr === plainPackr) return;
    const s = (this.packr as unknown as { structures?: { uninitialized?: boolean } }).structures;
    if (s !== undefined) s.uninitialized = true;
  }

  /**
   * Packs `value` straight into the record stage with its first byte at stage offset `at`.
   * Returns its length, or -1 when it did not fit in place (then `packValue` gives its bytes).
   */
  packIntoStage(value: unknown, at: number, op: string): number {
    checkDefined(value, op, 'msgpack');
    const aligned = at & ~7;
    const reserve = at - aligned;
    const stage = stageViews.buf;
    let out: Uint8Array;
    try {
      this.packr.useBuffer(stage);
      this.packr.position = aligned;
      // msgpackr 8-aligns its start, then skips the `reserve` bytes RESERVE_START_SPACE asks for.
      out = this.packr.pack(value, RESERVE_START_SPACE | reserve);
    } catch (e) {
      this.forget();
      throw packError(value, op, e);
    } finally {
      park();
    }
    // grew past the stage, or packed again after a structures conflict (further on)
    if (out.buffer !== stage.buffer || out.byteOffset !== stage.byteOffset + aligned) return -1;
    return out.length - reserve;
  }

  /** The msgpack bytes of `value`, in a scratch valid until the next call of packValue after resetPackScratch(). */
  packValue(value: unknown, op: string): Uint8Array {
    checkDefined(value, op, 'msgpack');
    try {
      this.packr.useBuffer(batchScratch);
      this.packr.position = batchOffset;
      const out = this.packr.pack(value);
      if (out.buffer === batchScratch.buffer) batchOffset = out.byteOffset + out.length;
      else {
        // msgpackr moved to a buffer of its own (ours was full): earlier results keep the old
        // scratch alive; a new one serves the next values.
        batchScratch = Buffer.allocUnsafeSlow(Math.max(batchScratch.length, 2 * out.length));
        batchOffset = 0;
      }
      return out;
    } catch (e) {
      this.forget();
      throw packError(value, op, e);
    } finally {
      park();
    }
  }

  /** The value stored as msgpack in buf [start, start + length) (decoded from a private copy; keeps no byte of either). */
  unpack(buf: Buffer, start: number, length: number, op: string): unknown {
    growUnpackScratch(length);
    buf.copy(unpackScratch, 0, start, start + length);
    return this.decodeScratch(0, length, op);
  }

  /**
   * unpack() of bytes [start, start + length) of the memory `u32` views, copied by whole words
   * (a few word loads and stores instead of Buffer.copy's setup): the words covering the range
   * are read, so [start & ~3, (start + length + 3) & ~3) must lie inside `u32` (an entry's
   * value does: entries are 8-aligned and zero-padded).
   */
  unpackWords(u32: Uint32Array, start: number, length: number, op: string): unknown {
    const lead = start & 3;
    const first = start >>> 2;
    const words = (lead + length + 3) >>> 2;
    growUnpackScratch(4 * words);
    const to = unpackScratch32;
    for (let i = 0; i < words; i++) to[i] = u32[first + i];
    return this.decodeScratch(lead, length, op);
  }

  private decodeScratch(start: number, length: number, op: string): unknown {
    const structures = (this.packr as unknown as { structures?: Structures }).structures;
    if (structures !== undefined) {
      const value = readRecordValue(unpackScratch, start, length, structures);
      if (value !== NOT_RECORDS) return value;
    }
    unpackRange.start = start;
    unpackRange.end = start + length;
    try {
      return this.packr.unpack(unpackScratch, unpackRange);
    } catch (e) {
      if (e instanceof DaxError) throw e;
      throw undecodable(op, 'msgpack', e);
    }
  }
}

/** The range of unpackScratch being decoded (one object: msgpackr reads it at the start of unpack and keeps no reference). */
const unpackRange = { start: 0, end: 0 };

function growUnpackScratch(bytes: number): void {
  if (unpackScratch.length >= bytes) return;
  unpackScratch = Buffer.allocUnsafeSlow(Math.max(bytes + 8, 2 * unpackScratch.length) & ~7);
  unpackScratch32 = new Uint32Array(unpackScratch.buffer, unpackScratch.byteOffset, unpackScratch.length >>> 2);
}
let batchOffset = 0;

/** Starts the pack scratch over: results of packValue before this call may be overwritten after it. */
export function resetPackScratch(): void {
  batchOffset = 0;
}

/**
 * Private copy of a msgpack value being decoded: msgpackr's native string extraction
 * (msgpackr-extract) takes only a source over an ArrayBuffer, not the store's SharedArrayBuffer.
 */
let unpackScratch = Buffer.allocUnsafeSlow(16 * 1024);
let unpackScratch32 = new Uint32Array(unpackScratch.buffer, unpackScratch.byteOffset, unpackScratch.length >>> 2);

export function undecodable(op: string, encoding: ValueEncoding, e: unknown): DaxError {
  return new DaxError(
    'ECORRUPT',
    `${op}: a stored value is not valid ${encoding} (written with another valueEncoding?${encoding === 'msgpack' ? ' or naming a shared structure the store does not hold?' : ''}): ${String(e)}`,
    { cause: e },
  );
}

/** The string to store for `value` under 'utf8' or 'json' (EINVAL when it has none). */
export function valueString(value: unknown, encoding: 'utf8' | 'json', op: string): string {
  if (encoding === 'utf8') {
    if (typeof value !== 'string')
      throw new DaxError('EINVAL', `${op}: value must be a string (valueEncoding 'utf8'), got ${describeValue(value)}`);
    return value;
  }
  checkDefined(value, op, 'json');
  let s: string | undefined;
  try {
    s = JSON.stringify(value);
  } catch (e) {
    throw new DaxError('EINVAL', `${op}: value cannot be encoded as JSON: ${String(e)}`, { cause: e });
  }
  if (s === undefined)
    throw new DaxError('EINVAL', `${op}: value ${describeValue(value)} has no JSON form (valueEncoding 'json')`);
  return s;
}

export function parseJson(text: string, op: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw undecodable(op, 'json', e);
  }
}
