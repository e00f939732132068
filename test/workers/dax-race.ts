/**
 * Worker for the DAX race tests (R1, R2, R4). Attaches the space and plays one role of a
 * scenario; the control words order the roles through the fault path's test hooks.
 *   control[0] IN_WINDOW  set by the faulting role when it is inside the race window
 *   control[1] OTHER_DONE set by the other role when its operation returned
 */
import { workerData, parentPort } from 'node:worker_threads';
import { DaxSpace, type DaxSpaceHandle } from '../../src/dax/space.js';
import { faultHooks } from '../../src/dax/fault.js';

const IN_WINDOW = 0;
const OTHER_DONE = 1;
const WINDOW_MS = 300;

interface Job { handle: DaxSpaceHandle; control: SharedArrayBuffer; role: string; objectId: number; otherId?: number; rounds?: number }
const job = workerData as Job;
const c = new Int32Array(job.control);
const space = DaxSpace.attach(job.handle);

function openWindow(): void {
  Atomics.store(c, IN_WINDOW, 1);
  Atomics.notify(c, IN_WINDOW);
  Atomics.wait(c, OTHER_DONE, 0, WINDOW_MS); // times out when the protocol blocks the other role
}

function awaitWindow(): void {
  while (Atomics.load(c, IN_WINDOW) === 0) Atomics.wait(c, IN_WINDOW, 0, 1000);
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
      faultHooks.window = (phase) => { if (phase === 'before-install') openWindow(); };
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
      const stamped = space.object(job.objectId, { mkwrite: () => { view.fill(0x5a, 0, 64); } });
      faultHooks.window = (phase) => { if (phase === 'mkwrite-window') openWindow(); };
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
space.close();
parentPort!.postMessage(result);
