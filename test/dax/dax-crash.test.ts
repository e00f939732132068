/**
 * Crash consistency of the DAX layer on SimMedia: random writes, write faults + view
 * stores, writebacks, truncates and punches on three objects; at random fences (inside
 * every operation) a crash image keeps a random subset of the pending 8-byte words. Each
 * image is recovered and checked:
 *   - recovery succeeds, the allocator agrees with the owner table, no (object, page) is
 *     owned twice, and nothing leaks (every owned data block is reachable from the tree);
 *   - every page not modified since its last returned write/writeback/truncate/punch holds
 *     exactly the model bytes (zeros past a durable truncate or inside a durable hole).
 * Not covered: concurrency (single thread), huge pages, poison.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, mulberry32, type SimMedia } from '../../src/device/sim-media.js';
import { DaxSpace } from '../../src/dax/space.js';
import { MIN_OBJECT_ID } from '../../src/dax/layout.js';
import { replayHint, seedFromEnv } from './helpers.js';

const PAGE = 4096;
const MAX_PAGES = 6;
const IDS = [16, 17, 18];
const OPS = 250;

/** touched: pages an operation in flight may change; viewDirty: pages stored to through a view since the last writeback. */
interface Model { bytes: Uint8Array; size: number; touched: Set<number>; viewDirty: Set<number>; sizeStable: boolean }

function checkImage(image: SimMedia, models: Map<number, Model>, problems: string[]): void {
  const space = DaxSpace.openMedia(image);
  try {
    const audit = space.device.audit();
    if (audit.length > 0) problems.push(`audit: ${audit.join('; ')}`);
    const seen = new Set<string>();
    let owned = 0;
    space.device.forEachOwned((_b, owner, index) => {
      if (owner < MIN_OBJECT_ID) return;
      owned++;
      const k = `${owner}:${index}`;
      if (seen.has(k)) problems.push(`page ${k} owned twice`);
      seen.add(k);
    });
    if (owned !== space.tree.count()) problems.push(`leak: ${owned} owned data blocks, ${space.tree.count()} entries`);
    for (const [id, m] of models) {
      if (!space.has(id)) {
        problems.push(`object ${id} missing`);
        continue;
      }
      const obj = space.object(id);
      if (m.sizeStable && obj.size !== m.size) problems.push(`object ${id}: size ${obj.size}, model ${m.size}`);
      const got = obj.read(0, obj.size);
      for (let p = 0; p * PAGE < Math.min(obj.size, m.size); p++) {
        if (m.touched.has(p) || m.viewDirty.has(p)) continue;
        const end = Math.min((p + 1) * PAGE, obj.size, m.size);
        for (let i = p * PAGE; i < end; i++) {
          if (got[i] !== m.bytes[i]) {
            problems.push(`object ${id} page ${p} byte ${i}: ${got[i]} != model ${m.bytes[i]}`);
            break;
          }
        }
      }
    }
  } finally {
    space.close();
    image.dispose();
  }
}

function run(seed: number): { images: number; problems: string[] } {
  const rand = mulberry32(seed);
  const media = createSimMedia(8 * 1024 * 1024);
  const space = DaxSpace.create(media);
  const models = new Map<number, Model>();
  for (const id of IDS) {
    space.object(id, { create: true, size: 3 * PAGE });
    models.set(id, { bytes: new Uint8Array(MAX_PAGES * PAGE), size: 3 * PAGE, touched: new Set(), viewDirty: new Set(), sizeStable: true });
  }
  const problems: string[] = [];
  let images = 0;
  media.onFence(() => {
    if (rand() < 0.9 && problems.length === 0) {
      images++;
      checkImage(media.crashImage({ mode: 'random', seed: (rand() * 2 ** 32) >>> 0 }), models, problems);
    }
  });
  const int = (n: number): number => Math.floor(rand() * n);
  for (let op = 0; op < OPS && problems.length === 0; op++) {
    const id = IDS[int(IDS.length)];
    const m = models.get(id)!;
    const obj = space.object(id);
    const kind = int(5);
    if (kind === 0 && m.size > 0) {
      const off = int(m.size);
      const len = 1 + int(Math.min(m.size - off, 2 * PAGE));
      const data = new Uint8Array(len).map(() => int(256));
      const pages = [Math.floor(off / PAGE), Math.floor((off + len - 1) / PAGE)];
      for (let p = pages[0]; p <= pages[1]; p++) m.touched.add(p);
      obj.write(off, data);
      m.bytes.set(data, off);
      for (let p = pages[0]; p <= pages[1]; p++) m.touched.delete(p);
    } else if (kind === 1 && m.size > 0) {
      const p = int(Math.ceil(m.size / PAGE));
      m.viewDirty.add(p);
      const view = obj.fault(p, { write: true });
      const at = int(PAGE - 16);
      for (let i = 0; i < 16; i++) view[at + i] = m.bytes[p * PAGE + at + i] = int(256);
      if (p * PAGE + at + 16 > m.size) m.bytes.fill(0, m.size, (p + 1) * PAGE); // bytes past the size are not kept
    } else if (kind === 2) {
      const dirty = [...m.viewDirty];
      for (const p of dirty) m.touched.add(p);
      obj.writeback();
      for (const p of dirty) m.touched.delete(p);
      m.viewDirty.clear();
    } else if (kind === 3) {
      const size = int(MAX_PAGES * PAGE + 1);
      m.sizeStable = false;
      const first = Math.floor(Math.min(size, m.size) / PAGE);
      for (let p = first; p < MAX_PAGES; p++) m.touched.add(p);
      obj.truncate(size);
      if (size < m.size) m.bytes.fill(0, size);
      m.size = size;
      m.sizeStable = true;
      for (const p of [...m.viewDirty]) if (p * PAGE >= size) m.viewDirty.delete(p);
      for (let p = first; p < MAX_PAGES; p++) m.touched.delete(p);
    } else if (m.size > 0) {
      const off = int(m.size);
      const len = 1 + int(m.size - off);
      for (let p = Math.floor(off / PAGE); p <= Math.floor((off + len - 1) / PAGE); p++) m.touched.add(p);
      obj.punchHole(off, len);
      m.bytes.fill(0, off, off + len);
      for (let p = Math.ceil(off / PAGE); (p + 1) * PAGE <= off + len; p++) m.viewDirty.delete(p);
      for (let p = Math.floor(off / PAGE); p <= Math.floor((off + len - 1) / PAGE); p++) m.touched.delete(p);
    }
  }
  space.close();
  return { images, problems };
}

describe('dax crash consistency', () => {
  it('after recovery every durable page holds what was written, nothing owned twice, nothing leaks', () => {
    const seed = seedFromEnv();
    let images = 0;
    for (let round = 0; round < 3; round++) {
      const r = run((seed + round) >>> 0);
      images += r.images;
      if (r.problems.length > 0) throw new Error(`${r.problems.slice(0, 5).join('\n')}\n${replayHint(seed, 'test/dax/dax-crash.test.ts')}`);
    }
    expect(images).toBeGreaterThan(1000);
  });
});
