/**
 * Worker of test/kv/kv-thread-death.test.ts: the survivor. Attaches to the store and answers
 * the test's requests, one at a time: run ops on the keys a dead worker used, report the
 * content, compact, report internals, close and re-attach, fill the store until ENOSPC
 * (kv-space-death.test.ts). Runs in a worker so that a request
 * that hangs on something a dead thread left is caught by the test's watchdog instead of
 * blocking the test itself.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle, type KvStore } from '../../src/kv/index.js';
import { contentOf, runOp, type Op } from '../helpers/thread-death.js';
import { fillValue } from '../helpers/space-death.js';
import { isDaxError } from '../../src/errors.js';
import { PROGRESS_WORDS, W_OWNER } from '../../src/kv/segment-writer.js';
import { isParticipantDead } from '../../src/device/participants.js';
import { writerReapStats } from '../../src/kv/writer-reaper.js';

type Request =
  | { id: number; t: 'ops'; ops: Op[] }
  | { id: number; t: 'content' }
  | { id: number; t: 'compact' }
  | { id: number; t: 'close' }
  | { id: number; t: 'internals' }
  | { id: number; t: 'attach'; handle: KvHandle }
  | { id: number; t: 'fill'; prefix: string }
  | { id: number; t: 'space' };

let db: KvStore = attach((workerData as { handle: KvHandle }).handle);
parentPort!.on('message', (req: Request) => {
  try {
    let result: unknown = undefined;
    if (req.t === 'ops') for (const op of req.ops) runOp(db, op);
    else if (req.t === 'content') result = contentOf(db);
    else if (req.t === 'compact') {
      const report = db.compact({ maxLiveRatio: 0.9 });
      const s = db.stats();
      result = { report, segments: s.segments, freeBlocks: s.freeBlocks, keys: s.keys };
    } else if (req.t === 'internals') {
      db.compact({ maxLiveRatio: 0.9 });
      db.dax.collect();
      const s = db.stats();
      const { openTable, progress } = db as unknown as { openTable: Int32Array; progress: Int32Array };
      // The last slot is the priority writer's: it names its segment between holders (owner 0
      // then), and a dead holder's name in it is a slot still held.
      const priority = openTable.length - 1;
      let deadSlots = 0;
      for (let i = 0; i < openTable.length; i++) {
        const owner = progress[i * PROGRESS_WORDS + W_OWNER];
        if (i === priority ? owner !== 0 : openTable[i] !== 0 && (owner === 0 || isParticipantDead(owner))) deadSlots++;
      }
      result = {
        pinned: db.dax.epoch.stats().pinned,
        openSlots: openTable.subarray(0, priority).filter((w) => w !== 0).length,
        deadSlots,
        limboBlocks: db.dax.stats().limboBlocks,
        segments: s.segments,
        freeBlocks: s.freeBlocks,
        space: db.spaceInternals(),
        snapshots: s.snapshots,
        snapshotDeadSlots: (db as unknown as { snaps: { deadSlots(): number } }).snaps.deadSlots(),
        // What this thread's reaps did over the whole run (writer-reaper.ts), for the run's summary.
        reapStats: { ...writerReapStats },
      };
    } else if (req.t === 'close') db.close();
    else if (req.t === 'attach') db = attach(req.handle);
    else if (req.t === 'space') {
      // What a failure message shows about the store's space (kv-space-death.test.ts).
      const { openTable, progress } = db as unknown as { openTable: Int32Array; progress: Int32Array };
      const slots: Array<[number, number, number]> = [];
      for (let i = 0; i < openTable.length; i++) {
        const owner = progress[i * PROGRESS_WORDS + W_OWNER];
        if (openTable[i] !== 0 || owner !== 0) slots.push([i, openTable[i], owner]);
      }
      const s = db.stats();
      result = {
        slots,
        space: db.spaceInternals(),
        priorityProblem: db.priorityProblem(),
        segments: s.segments,
        freeBlocks: s.freeBlocks,
        keys: s.keys,
        // Where blocks that are not log segments went: DAX objects (checkpoints, large values),
        // blocks retired and waiting for their grace period, and who is pinned.
        dax: db.dax.stats(),
        epoch: db.dax.epoch.stats(),
        checkpointsTaken: db.checkpointsTaken,
        lastCheckpoint: db.lastCheckpoint,
      };
    } else if (req.t === 'fill') {
      // Puts new keys until ENOSPC (kv-space-death.test.ts); returns what was acknowledged.
      const added: Array<[string, string]> = [];
      for (let n = 0; ; n++) {
        const key = `${req.prefix}${String(n).padStart(6, '0')}`;
        const value = fillValue(key, n);
        try {
          db.put(key, value);
        } catch (e) {
          if (!isDaxError(e, 'ENOSPC')) throw e;
          break;
        }
        added.push([key, value]);
      }
      result = { added, space: db.spaceInternals() };
    }
    parentPort!.postMessage({ id: req.id, ok: true, result });
  } catch (e) {
    parentPort!.postMessage({ id: req.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
});
parentPort!.postMessage({ id: 0, ok: true, result: 'ready' });
