/**
 * Worker of test/kv/kv-space-death.test.ts: attaches to a full store and runs op 0, 1, 2, ...
 * of its trial (test/helpers/space-death.ts: deletes, deleteRange, batches of deletes,
 * compact) until the test terminates it. progress (Int32): [0] ops started, [1] ops
 * acknowledged (returned), [2] 1 once attached, [3] 1 once it holds the priority writer
 * (`hold`: the first time its work there appended records, the worker stops inside the
 * compaction mutex, before parking the writer, and waits to be terminated).
 */
import { workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { runOp } from '../helpers/thread-death.js';
import { spaceOpAt } from '../helpers/space-death.js';
import { testHooks } from '../../src/test-break.js';

interface Data {
  handle: KvHandle;
  keys: string[];
  seed: number;
  progress: SharedArrayBuffer;
  hold: boolean;
}
const { handle, keys, seed, progress, hold } = workerData as Data;
const p = new Int32Array(progress);
const db = attach(handle);
if (hold)
  testHooks.priorityHeld = (appended) => {
    if (!appended) return;
    Atomics.store(p, 3, 1);
    for (;;) Atomics.wait(p, 3, 1, 5); // terminate() ends the thread between two waits
  };
Atomics.store(p, 2, 1);
for (let i = 0; ; i++) {
  Atomics.store(p, 0, i + 1);
  try {
    runOp(db, spaceOpAt(keys, seed, i));
  } catch (e) {
    throw withSpaceReport(e, i);
  }
  Atomics.store(p, 1, i + 1);
}

/**
 * An operation failed (it must not: every op here frees or moves space): the error, with the
 * store's space as this thread sees it at that moment (the survivor's report comes after the
 * death, when a grace period or another thread may have changed it).
 */
function withSpaceReport(e: unknown, i: number): Error {
  const internals = db as unknown as {
    spaceWords: Float64Array;
    table: { closedSegments(open: ReadonlySet<number>): unknown[]; diedBytes(): number };
    openExtents(): Set<number>;
    openTable: Int32Array;
    compactionRoom(): number;
    neededCompactionRoom(): number;
  };
  let report: unknown;
  try {
    const open = internals.openExtents();
    report = {
      op: i,
      openExtents: [...open],
      openTable: [...internals.openTable].filter((w) => w !== 0),
      closed: internals.table.closedSegments(open),
      diedBytes: internals.table.diedBytes(),
      spaceWords: [...internals.spaceWords],
      compactionRoom: internals.compactionRoom(),
      neededCompactionRoom: internals.neededCompactionRoom(),
      space: db.spaceInternals(),
      dax: db.dax.stats(),
      epoch: db.dax.epoch.stats(),
      stats: db.stats(),
    };
  } catch (inner) {
    report = `(no report: ${String(inner)})`;
  }
  const error = e instanceof Error ? e : new Error(String(e));
  const more = `\nspace at the failure: ${JSON.stringify(report)}`;
  error.message += more;
  error.stack = `${error.stack ?? ''}${more}`;
  return error;
}
