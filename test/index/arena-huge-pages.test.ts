/**
 * The arena asks for transparent huge pages (madvise MADV_HUGEPAGE over its whole
 * reservation) and says so in stats(). Proven from the kernel's side: the bytes of this
 * process's mappings flagged `hg` in /proc/self/smaps grow by the arena's reservation. This
 * is the advice, not a speed claim (bench/ measures that) and not a promise that the kernel
 * found free 2 MiB pages (AnonHugePages is printed, not asserted).
 * Switched off with DAXSTORE_NO_HUGEPAGES=1, the first test goes red (state 'disabled', no
 * new `hg` bytes).
 */
import { readFileSync } from 'node:fs';
import { afterEach, expect, test } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { native } from '../../src/native/addon.js';
import { expectBaseline } from './tree-helpers.js';

const MIB = 1024 * 1024;
const THP_MODE = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
const savedSwitch = process.env.DAXSTORE_NO_HUGEPAGES;

afterEach(() => {
  if (savedSwitch === undefined) delete process.env.DAXSTORE_NO_HUGEPAGES;
  else process.env.DAXSTORE_NO_HUGEPAGES = savedSwitch;
});

/** Bytes of mappings whose VmFlags carry `hg`, and their AnonHugePages bytes. */
function hugeAdvisedBytes(): { advised: number; anonHuge: number } {
  let advised = 0;
  let anonHuge = 0;
  for (const block of readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const flags = /^VmFlags:(.*)$/m.exec(block)?.[1] ?? '';
    if (!flags.split(' ').includes('hg')) continue;
    const [lo, hi] = block
      .slice(0, block.indexOf(' '))
      .split('-')
      .map((h) => parseInt(h, 16));
    advised += hi - lo;
    anonHuge += Number(/^AnonHugePages:\s+(\d+) kB$/m.exec(block)?.[1] ?? 0) * 1024;
  }
  return { advised, anonHuge };
}

function keyOf(i: number): Uint8Array {
  const k = new Uint8Array(16);
  new DataView(k.buffer).setUint32(0, Math.imul(i, 0x9e3779b1) >>> 0);
  new DataView(k.buffer).setUint32(12, i);
  return k;
}

test.skipIf(!THP_MODE.includes('[madvise]') && !THP_MODE.includes('[always]'))(
  'a new arena advises its whole reservation for huge pages and reports it',
  () => {
    const maxBytes = 96 * MIB;
    const before = hugeAdvisedBytes();
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch, { maxBytes });
    expect(tree.stats().hugePages).toBe('advised');
    const created = hugeAdvisedBytes();
    // Rounded inward to 2 MiB at both ends: at most two partial huge pages are left out.
    const delta = created.advised - before.advised;
    expect(delta).toBeGreaterThan(maxBytes - 4 * MIB);
    expect(delta).toBeLessThanOrEqual(maxBytes);
    // The flag survives growth (V8 commits the growing prefix with mprotect, which splits
    // the mapping but keeps its flags).
    const KEYS = 200_000;
    for (let i = 0; i < KEYS; i++) tree.insert(keyOf(i), i);
    expect(tree.stats().arenaBytes).toBeGreaterThan(8 * MIB);
    const grown = hugeAdvisedBytes();
    expect(grown.advised - before.advised).toBe(delta);
    console.log(
      `arena ${tree.stats().arenaBytes} B: AnonHugePages ${before.anonHuge} -> ${grown.anonHuge} B (THP ${THP_MODE.trim()})`,
    );
    for (let i = 0; i < KEYS; i++) tree.delete(keyOf(i));
    expectBaseline(tree, epoch);
  },
);

test('DAXSTORE_NO_HUGEPAGES=1 leaves the arena on small pages', () => {
  process.env.DAXSTORE_NO_HUGEPAGES = '1';
  const before = hugeAdvisedBytes();
  const tree = RadixTree.create(EpochDomain.create(), { maxBytes: 64 * MIB });
  expect(tree.stats().hugePages).toBe('disabled');
  expect(hugeAdvisedBytes().advised).toBe(before.advised);
});

test('an arena with no whole 2 MiB page in its reservation reports too-small', () => {
  delete process.env.DAXSTORE_NO_HUGEPAGES;
  const before = hugeAdvisedBytes();
  const tree = RadixTree.create(EpochDomain.create(), { initialBytes: 64 * 1024, maxBytes: MIB });
  expect(tree.stats().hugePages).toBe('too-small');
  expect(hugeAdvisedBytes().advised).toBe(before.advised);
});

test('the addon answers -EBADF, not a throw or a crash, for anything but a SharedArrayBuffer', () => {
  const advise = native().adviseHugePages as (b: unknown) => number;
  for (const bad of [{}, new ArrayBuffer(4 * MIB), 7, undefined]) expect(advise(bad)).toBe(-9);
});
