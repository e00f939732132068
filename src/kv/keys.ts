/**
 * Argument validation and encoding of user keys and values (no shared state).
 * Index keys are KV_KEY_PREFIX ++ the key's bytes (strings: UTF-8).
 */
import { DaxError } from '../errors.js';
import { isBroken } from '../test-break.js';
import { KV_KEY_PREFIX, MAX_KEY_BYTES, MAX_VALUE_BYTES } from './layout.js';

export type Key = string | Uint8Array;
export type Value = string | Uint8Array;

/** An owned index key for `key` (0..MAX_KEY_BYTES bytes: the empty key is a key). */
export function indexKeyOf(key: unknown, op: string): Uint8Array {
  if (typeof key === 'string') {
    if (key.length > MAX_KEY_BYTES) throw tooLong(op, key.length);
    const n = Buffer.byteLength(key, 'utf8');
    checkLength(n, op);
    const out = Buffer.allocUnsafe(n + 1);
    out[0] = KV_KEY_PREFIX;
    out.write(key, 1, n, 'utf8');
    return new Uint8Array(out.buffer, out.byteOffset, n + 1);
  }
  if (key instanceof Uint8Array) {
    checkLength(key.length, op);
    const out = new Uint8Array(key.length + 1);
    out[0] = KV_KEY_PREFIX;
    out.set(key, 1);
    return out;
  }
  throw new DaxError('EINVAL', `${op}: key must be a string or Uint8Array, got ${describe(key)}`);
}

/**
 * The index key of `key` written into `scratch` (1 + 3 * MAX_KEY_BYTES bytes), returned as a
 * cached view of its first n + 1 bytes (views[n]): no allocation per call. Valid until the
 * next call with the same scratch. Bad keys take indexKeyOf's path for its error.
 */
export function scratchIndexKey(scratch: Buffer, views: Uint8Array[], key: unknown, op: string): Uint8Array {
  let n: number;
  if (typeof key === 'string' && key.length <= MAX_KEY_BYTES) n = scratch.write(key, 1, 'utf8');
  else if (key instanceof Uint8Array && key.length <= MAX_KEY_BYTES) {
    n = key.length;
    if (n <= 32) for (let i = 0; i < n; i++) scratch[i + 1] = key[i];
    else scratch.set(key, 1);
  } else return indexKeyOf(key, op); // the error path: wrong type or too long
  if (n > MAX_KEY_BYTES) return indexKeyOf(key, op);
  scratch[0] = KV_KEY_PREFIX;
  return (views[n] ??= new Uint8Array(scratch.buffer, scratch.byteOffset, n + 1));
}

/** A range bound: like a key, but the empty key is allowed. */
export function boundKeyOf(key: unknown, op: string): Uint8Array {
  if ((typeof key === 'string' && key.length === 0) || (key instanceof Uint8Array && key.length === 0))
    return Uint8Array.of(KV_KEY_PREFIX);
  return indexKeyOf(key, op);
}

function checkLength(n: number, op: string): void {
  if (n > MAX_KEY_BYTES) throw tooLong(op, n);
}

function tooLong(op: string, n: number): DaxError {
  return new DaxError('EINVAL', `${op}: key of ${n}+ bytes exceeds the ${MAX_KEY_BYTES}-byte limit`);
}

/** Byte length of a value; EINVAL for a wrong type or more than MAX_VALUE_BYTES. */
export function valueLengthOf(value: unknown, op: string): number {
  let n: number;
  if (typeof value === 'string') n = value.length > MAX_VALUE_BYTES ? value.length : Buffer.byteLength(value, 'utf8');
  else if (value instanceof Uint8Array) n = value.length;
  else throw new DaxError('EINVAL', `${op}: value must be a string or Uint8Array, got ${describe(value)}`);
  if (n > MAX_VALUE_BYTES)
    throw new DaxError('EINVAL', `${op}: value of ${n} bytes exceeds the ${MAX_VALUE_BYTES}-byte limit`);
  return n;
}

function describe(x: unknown): string {
  return x === null ? 'null' : Array.isArray(x) ? 'an array' : typeof x;
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Index-key bounds of a scan (gt/gte below, lt/lte above; reverse walks from the top). */
export interface ScanBounds {
  gt?: Uint8Array;
  gte?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
  reverse?: boolean;
}

/**
 * The bounds of the batch after one that ended at index key `last`: strictly after it
 * (reverse: strictly before). A batch's last key (read from its entry in the log, or from its
 * leaf) lies strictly inside the bounds the batch was scanned with unless the index is broken
 * (a leaf naming another key's entry, leaves out of order): the next batch would then start at
 * or before keys already returned, and a scan could come round to them for ever. That is
 * ECORRUPT instead, naming the store (`where`) and both keys; checked once per batch.
 */
export function boundsAfter<B extends ScanBounds>(bounds: B, last: Uint8Array, op: string, where: string): B {
  if (!isBroken('kv-scan-progress-unchecked')) {
    const from = bounds.reverse ? (bounds.lt ?? bounds.lte) : (bounds.gt ?? bounds.gte);
    const strict = bounds.reverse ? bounds.lt !== undefined : bounds.gt !== undefined;
    const c = from === undefined ? 1 : compareBytes(last, from) * (bounds.reverse ? -1 : 1);
    if (c < 0 || (c === 0 && strict))
      throw new DaxError(
        'ECORRUPT',
        `${op}: the index of the key-value store on ${where} is out of order: a batch that started ${strict ? 'after' : 'at'} key ${indexKeyText(from!)} ended at key ${indexKeyText(last)}; the scan stops rather than return keys again`,
      );
  }
  return bounds.reverse ? { ...bounds, lt: last, lte: undefined } : { ...bounds, gt: last, gte: undefined };
}

/** An index key for a message: its text when printable, else hex (at most 64 bytes shown). */
function indexKeyText(key: Uint8Array): string {
  const k = key[0] === KV_KEY_PREFIX ? key.subarray(1) : key;
  const shown = k.subarray(0, 64);
  const more = k.length > shown.length ? `... (${k.length} bytes)` : '';
  const text = Buffer.from(shown).toString('utf8');
  return /^[\x20-\x7e]*$/.test(text) ? JSON.stringify(text) + more : `0x${Buffer.from(shown).toString('hex')}${more}`;
}

/** The smallest key greater than every key starting with `prefix`, or undefined if there is none. */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const out = prefix.slice(0, i + 1);
      out[i]++;
      return out;
    }
  }
  return undefined;
}
