/**
 * Memory failure under concurrency: one worker rewrites pages [0, 16) of an object (each
 * write fills a whole page with a byte whose low nibble names the page), two workers read
 * random pages through read() and through pinned fault views, while the main thread
 * poisons blocks of written and of read-only pages (16..31). Checked:
 *   - a read of a read-only page that starts after memoryFailure() returned gets EIO, never
 *     bytes; no read ever returns a byte of another page (or garbage);
 *   - afterwards every page reads as its last write (or, poisoned after it, EIO); unpoisoned
 *     read-only pages are intact;
 *   - each poisoned block is on the bad-block list, mapped by no live entry, and never
 *     handed out again: filling the rest of the device never returns it.
 */
import { describe, expect, it } from 'vitest';
import { blockOfValue, pageKey } from '../../src/dax/layout.js';
import { ROLE_BASE, fillByte } from '../workers/dax-churn-layout.js';
import { expectBadBlocksNeverHandedOut, expectBaseline, simSpace, MIB } from './helpers.js';
import { codeOf } from '../helpers/expect-code.js';
import { sleepMs, startChurn } from './churn-harness.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

const PAGES = 32;
const WRITTEN = 16; // pages [0, WRITTEN) are rewritten by the worker; the rest are read-only
const FILE = 'test/dax/memory-failure-workers.test.ts';

interface ReaderResult {
  reads: number;
  eio: number;
  violations: string[];
}

describe('memory failure under concurrent readers and writers', () => {
  it('readers of a poisoned page get EIO, never bytes; the rest stays intact; bad blocks are never reused', async () => {
    const seed = testSeed();
    const hint = replayHint(seed, FILE);
    const rand = rng(seed);
    const { space } = simSpace(8 * MIB);
    const obj = space.object(70, { create: true, size: PAGES * 4096 });
    for (let p = WRITTEN; p < PAGES; p++) obj.write(p * 4096, new Uint8Array(4096).fill(fillByte(p, 1)));
    const churn = startChurn(space, PAGES, seed, [
      { role: 'mf-writer', objectId: 70, from: 0, to: WRITTEN },
      { role: 'mf-reader', objectId: 70, from: WRITTEN },
      { role: 'mf-reader', objectId: 70, from: WRITTEN },
    ]);
    const lastWrite = new Int32Array(churn.control.buffer, 4 * ROLE_BASE, PAGES);
    const poisonedFlag = new Int32Array(churn.control.buffer, 4 * (ROLE_BASE + PAGES), PAGES);
    await churn.ready();
    const badBlocks = new Set<number>();
    const poisonedAfter = new Set<number>(); // pages whose latest poison came after nothing rewrote them
    for (let n = 0; n < 16; n++) {
      await sleepMs(30);
      const p = n % 2 === 0 ? Math.floor(rand() * WRITTEN) : WRITTEN + Math.floor(rand() * (PAGES - WRITTEN));
      const info = space.tree.entryInfo(pageKey(70, p));
      if (info === undefined || info.state !== 'value') continue;
      const block = blockOfValue(info.value);
      const event = space.memoryFailure(space.device.blockOffset(block) + Math.floor(rand() * 4096));
      badBlocks.add(block);
      if (event.objectId !== null) expect([event.objectId, event.index], hint).toEqual([70, p]);
      if (p >= WRITTEN) Atomics.store(poisonedFlag, p, 1);
      poisonedAfter.add(p);
    }
    const [writer, ...readers] = await churn.stop();
    expect(
      [writer, ...readers].filter((r) => typeof r === 'string'),
      `${hint} (a timeout: see the hang report above)`,
    ).toEqual([]);
    expect(writer, hint).not.toHaveProperty('error');
    for (const r of readers) expect(r, hint).not.toHaveProperty('error');
    const rs = readers as ReaderResult[];
    expect(
      rs.flatMap((r) => r.violations),
      hint,
    ).toEqual([]);
    expect(rs[0].eio + rs[1].eio, hint).toBeGreaterThan(0);
    expect(badBlocks.size).toBeGreaterThan(4);

    for (let p = 0; p < PAGES; p++) {
      const info = space.tree.entryInfo(pageKey(70, p));
      const code = codeOf(() => obj.read(p * 4096, 4096));
      if (info?.state === 'poisoned') {
        expect(code, `page ${p} is poisoned: ${hint}`).toBe('EIO');
        expect(poisonedAfter.has(p)).toBe(true);
        continue;
      }
      expect(code, `page ${p}: ${hint}`).toBeUndefined();
      const want = p >= WRITTEN ? fillByte(p, 1) : lastWrite[p];
      expect(
        obj.read(p * 4096, 4096).every((b) => b === want),
        `page ${p} holds its last write ${want}: ${hint}`,
      ).toBe(true);
      if (info !== undefined) expect(badBlocks.has(blockOfValue(info.value)), `page ${p} maps a bad block`).toBe(false);
    }
    for (const b of badBlocks) expect(space.device.badBlocks()).toContain(b);

    // Never reused: hand out every free block and none of them is a bad one.
    space.collect();
    expect(expectBadBlocksNeverHandedOut(space, badBlocks, 71, hint)).toBeGreaterThan(1000);
    expectBaseline(space);
    space.close();
  });
});
