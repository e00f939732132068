/**
 * The note the index keeps beside an entry's offset (segment-table.ts entryNote: the entry's cost
 * and whether it has flags, so that an overwrite counts the old entry dead and retires its large
 * value without reading its header) always describes the entry at that offset, or is 0 (none):
 * every way a key's offset changes must store the new entry's note or none. A seeded mix of puts
 * of random sizes (some past the large-value threshold), overwrites, deletes (with and without a
 * snapshot held, so tombstones), batches, transactions, compactions and reopens (which load
 * offsets without notes); after each phase every key's note is compared with its entry's
 * header, and some keys must carry one. Ends with a reopen that must equal the model and a clean
 * block audit.
 */
import { describe, expect, it } from 'vitest';
import type { KvStore } from '../../src/kv/index.js';
import type { DaxSpace } from '../../src/dax/space.js';
import { grab, unlock, valueNote } from '../../src/index/entry-lock.js';
import { indexKeyOf } from '../../src/kv/keys.js';
import { entryFlags, entryKeyLength, entryValueLength, type MediaViews } from '../../src/kv/records.js';
import { entryCost, entryNote } from '../../src/kv/segment-table.js';
import { withReopenedModel } from '../helpers/model-run.js';
import { mixedValue } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-entry-notes.test.ts';

/** Keys whose note disagrees with their entry's header, and how many keys carry a note. */
function notesOff(db: KvStore, keys: Iterable<string>): { off: string[]; noted: number } {
  const { space, views } = db as unknown as { space: DaxSpace; views: MediaViews };
  const tree = space.tree;
  const off: string[] = [];
  let noted = 0;
  for (const k of keys) {
    const ref = grab(tree, indexKeyOf(k, 'test'));
    try {
      const note = valueNote(tree, ref);
      if (ref.state !== 'value' || note === 0) continue;
      noted++;
      const at = ref.value;
      const want = entryNote(entryCost(entryKeyLength(views, at), entryValueLength(views, at)), entryFlags(views, at));
      if (note !== want) off.push(`${k}: note ${note.toString(16)}, entry ${want.toString(16)}`);
    } finally {
      unlock(tree, ref);
    }
  }
  return { off, noted };
}

function mixedWrites(db: KvStore, model: Map<string, Buffer>, random: () => number, ops: number, keys: number): void {
  const key = (): string => `k${Math.floor(random() * keys)}`;
  const value = (i: number): Buffer => mixedValue(random, i, 0.1);
  for (let i = 0; i < ops; i++) {
    const r = random();
    if (r < 0.75) {
      const k = key();
      const v = value(i);
      db.put(k, v);
      model.set(k, v);
    } else if (r < 0.87) {
      const k = key();
      const snap = random() < 0.3 ? db.snapshot() : undefined; // a held snapshot keeps the DEL as a tombstone
      expect(db.delete(k)).toBe(model.delete(k));
      snap?.close();
    } else if (r < 0.94) {
      const items = Array.from({ length: 1 + Math.floor(random() * 6) }, () => ({ k: key(), del: random() < 0.2 }));
      const batch = items.map(({ k, del }) =>
        del ? { type: 'del' as const, key: k } : { type: 'put' as const, key: k, value: value(i) },
      );
      db.batch(batch);
      for (const op of batch) {
        if (op.type === 'del') model.delete(op.key);
        else model.set(op.key, op.value);
      }
    } else if (r < 0.995) {
      const a = key();
      const b = key();
      const va = value(i);
      db.transactionSync((txn) => {
        txn.get(b);
        txn.put(a, va);
        if (a !== b) txn.delete(b);
      });
      model.set(a, va);
      if (a !== b) model.delete(b);
    } else db.compact();
  }
}

function run(seed: number): void {
  withReopenedModel('kv-entry-notes', { size: 96 * 2 ** 20, autoCompact: false }, (store) => {
    const random = rng(seed);
    const model = new Map<string, Buffer>();
    const keys = 200 + Math.floor(random() * 2000);
    const all = Array.from({ length: keys }, (_, i) => `k${i}`);
    const ops = scaled(6_000);
    for (let phase = 0; phase < 3; phase++) {
      mixedWrites(store.db, model, random, ops, keys);
      const { off, noted } = notesOff(store.db, all);
      expect(off).toEqual([]);
      expect(noted).toBeGreaterThan(0);
      store.reopen();
    }
    return model;
  });
}

describe("the index's note of each entry", () => {
  it('describes the entry at its offset, after puts, deletes, batches, transactions, compactions and reopens', async () => {
    await withSeed(FILE, run);
  }, 120_000);
});
