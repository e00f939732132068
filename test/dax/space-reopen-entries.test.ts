/**
 * An open puts exactly the owner table's reachable pages into the tree (space.ts recover, one
 * bulk load): after a seeded mix of small and huge pages over objects whose ids need more than
 * 32 bits, poisoned small pages, a poisoned block inside a huge extent, a second block owned as
 * an existing page, and blocks owned by staging, by no object and past an object's size, a
 * reopen has one entry per page with the block the owner table's first record of it names,
 * poisoned small pages still POISONED (reads fail with EIO), every other page's bytes intact,
 * the rest freed, and the allocator agreeing with the owner table.
 * Red with DAXSTORE_TEST_BREAK=dax-recover-poison-unmarked (the open loads every entry as a
 * value: a poisoned page reads its bytes again).
 * Not covered here: damaged owner records (test/device/owner-table-damage.test.ts) and object
 * records (object-table-damage.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { DaxSpace } from '../../src/dax/space.js';
import { blockOfValue, isHuge, pageKey, OWNER_STAGING } from '../../src/dax/layout.js';
import { withBroken } from '../../src/test-break.js';
import { expectBaseline, simSpace, MIB } from './helpers.js';
import { rng, withSeed } from '../helpers/seed.js';
import { codeOf } from '../helpers/expect-code.js';

const FILE = 'test/dax/space-reopen-entries.test.ts';
const PAGE = 4096;
const EXTENT_PAGES = 512;
const IDS = [16, 77, 2 ** 33 + 5, 2 ** 40 - 3];

interface Entry {
  block: number;
  huge: boolean;
  state: string;
}

/** Every page entry of `ids` in `space`'s tree: `key id/page` -> block, huge, state. */
function entriesOf(space: DaxSpace, pages: Map<number, Set<number>>): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const [id, set] of pages)
    for (const p of set) {
      const info = space.tree.entryInfo(pageKey(id, p));
      if (info === undefined) continue;
      out.set(`${id}/${p}`, { block: blockOfValue(info.value), huge: isHuge(info.value), state: info.state });
    }
  return out;
}

const stamp = (id: number, p: number): number => ((id % 1000) * 7919 + p) | 0;

