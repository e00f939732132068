/**
 * Workers that make SharedArrayBuffers in the addon (a mapped region, the participant table) and
 * end, in a process whose main thread never loads the addon: Node unloads an addon when the last
 * environment that loaded it goes away, before the worker's heap is torn down, and V8 then runs
 * the buffers' deleters. Without addon/daxstore.cc PinInMemory that ran code no longer mapped
 * (SIGSEGV in ArrayBufferSweeper::ReleaseAll): this file's fork died within a few rounds. This
 * file must not load the addon in its own thread (nothing here imports from src/ but helpers).
 */
import { describe, expect, it } from 'vitest';
import { runWorker } from '../helpers/workers.js';
import { scaled } from '../helpers/seed.js';

describe('the addon outlives the workers that loaded it', () => {
  it('workers that map regions and end, with no other thread holding the addon, end cleanly', async () => {
    const rounds = scaled(15);
    for (let r = 0; r < rounds; r++) {
      await Promise.all(
        Array.from({ length: 4 }, () => runWorker('region-open-exit', {}).catch((e: unknown) => e)),
      ).then((ends) =>
        expect(ends.filter((e) => e instanceof Error && !/without a result/.test(e.message))).toEqual([]),
      );
    }
  }, 300_000);
});
