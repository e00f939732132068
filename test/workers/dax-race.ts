/**
 * Worker for the DAX race tests (R1, R2, R4). Attaches the space and plays one role of a
 * scenario; the control words order the roles through the fault path's test hooks.
 *   control[0] IN_WINDOW  set by the faulting role when it is inside the race window
 *   control[1] OTHER_DONE set by the other role when its operation returned
 *
 * The window closes on an EVENT, never on a clock: when the other role is done (the
 * protocol did not stop it) or is seen blocked on the lock the window holds (the entry's
 * WAITERS bit for R1, the invalidate lock's WRITER_PENDING bit for R2). An earlier version
 * waited a fixed 300 ms: a worker descheduled for longer (other cores busy) missed the
 * window, so the red run came out green; and a holder releasing near the waiter's 250 ms
 * wait slice let the slice time out just as the unlock came, which the entry-lock stats
 * miscount as a lost wake-up (a false positive). WINDOW_LIMIT_MS only ends a hang and
 * is reported as 'window-timeout'.
 */
import { workerData, parentPort } from 'node:worker_threads';
import { DaxSpace, type DaxSpaceHandle } from '../../src/dax/space.js';
import { testHooks } from '../../src/test-break.js';
import { pageKey } from '../../src/dax/layout.js';
import { Ew } from '../../src/index/entry-word.js';
import { Lay } from '../../src/index/nodes.js';

const IN_WINDOW = 0;
const OTHER_DONE = 1;
const WINDOW_LIMIT_MS = 10_000;
const WRITER_PENDING = 1 << 29; // invalidate-lock.ts word layout

interface Job {
  handle: DaxSpaceHandle;
  control: SharedArrayBuffer;
  role: string;
  objectId: number;
  otherId?: number;
  rounds?: number;
  delayMs?: number;
}
const job = workerData as Job;
const c = new Int32Array(job.control);
const space = DaxSpace.attach(job.handle);
/** How the window closed: 'blocked' (the other role waited on our lock), 'done' (it was not stopped), 'window-timeout'. */
let windowClose: string | undefined;

/** Holds the window until the other role is done or `blocked()` says it waits on us. */
function openWindow(blocked: () => boolean): void {
  Atomics.store(c, IN_WINDOW, 1);
  Atomics.notify(c, IN_WINDOW);
  const deadline = Date.now() + WINDOW_LIMIT_MS;
  for (;;) {
    if (Atomics.load(c, OTHER_DONE) !== 0) windowClose = 'done';
    else if (blocked()) windowClose = 'blocked';
    else if (Date.now() > deadline) windowClose = 'window-timeout';
    else {
      Atomics.wait(c, OTHER_DONE, 0, 1);
      continue;
    }
    return;
  }
}

/** True once a waiter has flagged the entry of (object, index) WAITERS (it sleeps on our lock). */
function entryHasWaiters(objectId: number, index: number): boolean {
  return space.epoch.guard(() => {
    const leaf = space.tree.findLeafPinned(pageKey(objectId, index));
    return leaf !== 0 && (Atomics.load(space.tree.arena.i32, leaf + Lay.W_ENTRY) & Ew.WAITERS) !== 0;
  });
}

function invalidateLockPending(slot: number): boolean {
  return (Atomics.load(space.objects.words, space.objects.rwIndex(slot)) & WRITER_PENDING) !== 0;
}

function awaitWindow(): void {
  while (Atomics.load(c, IN_WINDOW) === 0) Atomics.wait(c, IN_WINDOW, 0, 1000);
  // Test knob: stand in for a descheduled worker (how the fixed-time window went wrong).
  if (job.delayMs !== undefined) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, job.delayMs);
}

function done(): void {
  Atomics.store(c, OTHER_DONE, 1);
  Atomics.notify(c, OTHER_DONE);
}

let result: unknown = 'ok';
try {
  const obj = space.object(job.objectId);
  switch (job.role) {
    case 'r2-fault': {
      testHooks.faultWindow = (phase) => {
        if (phase === 'before-install') openWindow(() => invalidateLockPending(obj.slot));
      };
      try {
        obj.fault(7, { write: true });
      } catch (e) {
        result = (e as { code?: string }).code ?? String(e);
      }
      break;
    }
    case 'r2-truncate':
      awaitWindow();
      obj.truncate(4096);
      done();
      break;
    case 'r1-fault': {
      const view = obj.fault(0, { write: true });
      obj.writeback();
      const stamped = space.object(job.objectId, {
        mkwrite: () => {
          view.fill(0x5a, 0, 64);
        },
      });
      testHooks.faultWindow = (phase, id, index) => {
        if (phase === 'mkwrite-window') openWindow(() => entryHasWaiters(id, index));
      };
      stamped.fault(0, { write: true });
      break;
    }
    case 'r1-writeback':
      awaitWindow();
      obj.writeback();
      done();
      break;
    case 'r4-cross': {
      const other = space.object(job.otherId!);
      for (let i = 0; i < (job.rounds ?? 100); i++) {
        space.read(() => {
          const src = other.fault(0);
          obj.write(0, src.subarray(0, 256));
        });
      }
      break;
    }
    default:
      throw new Error(`unknown role ${job.role}`);
  }
} catch (e) {
  result = `error: ${(e as Error).message}`;
}
if (result === 'ok' && windowClose !== undefined) result = windowClose;
space.close();
parentPort!.postMessage(result);
