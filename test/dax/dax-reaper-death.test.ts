/**
 * A reaper that dies while finishing a dead thread's page fault leaves nothing for good. A
 * worker write-faults a hole and is terminated once its fresh block is published (owned by the
 * object) and not yet in the tree, its page entry held (alloc.ts "Thread death": the reaper must
 * put the block in the tree). A second worker faults the same page, meets the dead holder,
 * reaps it, and is itself terminated inside that reap at a seeded point (testHooks.reapStage):
 * after taking the page entry, or after filling it. A survivor worker then write-faults the page
 * under a watchdog and stamps it. The page must have exactly one block, the one the owner table
 * gives it and the tree holds, the allocator must agree with the owner table, and every few
 * trials a reopen of the space must serve the stamp from that block.
 * Red with DAXSTORE_TEST_BREAK=dax-reap-adopt-own: the reaper takes the entry over in its own
 * name, its death hands the empty placeholder to its own reap, which removes it, and the
 * survivor's fault gives the page a second block.
 */
import { describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { DaxSpace } from '../../src/dax/space.js';
import { blockOfValue, pageKey } from '../../src/dax/layout.js';
import { deathCount } from '../../src/device/participants.js';
import { breakEnv } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { nextMessage, startWatched, until, waitFor } from '../helpers/survivor.js';

const FILE = 'test/dax/dax-reaper-death.test.ts';
const WATCHDOG_MS = 60_000;
const MIB = 1024 * 1024;
const PAGES = 4;
const STOPS = ['held', 'filled'] as const;
type Stop = (typeof STOPS)[number];

/** The blocks the owner table gives page `page` of object `id`. */
function ownedBlocks(space: DaxSpace, id: number, page: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < space.device.dataBlocks; b++) {
    const o = space.device.ownerOf(b);
    if (o.state === 'owned' && o.ownerId === id && o.index === page) out.push(b);
  }
  return out;
}

async function terminated(w: Worker, what: string): Promise<void> {
  const deaths = deathCount();
  await w.terminate();
  await until(() => deathCount() > deaths, WATCHDOG_MS, `${what}: the death to be marked`);
}

interface Summary {
  trials: number;
  byStop: Record<Stop, number>;
  reopens: number;
}

async function runTrials(seed: number, trials: number, env: NodeJS.ProcessEnv, only?: Stop): Promise<Summary> {
  const r = rng(seed);
  const dir = mkdtempSync(path.join('/dev/shm', 'dax-reaper-death-'));
  const file = path.join(dir, 'space');
  let space = DaxSpace.open(file, { size: 16 * MIB });
  const stamps = new Map<string, number>();
  const summary: Summary = { trials: 0, byStop: { held: 0, filled: 0 }, reopens: 0 };
  try {
    for (let t = 0; t < trials; t++) {
      const id = 100 + t;
      const page = Math.floor(r() * PAGES);
      const stop = only ?? STOPS[Math.floor(r() * STOPS.length)];
      const where = `trial ${t} (object ${id}, page ${page}): reaper stopped at '${stop}'`;
      space.object(id, { create: true, size: PAGES * 4096 });
      const handle = space.share();
      const progress = new SharedArrayBuffer(8);
      const p = new Int32Array(progress);
      const base = { handle, progress, objectId: id, page };
      const reaper = startWatched('dax-reaper-death', { ...base, role: 'reaper', stop }, env);
      await nextMessage(reaper, WATCHDOG_MS, `${where}: the reaper to start`);
      const faulter = startWatched('dax-reaper-death', { ...base, role: 'faulter' }, env);
      await waitFor(() => Atomics.load(p, 0) === 1, faulter, WATCHDOG_MS, `${where}: the faulter to publish its block`);
      await terminated(faulter.w, `${where}: faulter`);
      reaper.w.postMessage('go');
      await waitFor(() => Atomics.load(p, 1) !== 0, reaper, WATCHDOG_MS, `${where}: the reaper to reach its stop`);
      if (Atomics.load(p, 1) !== 1) throw new Error(`${where}: the reap never reached the stop`);
      await terminated(reaper.w, `${where}: reaper`);
      summary.byStop[stop]++;
      const stamp = 1000 + t;
      const survivor = startWatched('dax-reaper-death', { ...base, role: 'survivor', stamp }, env);
      // Listened for from the start: a worker that posts and ends before this thread reads its
      // message has both events emitted in one turn, before an await after the message could
      // add a listener.
      const exited = new Promise((resolve) => survivor.w.once('exit', resolve));
      const offset = await nextMessage<number>(survivor, WATCHDOG_MS, `${where}: the survivor's write fault`);
      let exitSeen = false;
      void exited.then(() => (exitSeen = true));
      await until(() => exitSeen, WATCHDOG_MS, `${where}: the survivor to end`);
      stamps.set(`${id}/${page}`, stamp);
      const owned = ownedBlocks(space, id, page);
      if (owned.length !== 1) throw new Error(`${where}: the page has ${owned.length} blocks (${owned.join(', ')})`);
      const entry = space.tree.entryInfo(pageKey(id, page));
      expect(entry, where).toBeDefined();
      expect(entry!.locked, where).toBe(false);
      expect(blockOfValue(entry!.value), where).toBe(owned[0]);
      expect(space.device.blockOffset(owned[0]), where).toBe(offset);
      space.collect();
      expect(space.device.audit(), where).toEqual([]);
      summary.trials++;
      if ((t + 1) % 3 === 0 || t === trials - 1) {
        space.close();
        space = DaxSpace.open(file);
        for (const [key, want] of stamps) {
          const [oid, pg] = key.split('/').map(Number);
          const view = space.object(oid).fault(pg);
          expect(new Int32Array(view.buffer, view.byteOffset, 1)[0], `${where}: after a reopen, ${key}`).toBe(want);
          expect(ownedBlocks(space, oid, pg).length, `${where}: after a reopen, ${key}`).toBe(1);
        }
        expect(space.device.audit(), where).toEqual([]);
        summary.reopens++;
      }
    }
    return summary;
  } finally {
    space.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("a reaper that dies while putting a dead fault's block in the tree", () => {
  const trials = scaled(6);
  it(
    `the next reaper finishes it: ${trials} dead reapers, one block per page, a reopen agrees`,
    async () => {
      const summary = await withSeed(FILE, (seed) => runTrials(seed, trials, process.env));
      console.log(`dax-reaper-death: ${JSON.stringify(summary)}`);
      expect(summary.trials).toBe(trials);
      expect(summary.reopens).toBeGreaterThan(0);
    },
    60_000 + trials * 20_000,
  );

  it('goes red with DAXSTORE_TEST_BREAK=dax-reap-adopt-own (the page gets a second block)', async () => {
    const env = { ...process.env, ...breakEnv('dax-reap-adopt-own') };
    await expect(withSeed(FILE, (seed) => runTrials(seed, 1, env, 'held'))).rejects.toThrow(/2 blocks/);
  }, 120_000);
});
