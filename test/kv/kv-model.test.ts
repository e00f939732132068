/**
 * Model-based test: random puts, gets, deletes, batches, ranges (bounds, prefix, reverse,
 * limit), deleteRange, compaction and reopen (clean close, then recovery from the durable
 * image) against a plain sorted Map; snapshots and ranges taken at random points and read
 * later (get, has, range) against a copy of the Map as it was when they were taken;
 * transactions of gets, puts, deletes and ranges (their reads against the Map plus their own
 * writes; committed, or aborted by a throw); conditional puts (ifVersion, current or stale). Single
 * thread; does not cover concurrency or crashes (see kv-workers.test.ts, kv-snapshot-workers
 * and kv-crash.test.ts).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createSimMedia } from '../../src/device/sim-media.js';
import { type KvSnapshot, type KvStore, type KvRangeOptions } from '../../src/kv/index.js';
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
  { weight: 1, arbitrary: fc.record({ t: fc.constant('snapshot' as const) }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('snapshotRead' as const), i: fc.nat(3), k: keyArb, r: rangeArb }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('snapshotClose' as const), i: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('rangeOpen' as const), r: rangeArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('rangeFinish' as const), i: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('compact' as const) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('txn' as const),
      ops: fc.array(
        fc.oneof(
          fc.record({ t: fc.constant('get' as const), k: keyArb }),
          fc.record({ t: fc.constant('put' as const), k: keyArb, v: valueArb }),
          fc.record({ t: fc.constant('del' as const), k: keyArb }),
          fc.record({ t: fc.constant('range' as const), r: rangeArb }),
        ),
        { maxLength: 8 },
      ),
      abort: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('putIf' as const), k: keyArb, v: valueArb, stale: fc.boolean() }),
  },
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
          // Snapshots and ranges held, each with the model as it was when it was taken.
          let snaps: Array<{ snap: KvSnapshot; model: Map<string, Uint8Array> }> = [];
          let ranges: Array<{ range: Iterator<[Uint8Array, Uint8Array]>; want: string[]; values: string[] }> = [];
          try {
            for (const op of ops) {
              switch (op.t) {
                case 'snapshot':
                  snaps.push({ snap: db.snapshot(), model: new Map(model) });
                  break;
                case 'snapshotRead': {
                  if (snaps.length === 0) break;
                  const { snap, model: then } = snaps[op.i % snaps.length];
                  expect(snap.get(op.k)).toEqual(then.get(hex(op.k)));
                  expect(snap.has(op.k)).toBe(then.has(hex(op.k)));
                  const got = [...snap.range(toOpts(op.r))];
                  const want = modelRange(then, op.r);
                  expect(got.map(([k]) => hex(k))).toEqual(want);
                  expect(got.map(([, v]) => hex(v))).toEqual(want.map((k) => hex(then.get(k)!)));
                  break;
                }
                case 'snapshotClose':
                  if (snaps.length > 0) snaps.splice(op.i % snaps.length, 1)[0].snap.close();
                  break;
                case 'rangeOpen': {
                  const want = modelRange(model, op.r);
                  ranges.push({ range: db.range(toOpts(op.r)), want, values: want.map((k) => hex(model.get(k)!)) });
                  break;
                }
                case 'rangeFinish': {
                  if (ranges.length === 0) break;
                  const { range, want, values } = ranges.splice(op.i % ranges.length, 1)[0];
                  const got = [...{ [Symbol.iterator]: () => range }];
                  expect(got.map(([k]) => hex(k))).toEqual(want);
                  expect(got.map(([, v]) => hex(v))).toEqual(values);
                  break;
                }
                case 'compact':
                  db.compact({ maxLiveRatio: 1 });
                  break;
                case 'txn': {
                  // The transaction's view: the model plus its own writes; committed into the model unless it aborts.
                  const view = new Map(model);
                  const run = (): void =>
                    db.transactionSync((txn) => {
                      view.clear();
                      for (const [k, v] of model) view.set(k, v);
                      for (const o of op.ops) {
                        if (o.t === 'get') expect(txn.get(o.k)).toEqual(view.get(hex(o.k)));
                        else if (o.t === 'put') {
                          txn.put(o.k, o.v);
                          view.set(hex(o.k), o.v);
                        } else if (o.t === 'del') expect(txn.delete(o.k)).toBe(view.delete(hex(o.k)));
                        else {
                          const got = [...txn.range(toOpts(o.r))];
                          const want = modelRange(view, o.r);
                          expect(got.map(([k]) => hex(k))).toEqual(want);
                          expect(got.map(([, v]) => hex(v))).toEqual(want.map((k) => hex(view.get(k)!)));
                        }
                      }
                      if (op.abort) throw new Error('abort');
                    });
                  if (op.abort) expect(run).toThrow('abort');
                  else {
                    run();
                    model.clear();
                    for (const [k, v] of view) model.set(k, v);
                  }
                  break;
                }
                case 'putIf': {
                  const entry = db.getEntry(op.k);
                  expect(entry?.value).toEqual(model.get(hex(op.k)));
                  const version = entry === undefined ? null : entry.version;
                  const ifVersion = op.stale ? (version === null ? 1 : version + 1) : version; // stale: any other version
                  const written = db.put(op.k, op.v, { ifVersion });
                  expect(written).toBe(!op.stale);
                  if (written) model.set(hex(op.k), op.v);
                  break;
                }
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
                  for (const { snap, model: then } of snaps) {
                    const first = then.keys().next();
                    if (!first.done) expect(snap.get(Buffer.from(first.value, 'hex'))).toEqual(then.get(first.value));
                  }
                  db.close(); // releases every snapshot and range of the handle
                  for (const { snap } of snaps) expect(() => snap.get('x')).toThrow(/ECLOSED/);
                  snaps = [];
                  ranges = [];
                  media = media.crashImage({ mode: 'none' });
                  db = openMedia(media);
                  expect(db.recovery?.droppedRecords).toBe(0);
                  break;
              }
            }
            expect(db.stats().snapshots).toBe(snaps.length + ranges.length);
            for (const { snap } of snaps) snap.close();
            for (const { range } of ranges) range.return!();
            expect(db.stats().snapshots).toBe(0);
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
