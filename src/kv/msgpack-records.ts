/**
 * A reader for the msgpack values a store's plain records pack into: the records of the store's
 * shared structures, ASCII strings, numbers, booleans, null and arrays of those. For such a value
 * it returns what msgpackr's unpack returns for the same bytes (a new object equal to it: the
 * same keys in the same order, the same values, strings and arrays); for any other value it
 * returns NOT_RECORDS and reads nothing more, and the caller decodes with msgpackr.
 *
 * Why: msgpackr's unpack is general (re-entrancy, bundled strings, extensions, structures
 * defined inside the value) and sets up for all of it per call, and it builds a string of 16 or
 * more bytes from an Array through Function.prototype.apply. This reader sets up nothing but
 * its position, and builds each string in one String.fromCharCode call (docs/PERFORMANCE.md
 * has the figures).
 *
 * What it takes, and what msgpackr returns for it (unpack.js read()):
 *   0x00-0x3f          positive fixint: the number
 *   0x40-0x7f          a record of shared structure id (token & 0x3f), when the structures
 *                      hold it (id < structures.sharedLength: msgpackr's untrusted read drops
 *                      the rest) and it takes no second id byte (highByte not 0): an object with
 *                      the structure's keys in order ('__proto__' read as '__proto_', as
 *                      msgpackr does), each a value
 *   0x90-0x9f          fixarray: new Array(n) filled in order
 *   0xa0-0xbf, 0xd9    fixstr, str 8 whose bytes are all below 0x80: the string of those
 *                      characters (msgpackr's UTF-8 decoding gives the same string for ASCII)
 *   0xc0 0xc2 0xc3     null, false, true
 *   0xcb               float 64 (big-endian)
 *   0xcc-0xce          uint 8/16/32; 0xd0-0xd2 int 8/16/32
 *   0xe0-0xff          negative fixint
 * Anything else (maps, binaries, extensions and record definitions, float 32, 64-bit integers,
 * str 16/32, non-ASCII bytes in a string, a structure it does not hold, nesting deeper than
 * MAX_DEPTH, a value that does not end exactly at `end`) is NOT_RECORDS: msgpackr reads it,
 * and reports what is malformed. This reader has no side effects but the scratch state below,
 * so giving up part-way is free.
 *
 * Concurrency: module state, one instance per thread (module instances are per thread); not
 * re-entrant, and nothing it calls calls back (no user code runs while it reads).
 */
import { brokenAtLoad } from '../test-break.js';

/** What readRecordValue returns for a value it does not take: decode it with msgpackr. */
export const NOT_RECORDS: unique symbol = Symbol('not records');

/**
 * DAXSTORE_TEST_BREAK=msgpack-records-non-ascii: strings with bytes of 0x80 and above are read
 * as if each byte were a character (Latin-1) instead of being left to msgpackr's UTF-8 decoding,
 * so msgpack-records.test.ts can go red.
 */
const NON_ASCII_BROKEN = brokenAtLoad('msgpack-records-non-ascii');

/** Deepest nesting of records and arrays read here (deeper: msgpackr's). */
const MAX_DEPTH = 32;
/** Longest string built from explicit character codes (longer: Buffer's latin1 toString). */
export const INLINE_STRING_MAX = 48;

/** A structure as msgpackr keeps it: its keys, maybe a high byte of its id. */
type Structure = readonly unknown[] & { highByte?: number };
/** The structures of an Unpackr: shared ones first (sharedLength of them). */
export type Structures = readonly (Structure | undefined)[] & { sharedLength?: number };

let src: Buffer = Buffer.alloc(0);
let view = new DataView(src.buffer);
let pos = 0;
let end = 0;
let depth = 0;
let failed = false;
let structures: Structures = [];

/**
 * The value msgpackr would unpack from src[start, start + length) with these structures, or
 * NOT_RECORDS. `source` is a private copy (a Buffer over an ArrayBuffer).
 */
export function readRecordValue(source: Buffer, start: number, length: number, from: Structures): unknown {
  if (source !== src) {
    src = source;
    view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  }
  pos = start;
  end = start + length;
  depth = 0;
  failed = false;
  structures = from;
  const value = readValue();
  return failed || pos !== end ? NOT_RECORDS : value;
}

/** Marks the read failed and ends it: every later readValue returns at once. */
function fail(): undefined {
  failed = true;
  pos = end;
  return undefined;
}

