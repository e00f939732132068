/**
 * Memory failure inside a 2 MiB extent under concurrency: one worker rewrites pages
 * [0, 256) of a 512-page object mapped by ONE huge entry (whole-page fills whose low nibble
 * names the page), two workers read random pages through read(), small fault views and
 * 2 MiB views, while the main thread poisons random 4 KiB blocks inside the extent (half in
 * written pages, half in read-only pages 256..511). Checked:
 *   - a read of a read-only page poisoned before the read started gets EIO, never bytes,
 *     and so does every 2 MiB view taken after any page of the extent was poisoned; no read
 *     returns a byte of another page;
 *   - afterwards the entry is still one huge value; each poisoned page reads EIO; every
 *     other page holds its last write (read-only pages their fill);
 *   - removing the object frees every block but the bad ones, which are never handed out
 *     again (the rest of the device is filled).
 * DAXSTORE_TEST_BREAK=dax-poison-page-only (a 2 MiB view checks only its own page) must go red.
 */
import { describe, expect, it } from 'vitest';
import { blockOfValue, isHuge, pageKey } from '../../src/dax/layout.js';
import { ROLE_BASE, fillByte } from '../workers/dax-churn-layout.js';
import { expectBadBlocksNeverHandedOut, expectBaseline, simSpace, MIB } from './helpers.js';
import { codeOf } from '../helpers/expect-code.js';
import { sleepMs, startChurn } from './churn-harness.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

const PAGES = 512;
const WRITTEN = 256;
const POISONS = 12;
const FILE = 'test/dax/memory-failure-huge-workers.test.ts';

interface ReaderResult {
  reads: number;
  eio: number;
  violations: string[];
}

async function scenario(seed: number, breakName?: 'dax-poison-page-only'): Promise<ReaderResult[]> {
  const hint = replayHint(seed, FILE);
  const rand = rng(seed);
  const { space } = simSpace(16 * MIB);
  const obj = space.object(90, { create: true, size: PAGES * 4096 });
  obj.fault(0, { write: true, huge: true });
  const head = blockOfValue(space.tree.entryInfo(pageKey(90, 0))!.value);
  for (let p = WRITTEN; p < PAGES; p++) obj.write(p * 4096, new Uint8Array(4096).fill(fillByte(p, 1)));
  const churn = startChurn(
    space,
    PAGES,
    seed,
    [
      { role: 'mf-writer', objectId: 90, from: 0, to: WRITTEN, huge: true },
      { role: 'mf-reader', objectId: 90, from: WRITTEN, huge: true },
      { role: 'mf-reader', objectId: 90, from: WRITTEN, huge: true },
    ],
    breakName,
  );
  const lastWrite = new Int32Array(churn.control.buffer, 4 * ROLE_BASE, PAGES);
  const poisonedFlag = new Int32Array(churn.control.buffer, 4 * (ROLE_BASE + PAGES), PAGES);
  await churn.ready();
  const bad = new Set<number>();
  for (let n = 0; n < POISONS; n++) {
    await sleepMs(25);
    const p = n % 2 === 0 ? Math.floor(rand() * WRITTEN) : WRITTEN + Math.floor(rand() * (PAGES - WRITTEN));
    const event = space.memoryFailure(space.device.blockOffset(head + p) + Math.floor(rand() * 4096));
    expect([event.objectId, event.index], hint).toEqual([90, p]);
    bad.add(p);
    if (p >= WRITTEN) Atomics.store(poisonedFlag, p, 1);
  }
  await sleepMs(50); // readers meet the last poison too
  const [writer, ...readers] = await churn.stop();
  expect(writer, hint).not.toHaveProperty('error');
  for (const r of readers) expect(r, hint).not.toHaveProperty('error');
  const rs = readers as ReaderResult[];
  if (process.env['DAX_DEBUG'] !== undefined)
    console.log(
      JSON.stringify({ breakName, writer, readers: rs.map((r) => ({ ...r, violations: r.violations.slice(0, 2) })) }),
    );
  if (breakName !== undefined) {
    space.close();
    return rs;
  }

  const info = space.tree.entryInfo(pageKey(90, 0));
  expect(
    info?.state === 'value' && isHuge(info.value) && blockOfValue(info.value) === head,
    `the extent entry is kept: ${hint}`,
  ).toBe(true);
  for (let p = 0; p < PAGES; p++) {
    const code = codeOf(() => obj.read(p * 4096, 4096));
    if (bad.has(p)) {
      expect(code, `page ${p} is poisoned: ${hint}`).toBe('EIO');
      continue;
    }
    expect(code, `page ${p}: ${hint}`).toBeUndefined();
    const want = p >= WRITTEN ? fillByte(p, 1) : lastWrite[p];
    expect(
      obj.read(p * 4096, 4096).every((b) => b === want),
      `page ${p} holds its last write ${want}: ${hint}`,
    ).toBe(true);
  }
  expect(
    codeOf(() => space.read(() => obj.fault(0, { huge: true }))),
    hint,
  ).toBe('EIO');

  // Never reused: remove the object, then hand out every free block.
  obj.remove();
  space.collect();
  for (const p of bad) expect(space.device.badBlocks()).toContain(head + p);
  expect(
    expectBadBlocksNeverHandedOut(
      space,
      [...bad].map((p) => head + p),
      91,
      hint,
    ),
  ).toBeGreaterThan(PAGES);
  expectBaseline(space);
  space.close();
  return rs;
}

describe('memory failure inside a 2 MiB extent under concurrent readers and writers', () => {
  it('readers of a poisoned page or of a 2 MiB view over it get EIO, never bytes; the rest stays intact; bad blocks are never reused', async () => {
    const seed = testSeed();
    const rs = await scenario(seed);
    expect(
      rs.flatMap((r) => r.violations),
      replayHint(seed, FILE),
    ).toEqual([]);
    expect(rs[0].eio + rs[1].eio, replayHint(seed, FILE)).toBeGreaterThan(0);
    expect(rs[0].reads + rs[1].reads).toBeGreaterThan(100);
  });

  it('goes red with DAXSTORE_TEST_BREAK=dax-poison-page-only', async () => {
    const seed = testSeed();
    const rs = await scenario(seed, 'dax-poison-page-only');
    expect(rs.flatMap((r) => r.violations).length, replayHint(seed, FILE)).toBeGreaterThan(0);
  });
});
