/**
 * Memory failure (R3 path): poisoning a mapped page marks its entry POISONED, quarantines
 * the block, emits 'memory-failure'; reads fail with EIO, never bytes; a write fault
 * rewrites the page on a fresh block; the poisoned block is never handed out again; rmap
 * finds owners and returns null for free blocks.
 */
import { describe, expect, it } from 'vitest';
import { blockOfValue, pageKey } from '../../src/dax/layout.js';
import type { MemoryFailureEvent } from '../../src/dax/space.js';
import { DaxSpace } from '../../src/dax/space.js';
import { simSpace } from './helpers.js';

describe('memory failure', () => {
  it('poisoned page reads EIO until rewritten; the block is quarantined; the rest is intact', () => {
    const { media, space } = simSpace();
    const obj = space.object(70, { create: true, size: 3 * 4096 });
    obj.write(0, new Uint8Array(3 * 4096).fill(5));
    const block = blockOfValue(space.tree.entryInfo(pageKey(70, 1))!.value);
    const offset = space.device.blockOffset(block);
    const r = space.rmap(offset + 100)!;
    expect([r.objectId, r.index, r.block]).toEqual([70, 1, block]);
    r.release();
    const events: MemoryFailureEvent[] = [];
    space.on('memory-failure', (e: MemoryFailureEvent) => events.push(e));
    space.memoryFailure(offset);
    expect(events).toEqual([{ deviceOffset: offset, block, objectId: 70, index: 1 }]);
    expect(() => obj.read(4096, 10)).toThrow(expect.objectContaining({ code: 'EIO' }));
    expect(() => space.read(() => obj.fault(1))).toThrow(expect.objectContaining({ code: 'EIO' }));
    expect(obj.read(0, 4096).every((b) => b === 5)).toBe(true);
    expect(obj.read(2 * 4096, 4096).every((b) => b === 5)).toBe(true);
    const fresh = obj.fault(1, { write: true });
    expect(fresh.byteOffset).not.toBe(offset);
    expect(fresh.every((b) => b === 0)).toBe(true);
    space.collect();
    expect(space.device.badBlocks()).toContain(block);
    const filler = space.object(71, { create: true, size: 200 * 4096 });
    for (let p = 0; p < 200; p++) expect(filler.fault(p, { write: true }).byteOffset).not.toBe(offset);
    expect(space.rmap(space.device.blockOffset(space.device.dataBlocks - 1))).toBeNull();
    expect(space.device.audit()).toEqual([]);
    space.close();
    const again = DaxSpace.openMedia(media.crashImage({ mode: 'none' }));
    expect(again.device.badBlocks()).toContain(block);
    again.close();
  });
});