async function reopenAgrees(seed: number): Promise<{ poisoned: string[]; readable: string[] }> {
  const r = rng(seed);
  const { media, space } = simSpace(64 * MIB);
  const pages = new Map<number, Set<number>>();
  const sizes = new Map<number, number>();
  for (const id of IDS) {
    const size = (EXTENT_PAGES * 2 + Math.floor(r() * 300)) * PAGE;
    sizes.set(id, size);
    const obj = space.object(id, { create: true, size });
    const set = new Set<number>();
    pages.set(id, set);
    if (r() < 0.75) {
      const at = r() < 0.5 ? 0 : EXTENT_PAGES; // a huge extent at an aligned index
      obj.fault(at, { write: true, huge: true });
      set.add(at);
    }
    for (let n = 0; n < 40; n++) {
      const p = Math.floor(r() * (size / PAGE));
      const covered = [...set].some(
        (h) => isHuge(space.tree.lookup(pageKey(id, h)) ?? 0) && p >= h && p < h + EXTENT_PAGES,
      );
      if (covered) continue;
      obj.write(p * PAGE, new Uint8Array(new Int32Array([stamp(id, p)]).buffer));
      set.add(p);
    }
    for (const p of set) obj.write(p * PAGE, new Uint8Array(new Int32Array([stamp(id, p)]).buffer));
    obj.writeback();
  }
  // Poison two small pages and one block inside a huge extent (if there is one).
  const small = [...pages]
    .flatMap(([id, set]) => [...set].map((p) => [id, p] as const))
    .filter(([id, p]) => {
      const v = space.tree.lookup(pageKey(id, p));
      return v !== undefined && !isHuge(v);
    });
  const poisoned: string[] = [];
  for (let n = 0; n < 2; n++) {
    const [id, p] = small.splice(Math.floor(r() * small.length), 1)[0];
    space.memoryFailure(space.device.blockOffset(blockOfValue(space.tree.lookup(pageKey(id, p))!)));
    poisoned.push(`${id}/${p}`);
  }
  const hugeOwner = [...pages].find(([id, set]) => [...set].some((p) => isHuge(space.tree.lookup(pageKey(id, p))!)));
  if (hugeOwner !== undefined) {
    const [id, set] = hugeOwner;
    const head = [...set].find((p) => isHuge(space.tree.lookup(pageKey(id, p))!))!;
    const bad = 1 + Math.floor(r() * (EXTENT_PAGES - 1));
    space.memoryFailure(space.device.blockOffset(blockOfValue(space.tree.lookup(pageKey(id, head))!) + bad));
  }
  const before = entriesOf(space, pages);
  // Owner records the open must not turn into entries, or must resolve: a second block owned as
  // an existing small page (the record with the lower block wins), staging, no object, past a size.
  const [dupId, dupPage] = small[Math.floor(r() * small.length)];
  const dup = space.device.allocate(dupId, dupPage, 0);
  const first = before.get(`${dupId}/${dupPage}`)!;
  if (dup < first.block) before.set(`${dupId}/${dupPage}`, { ...first, block: dup });
  space.device.allocate(OWNER_STAGING, 3, 0);
  space.device.allocate(12_345, 0, 0);
  space.device.allocate(IDS[0], sizes.get(IDS[0])! / PAGE + 7, 0);
  const stats = space.stats();
  space.close();

  const again = DaxSpace.openMedia(media.crashImage({ mode: 'none' }));
  try {
    const rec = again.recovery!;
    expect(rec).toMatchObject({
      objects: IDS.length,
      pages: before.size,
      hugePages: [...before.values()].filter((e) => e.huge).length,
      freedStaging: 1,
      freedDeadObject: 1,
      freedBeyondSize: 1,
      freedDuplicate: 1,
    });
    expect(again.tree.count()).toBe(stats.entries);
    const after = entriesOf(again, pages);
    const changed = [...new Set([...before.keys(), ...after.keys()])]
      .filter((k) => JSON.stringify(before.get(k)) !== JSON.stringify(after.get(k)))
      .map((k) => `${k}: ${JSON.stringify(before.get(k))} -> ${JSON.stringify(after.get(k))}`);
    if (changed.length > 0) throw new Error(`entries the reopen changed: ${changed.join('; ')}`);
    const readable: string[] = [];
    for (const [id, set] of pages) {
      const obj = again.object(id);
      for (const p of set) {
        const key = `${id}/${p}`;
        if (key === `${dupId}/${dupPage}`) continue; // the kept block may be the fresh one
        const code = codeOf(() => obj.read(p * PAGE, 4));
        if (code === undefined && new Int32Array(obj.read(p * PAGE, 4).slice().buffer)[0] === stamp(id, p))
          readable.push(key);
        else if (code !== 'EIO') throw new Error(`page ${key}: ${code ?? 'wrong bytes'}`);
      }
    }
    expectBaseline(again);
    return { poisoned, readable };
  } finally {
    again.close();
  }
}

describe('an open loads the page entries the owner table gives', () => {
  it('one entry per reachable page, poisoned pages still poisoned, the rest freed (seeded)', async () => {
    for (let round = 0; round < 3; round++) {
      const { poisoned, readable } = await withSeed(FILE, reopenAgrees);
      for (const key of poisoned) expect(readable).not.toContain(key);
      expect(readable.length).toBeGreaterThan(20);
    }
  });

  it('goes red with DAXSTORE_TEST_BREAK=dax-recover-poison-unmarked', async () => {
    await withBroken('dax-recover-poison-unmarked', async () => {
      await expect(withSeed(FILE, reopenAgrees)).rejects.toThrow(/"state":"poisoned"\} -> \{[^}]*"state":"value"/);
    });
  });
});
