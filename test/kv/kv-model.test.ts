/**
 * Model-based test: random puts, gets, deletes, batches, ranges (bounds, prefix, reverse,
 * limit), deleteRange and reopen (clean close, then recovery from the durable image) against
 * a plain sorted Map. Single thread; does not cover concurrency or crashes (see
 * kv-workers.test.ts and kv-crash.test.ts).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createSimMedia } from '../../src/device/sim-media.js';
import { type KvStore, type KvRangeOptions } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { replayHint, testSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-model.test.ts';

const seed = testSeed();
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const keyArb = fc.uint8Array({ minLength: 1, maxLength: 3 }).map((a) => a.map((x) => x % 4)); // small alphabet: collisions, shared prefixes
const valueArb = fc.uint8Array({ maxLength: 40 });
const boundArb = fc.option(
  fc.uint8Array({ maxLength: 3 }).map((a) => a.map((x) => x % 4)),
  { nil: undefined },
);
const rangeArb = fc.record({
  lo: boundArb,
  loIncl: fc.boolean(),
  hi: boundArb,
  hiIncl: fc.boolean(),
  prefix: fc.option(keyArb, { nil: undefined }),
  reverse: fc.boolean(),
  limit: fc.option(fc.nat(6), { nil: undefined }),
});
type RangeSpec = {
  lo?: Uint8Array;
  loIncl: boolean;
  hi?: Uint8Array;
  hiIncl: boolean;
  prefix?: Uint8Array;
  reverse: boolean;
  limit?: number;
};
const opArb = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('put' as const), k: keyArb, v: valueArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('get' as const), k: keyArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('del' as const), k: keyArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('batch' as const),
      ops: fc.array(fc.record({ put: fc.boolean(), k: keyArb, v: valueArb }), { maxLength: 6 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('range' as const), r: rangeArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('deleteRange' as const), r: rangeArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reopen' as const) }) },
);

function toOpts(r: RangeSpec): KvRangeOptions {
  const o: KvRangeOptions = { reverse: r.reverse, limit: r.limit };
  if (r.lo !== undefined) o[r.loIncl ? 'gte' : 'gt'] = r.lo;
  if (r.hi !== undefined) o[r.hiIncl ? 'lte' : 'lt'] = r.hi;
  if (r.prefix !== undefined) o.prefix = r.prefix;
  return o;
}

function modelRange(model: Map<string, Uint8Array>, r: RangeSpec): string[] {
  let keys = [...model.keys()].sort((a, b) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex')));
  keys = keys.filter((k) => {
    const b = Buffer.from(k, 'hex');
    if (r.lo !== undefined) {
      const c = Buffer.compare(b, Buffer.from(r.lo));
      if (c < 0 || (c === 0 && !r.loIncl)) return false;
    }
    if (r.hi !== undefined) {
      const c = Buffer.compare(b, Buffer.from(r.hi));
      if (c > 0 || (c === 0 && !r.hiIncl)) return false;
    }
    if (r.prefix !== undefined && !b.subarray(0, r.prefix.length).equals(Buffer.from(r.prefix))) return false;
    return true;
  });
  if (r.reverse) keys.reverse();
  return r.limit === undefined ? keys : keys.slice(0, r.limit);
}

describe('kv model', () => {
  it('agrees with a sorted Map over random operation sequences, across reopen', () => {
    try {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
          let media = createSimMedia(8 * 2 ** 20);
          let db: KvStore = openMedia(media);
          const model = new Map<string, Uint8Array>();
          try {
            for (const op of ops) {
              switch (op.t) {
                case 'put':
                  db.put(op.k, op.v);
                  model.set(hex(op.k), op.v);
                  break;
                case 'get':
                  expect(db.get(op.k)).toEqual(model.get(hex(op.k)));
                  break;
                case 'del':
                  expect(db.delete(op.k)).toBe(model.delete(hex(op.k)));
                  break;
                case 'batch':
                  db.batch(
                    op.ops.map((o) =>
                      o.put ? { type: 'put' as const, key: o.k, value: o.v } : { type: 'del' as const, key: o.k },
                    ),
                  );
                  for (const o of op.ops)
                    if (o.put) model.set(hex(o.k), o.v);
                    else model.delete(hex(o.k));
                  break;
                case 'range': {
                  const got = [...db.range(toOpts(op.r))];
                  const want = modelRange(model, op.r);
                  expect(got.map(([k]) => hex(k))).toEqual(want);
                  expect(got.map(([, v]) => hex(v))).toEqual(want.map((k) => hex(model.get(k)!)));
                  break;
                }
                case 'deleteRange': {
                  const want = modelRange(model, op.r);
                  expect(db.deleteRange(toOpts(op.r))).toBe(want.length);
                  for (const k of want) model.delete(k);
                  break;
                }
                case 'reopen':
                  db.close();
                  media = media.crashImage({ mode: 'none' });
                  db = openMedia(media);
                  expect(db.recovery?.droppedRecords).toBe(0);
                  break;
              }
            }
            expect(db.stats().keys).toBe(model.size);
            expect([...db.range()].map(([k]) => hex(k))).toEqual(
              modelRange(model, { loIncl: true, hiIncl: true, reverse: false }),
            );
          } finally {
            db.close();
          }
        }),
        { seed, numRuns: 60 },
      );
    } catch (e) {
      console.error(`kv model failed with ${replayHint(seed, FILE)}`);
      throw e;
    }
  });
});
