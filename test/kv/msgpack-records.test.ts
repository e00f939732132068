/**
 * The msgpack record reader (src/kv/msgpack-records.ts) returns exactly what msgpackr returns
 * for the values it takes, and leaves every other value to msgpackr: fast-check values against
 * msgpackr's own unpack (test/helpers/msgpack-records-check.ts), the values a store usually
 * holds (all taken), the edges of each number width and string length, and bytes it must not
 * take (non-ASCII strings, truncated or trailing bytes, structures not shared, deep nesting).
 * With DAXSTORE_TEST_BREAK=msgpack-records-non-ascii the comparison goes red.
 *
 * Not covered here: the store's paths around the reader (kv-encodings.test.ts round-trips
 * msgpack values through get, getMany, range and a reopen).
 */
import { expect, test } from 'vitest';
import { NOT_RECORDS, readRecordValue, type Structures } from '../../src/kv/msgpack-records.js';
import { breakEnv } from '../../src/test-break.js';
import { scaled, withSeed } from '../helpers/seed.js';
import { runWorker } from '../helpers/workers.js';
import {
  type RecordsCheck,
  checkRecordsAgainstMsgpackr,
  compareOne,
  sameValue,
  sharedPackr,
} from '../helpers/msgpack-records-check.js';
import { user } from '../../bench/msgpack-users.js';

const FILE = 'test/kv/msgpack-records.test.ts';

test('the record reader returns what msgpackr returns for every value it takes, and takes most', () =>
  withSeed(FILE, (seed) => {
    const r = checkRecordsAgainstMsgpackr(seed, scaled(1500));
    expect(r.mismatches).toEqual([]);
    expect(r.fast).toBeGreaterThan(r.values * 0.3);
    console.log(`msgpack records: ${r.values} values, ${r.fast} read by the record reader, all as msgpackr reads them`);
  }));

test('the values of a store of records are all taken by the reader, equal to msgpackr', () => {
  const packr = sharedPackr();
  for (let i = 0; i < 1024; i++) {
    const r = compareOne(packr, packr.pack(user(i)));
    expect(r).toEqual({ fast: true });
  }
  const nested = { a: [user(1), { a: 1, b: [true, false, null] }], b: { x: -0.5 } };
  expect(compareOne(packr, packr.pack(nested))).toEqual({ fast: true });
});

test('every width of number and length of ASCII string reads as msgpackr reads it', () => {
  const packr = sharedPackr();
  const numbers = [0, 1, 63, 64, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, -1, -32, -33, -128, -129];
  numbers.push(-32768, -32769, -(2 ** 31), 0.5, -0, 1e300, NaN, Infinity);
  for (const n of numbers) {
    for (const v of [n, { x: n }, [n, n]]) {
      const r = compareOne(packr, packr.pack(v));
      expect(r.mismatch).toBeUndefined();
      expect(r.fast).toBe(true);
    }
  }
  for (let n = 0; n <= 300; n++) {
    const s = Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 7) % 95))).join('');
    const r = compareOne(packr, packr.pack({ x: s }));
    expect(r.mismatch).toBeUndefined();
    expect(r.fast).toBe(n < 256); // str 16 and longer: msgpackr's
  }
});

test('bytes the reader must not take are left to msgpackr', () => {
  const packr = sharedPackr();
  const structures = (packr as unknown as { structures: Structures }).structures;
  const read = (bytes: Uint8Array, s: Structures = structures): unknown =>
    readRecordValue(Buffer.from(bytes), 0, bytes.length, s);
  for (const s of ['é', 'ab\u0080', '😀', 'x'.repeat(30) + 'ü', '\ud800'])
    expect(read(packr.pack({ x: s }))).toBe(NOT_RECORDS);
  const whole = packr.pack(user(7));
  expect(sameValue(read(whole), user(7))).toBe(true);
  for (let n = 0; n < whole.length; n++) expect(read(whole.subarray(0, n))).toBe(NOT_RECORDS);
  expect(read(Uint8Array.of(...whole, 0))).toBe(NOT_RECORDS);
  // a structure id the set does not share (yet): msgpackr loads the set first
  const unshared = Object.assign([...structures], { sharedLength: 0 });
  expect(read(whole, unshared)).toBe(NOT_RECORDS);
  let deep: unknown = 1;
  for (let i = 0; i < 40; i++) deep = [deep];
  expect(read(packr.pack(deep))).toBe(NOT_RECORDS);
  for (const v of [new Map([[1, 2]]), new Uint8Array(3), new Date(5), 2n ** 70n, { x: undefined }])
    expect(read(packr.pack(v))).toBe(NOT_RECORDS);
  // float 32, uint 64, int 64, str 16, array 16 (msgpackr never packs these bytes for a smaller value)
  for (const bytes of [
    [0xca, 0x3f, 0xc0, 0, 0],
    [0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
    [0xd3, 0, 0, 0, 0, 0, 0, 0, 1],
  ])
    expect(read(Uint8Array.from(bytes))).toBe(NOT_RECORDS);
  expect(read(Uint8Array.of(0xda, 0, 1, 0x61))).toBe(NOT_RECORDS);
  expect(read(Uint8Array.of(0xdc, 0, 1, 1))).toBe(NOT_RECORDS);
});

// A worker of its own: the switch is read when the reader's module loads. Most values hold a
// non-ASCII string, so a few hundred runs find a mismatch; the time allowed is for a loaded machine.
test(
  'with DAXSTORE_TEST_BREAK=msgpack-records-non-ascii the reader gives other strings than msgpackr (the test goes red)',
  { timeout: 150_000 },
  () =>
    withSeed(FILE, async (seed) => {
      const r = await runWorker<RecordsCheck>(
        'msgpack-records-check',
        { seed, runs: 500 },
        140_000,
        breakEnv('msgpack-records-non-ascii'),
      );
      expect(r.mismatches.length).toBeGreaterThan(0);
    }),
);
