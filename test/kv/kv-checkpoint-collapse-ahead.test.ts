/**
 * A background checkpoint writes its body a part at a time (checkpoint.ts CheckpointWrite
 * .writeBody with a deadline); on tmpfs, as it faults each 2 MiB extent it has the free extent
 * its next one will likely take made one huge page on a background thread (media.collapse), so
 * that the next fault zeroes one huge page instead of faulting in 512 pages of 4 KiB. A store of
 * 160,000 keys (a checkpoint of three extents and more) on a tmpfs file: the background
 * checkpoint's steps hand collapses to the thread, and the checkpoint is written and loads.
 * Red with kv-checkpoint-body-not-collapsed-ahead (none handed).
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { MappedMedia } from '../../src/device/region.js';
import { withBroken } from '../../src/test-break.js';
import { open } from '../helpers/kv-bytes.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';

const WATCHDOG_MS = 120_000;

afterEach(() => cleanupTemp());

/** Collapses handed to the thread while a background checkpoint ran to its end, its body's bytes, and whether the next open loaded it. */
function collapsesWhileWriting(): { collapses: number; bytes: number; loaded: boolean } {
  const file = path.join(tempDir(), 'kv');
  const db = open(file, { size: 128 * 2 ** 20, durability: 'none', checkpoint: false, checkpointEvery: 0 });
  let collapses = 0;
  let bytes = 0;
  try {
    for (let i = 0; i < 160_000; i++) db.put(`key-${i}`, `value ${i}`.padEnd(40, 'v'));
    const media = db.dax.device.media as MappedMedia;
    expect(media.kind).toBe('tmpfs');
    const before = media.collapseStarted;
    db.startBackgroundCheckpoint();
    while (db.stepBackgroundCheckpoint());
    collapses = media.collapseStarted - before;
    const last = db.lastCheckpoint;
    if (last === undefined || 'error' in last) throw new Error(`background checkpoint: ${JSON.stringify(last)}`);
    bytes = last.bytes;
  } finally {
    db.close();
  }
  const again = open(file, { checkpoint: false });
  try {
    return { collapses, bytes, loaded: again.recovery!.checkpoint!.loaded !== undefined };
  } finally {
    again.close();
  }
}

describe('a background checkpoint makes its next extent huge ahead', () => {
  it(
    'its body steps hand the next extent to the collapse thread; the checkpoint loads',
    (ctx) => {
      if (process.env['DAXSTORE_NO_COLLAPSE'] === '1' || process.env['DAXSTORE_NO_PREFAULT'] === '1') ctx.skip();
      const { collapses, bytes, loaded } = collapsesWhileWriting();
      expect(bytes).toBeGreaterThan(3 * 2 ** 21);
      expect(collapses).toBeGreaterThanOrEqual(2);
      expect(loaded).toBe(true);
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-body-not-collapsed-ahead: none handed',
    (ctx) => {
      if (process.env['DAXSTORE_NO_COLLAPSE'] === '1' || process.env['DAXSTORE_NO_PREFAULT'] === '1') ctx.skip();
      const { collapses, loaded } = withBroken('kv-checkpoint-body-not-collapsed-ahead', () => collapsesWhileWriting());
      expect(collapses).toBe(0);
      expect(loaded).toBe(true);
    },
    WATCHDOG_MS,
  );
});