function readValue(): unknown {
  if (pos >= end) return fail();
  const token = src[pos++];
  if (token < 0x40) return token;
  if (token < 0x80) return readRecord(token & 0x3f);
  if (token < 0x90) return fail(); // fixmap
  if (token < 0xa0) return readArray(token - 0x90);
  if (token < 0xc0) return readString(token - 0xa0);
  if (token >= 0xe0) return token - 0x100;
  let value: number;
  switch (token) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xcb:
      if (pos + 8 > end) return fail();
      value = view.getFloat64(pos);
      pos += 8;
      return value;
    case 0xcc:
      if (pos + 1 > end) return fail();
      return src[pos++];
    case 0xcd:
      if (pos + 2 > end) return fail();
      value = view.getUint16(pos);
      pos += 2;
      return value;
    case 0xce:
      if (pos + 4 > end) return fail();
      value = view.getUint32(pos);
      pos += 4;
      return value;
    case 0xd0:
      if (pos + 1 > end) return fail();
      return view.getInt8(pos++);
    case 0xd1:
      if (pos + 2 > end) return fail();
      value = view.getInt16(pos);
      pos += 2;
      return value;
    case 0xd2:
      if (pos + 4 > end) return fail();
      value = view.getInt32(pos);
      pos += 4;
      return value;
    case 0xd9:
      if (pos + 1 > end) return fail();
      return readString(src[pos++]);
    default:
      return fail();
  }
}

function readArray(n: number): unknown {
  if (++depth > MAX_DEPTH) return fail();
  const array = new Array(n);
  for (let i = 0; i < n; i++) array[i] = readValue();
  depth--;
  return array;
}

function readRecord(id: number): unknown {
  const s = id < (structures.sharedLength ?? 0) ? structures[id] : undefined;
  if (s === undefined || s.highByte === 0 || ++depth > MAX_DEPTH) return fail();
  const read = readerOf(s, id);
  if (read === null) return fail();
  const object = read();
  depth--;
  return object;
}

/** A string of n bytes at pos, when they are all ASCII. */
function readString(n: number): string | undefined {
  const at = pos;
  if (at + n > end) return fail();
  let string: string | undefined;
  if (n <= INLINE_STRING_MAX) string = asciiString(src, at, n);
  else {
    let high = 0;
    for (let i = 0; i < n; i++) high |= src[at + i];
    string = (high & NON_ASCII) === 0 ? src.toString('latin1', at, at + n) : undefined;
  }
  if (string === undefined) return fail();
  pos = at + n;
  return string;
}

/** The bits a byte of an ASCII string never has (none with the non-ASCII break switch). */
const NON_ASCII = NON_ASCII_BROKEN ? 0 : 0x80;

/**
 * String.fromCharCode of s[at, at + n), or undefined when a byte is 0x80 or above, for n <=
 * INLINE_STRING_MAX: each byte loaded once into a local, their OR checked, then a flat string
 * built in one call with the codes as explicit arguments (through apply, an Array or a typed
 * array of codes costs several times as much). Written out once here by `new Function`.
 */
export const asciiString = ((): ((s: Uint8Array, at: number, n: number) => string | undefined) => {
  const cases: string[] = ["case 0: return '';"];
  for (let n = 1; n <= INLINE_STRING_MAX; n++) {
    const names = Array.from({ length: n }, (_, i) => `c${i}`);
    const loads = names.map((c, i) => `${c} = s[p${i === 0 ? '' : ` + ${i}`}]`).join(', ');
    cases.push(
      `case ${n}: { const ${loads}; return ((${names.join(' | ')}) & m) === 0 ? f(${names.join(', ')}) : undefined; }`,
    );
  }
  return new Function(
    'f',
    'm',
    `return function asciiString(s, p, n) { switch (n) { ${cases.join(' ')} } return undefined; };`,
  )(String.fromCharCode, NON_ASCII) as (s: Uint8Array, at: number, n: number) => string | undefined;
})();

/** Record readers by structure: built once per structure (its key list, which never changes). */
const readers = new WeakMap<Structure, (() => unknown) | null>();
/** The last structure met and its reader, per record id: one compare instead of a WeakMap lookup per record. */
const lastStructure: (Structure | undefined)[] = new Array(64).fill(undefined);
const lastReader: ((() => unknown) | null)[] = new Array(64).fill(null);

/** The reader of records of structure s, record id `id` (null: this reader cannot build one). */
function readerOf(s: Structure, id: number): (() => unknown) | null {
  if (lastStructure[id] === s) return lastReader[id];
  let read = readers.get(s);
  if (read === undefined) {
    read = buildReader(s);
    readers.set(s, read);
  }
  lastStructure[id] = s;
  lastReader[id] = read;
  return read;
}

const VALID_NAME = /^[a-zA-Z_$][a-zA-Z\d_$]*$/;

/**
 * A function that reads one record of structure s: an object literal with s's keys in order,
 * each value read by readValue (msgpackr's generated reader has the same form). null when a
 * key is no string or the platform refuses `new Function`.
 */
function buildReader(s: Structure): (() => unknown) | null {
  const fields: string[] = [];
  for (const key of s) {
    if (typeof key !== 'string') return null;
    const name = key === '__proto__' ? '__proto_' : key;
    fields.push(`${VALID_NAME.test(name) ? name : JSON.stringify(name)}: r()`);
  }
  try {
    return new Function('r', `return function readRecord() { return { ${fields.join(', ')} }; };`)(
      readValue,
    ) as () => unknown;
  } catch {
    return null;
  }
}
