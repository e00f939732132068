/**
 * Memory failure inside a 2 MiB extent: one poisoned 4 KiB block fails every read, fault
 * and view that covers it — small views and read() of that page, any 2 MiB view of the
 * extent, write faults of that page — while the other 511 pages stay readable and writable;
 * the huge entry is kept (never split, never marked); recovery keeps it that way; punching
 * the extent frees every block but the bad one, which is never handed out again.
 * DAXSTORE_TEST_BREAK=dax-poison-page-only (a 2 MiB view checks only its faulted page)
 * must go red.
 */
import { describe, expect, it } from 'vitest';
import { blockOfValue, isHuge, pageKey } from '../../src/dax/layout.js';
import { setBroken } from '../../src/test-break.js';
import { DaxSpace, type MemoryFailureEvent } from '../../src/dax/space.js';
import type { DaxObject } from '../../src/dax/object.js';
import { expectBaseline, fillPattern, simSpace, MIB } from './helpers.js';
import { codeOf } from '../helpers/expect-code.js';

const PAGE = 4096;
const EXTENT_PAGES = 512;
const BAD = 37; // the poisoned page of the extent

function pageBytes(p: number): Uint8Array {
  const b = new Uint8Array(PAGE);
  fillPattern(b, p);
  return b;
}

/** Everything that must fail or hold after page BAD's block was poisoned; returns what did not. */
function violations(obj: DaxObject): string[] {
  const { space } = obj;
  const out: string[] = [];
  const expectEio = (what: string, f: () => unknown): void => {
    const code = codeOf(f);
    if (code !== 'EIO') out.push(`${what}: ${code ?? 'returned bytes'}, not EIO`);
  };
  expectEio('read() of the poisoned page', () => obj.read(BAD * PAGE + 100, 10));
  expectEio('read() spanning the poisoned page', () => obj.read((BAD - 1) * PAGE, 3 * PAGE));
  expectEio('small fault view of the poisoned page', () => space.read(() => obj.fault(BAD)));
  expectEio('2 MiB view faulted at another page', () => space.read(() => obj.fault(BAD + 1, { huge: true })));
  expectEio('2 MiB view faulted at page 0', () => space.read(() => obj.fault(0, { huge: true })));
  expectEio('write fault of the poisoned page', () => space.read(() => obj.fault(BAD, { write: true })));
  expectEio('write() of the poisoned page', () => obj.write(BAD * PAGE, new Uint8Array(8)));
  for (const p of [0, BAD - 1, BAD + 1, EXTENT_PAGES - 1]) {
    const want = pageBytes(p);
    const got = obj.read(p * PAGE, PAGE);
    if (!got.every((b, i) => b === want[i])) out.push(`page ${p} changed`);
    const view = space.read(() => obj.fault(p).slice());
    if (!view.every((b, i) => b === want[i])) out.push(`small view of page ${p} changed`);
  }
  const info = space.tree.entryInfo(pageKey(obj.id, 0));
  if (info?.state !== 'value' || !isHuge(info.value))
    out.push(`extent entry is ${info?.state ?? 'gone'}, not a huge value`);
  return out;
}

function setUp(): { space: DaxSpace; obj: DaxObject; head: number; media: ReturnType<typeof simSpace>['media'] } {
  const { media, space } = simSpace(16 * MIB);
  const obj = space.object(80, { create: true, size: EXTENT_PAGES * PAGE });
  obj.fault(0, { write: true, huge: true });
  for (const p of [0, BAD - 1, BAD, BAD + 1, EXTENT_PAGES - 1]) obj.write(p * PAGE, pageBytes(p));
  const info = space.tree.entryInfo(pageKey(80, 0))!;
  expect(isHuge(info.value)).toBe(true);
  return { space, obj, head: blockOfValue(info.value), media };
}

describe('memory failure of a 4 KiB block inside a 2 MiB extent', () => {
  it('fails the page and every view over it with EIO; the rest of the extent is intact; the block is never reused', () => {
    const { space, obj, head, media } = setUp();
    const bad = head + BAD;
    const events: MemoryFailureEvent[] = [];
    space.on('memory-failure', (e: MemoryFailureEvent) => events.push(e));
    const offset = space.device.blockOffset(bad) + 123;
    space.memoryFailure(offset);
    expect(events).toEqual([{ deviceOffset: offset, block: bad, objectId: 80, index: BAD }]);
    expect(violations(obj)).toEqual([]);
    // Other pages are still writable (small write faults on the huge entry), and writeback flushes the extent.
    obj.write((BAD + 1) * PAGE, pageBytes(BAD + 1));
    space.read(() => obj.fault(BAD + 2, { write: true }).set(pageBytes(BAD + 2)));
    expect(obj.writeback().bytes).toBe(EXTENT_PAGES * PAGE);
    expect(obj.read((BAD + 2) * PAGE, PAGE)).toEqual(pageBytes(BAD + 2));

    // Recovery keeps the extent whole: one poisoned page reported, same answers.
    space.close();
    const again = DaxSpace.openMedia(media.crashImage({ mode: 'none' }));
    expect(again.recovery).toMatchObject({ pages: 1, hugePages: 1, poisonedPages: 1 });
    const obj2 = again.object(80);
    expect(violations(obj2)).toEqual([]);

    // Punching the extent frees all but the bad block; nothing hands it out again.
    const before = again.device.stats().freeBlocks;
    obj2.punchHole(0, EXTENT_PAGES * PAGE);
    again.collect();
    expect(again.device.stats().freeBlocks - before).toBe(EXTENT_PAGES - 1);
    expect(again.device.badBlocks()).toContain(bad);
    const filler = again.object(81, { create: true, size: again.device.dataBlocks * PAGE });
    const badOffset = again.device.blockOffset(bad);
    let p = 0;
    for (; ; p++) {
      const code = codeOf(() => {
        if (filler.fault(p, { write: true }).byteOffset === badOffset)
          throw new Error(`bad block ${bad} handed out again`);
      });
      if (code === 'ENOSPC') break;
      expect(code).toBeUndefined();
    }
    expect(p).toBeGreaterThan(EXTENT_PAGES);
    filler.remove();
    again.collect();
    obj2.fault(0, { write: true, huge: true }); // a fresh extent: never the one holding the bad block
    const fresh = again.tree.entryInfo(pageKey(80, 0))!;
    expect(isHuge(fresh.value)).toBe(true);
    expect(bad >= blockOfValue(fresh.value) && bad < blockOfValue(fresh.value) + EXTENT_PAGES).toBe(false);
    expect(violations(obj2).length).toBeGreaterThan(0); // a fresh extent: the old bytes are gone, the page is readable again
    expect(obj2.read(BAD * PAGE, PAGE).every((b) => b === 0)).toBe(true);
    obj2.remove();
    expectBaseline(again);
    again.close();
  });

  it('goes red with DAXSTORE_TEST_BREAK=dax-poison-page-only', () => {
    const { space, obj, head } = setUp();
    space.memoryFailure(space.device.blockOffset(head + BAD));
    setBroken('dax-poison-page-only', true);
    try {
      expect(violations(obj).filter((v) => v.startsWith('2 MiB view'))).toHaveLength(2);
    } finally {
      setBroken('dax-poison-page-only', false);
    }
    space.close();
  });
});
