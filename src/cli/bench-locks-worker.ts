/**
 * One thread of `daxstore bench locks`: attaches to the shared space and runs one role
 * (fault, truncate or memory failure) on the benchmark object until the deadline, through
 * either the real DaxSpace path (entry locks) or the page-lock baseline. Posts its op count
 * and an HDR histogram of per-op latency (ns, compressed base64).
 *
 * Both paths do the same thing per op: fault = a write fault of a random page; truncate =
 * shrink to a random entry-aligned size in the last quarter, then grow back (one op), paced
 * at one per truncateIntervalMs so both paths face the same truncate pressure (back to back,
 * the work per truncate would depend on how much the faults refilled since the last one,
 * i.e. on the speed of the path being measured);
 * memory failure = the reverse map of a random mapped page's device offset, locked and
 * released (not the poisoning: a bad block is never reused, so a sustained run would use up
 * the bad-block list and the device; the lock protocol is what the two designs differ in).
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { DaxSpace, type DaxSpaceHandle } from '../dax/space.js';
import { isDaxError } from '../errors.js';
import { mulberry32 } from '../device/sim-media.js';
import { PageLockObject, blockOfPage, type PageLockHandle } from './page-lock-baseline.js';

export type LockPath = 'entry-locks' | 'page-locks';
export type LockRole = 'fault' | 'truncate' | 'memory-failure';

export interface LocksJob {
  path: LockPath;
  role: LockRole;
  space: DaxSpaceHandle;
  pageLocks: PageLockHandle;
  objectId: number;
  pages: number;
  entryPages: 1 | 512;
  durationMs: number;
  truncateIntervalMs: number;
  seed: number;
  /** Int32[0]: workers ready; all start their clocks once every one has attached */
  startLine: SharedArrayBuffer;
  workers: number;
}

export interface LocksResult {
  role: LockRole;
  ops: number;
  /** faults that found the page beyond the (truncated) size: ERANGE, the SIGBUS of a real fault */
  beyondSize: number;
  /** memory-failure picks that found a hole (nothing to map back; not counted as ops) */
  holes: number;
  /** memory failures whose block left the object before its entry was locked (counted as ops) */
  moved: number;
  /** faults that found the device full of blocks waiting for their grace period (collected, not counted) */
  enospc: number;
  /** page-lock path: lock-all-then-recheck attempts that found the entry changed */
  retries: number;
  histogram: string;
  elapsedMs: number;
}

interface Ops {
  fault(index: number): boolean;
  truncate(keepPages: number): void;
  memoryFailure(deviceOffset: number): boolean;
  retries(): number;
}

function entryLockOps(space: DaxSpace, job: LocksJob): Ops {
  const obj = space.object(job.objectId);
  const huge = job.entryPages !== 1;
  return {
    fault: (index) => {
      try {
        obj.fault(index, { write: true, huge });
        return true;
      } catch (e) {
        if (isDaxError(e, 'ERANGE')) return false;
        throw e;
      }
    },
    truncate: (keepPages) => {
      obj.truncate(keepPages * 4096);
      obj.truncate(job.pages * 4096);
    },
    memoryFailure: (offset) => {
      const r = space.rmap(offset);
      r?.release();
      return r !== null;
    },
    retries: () => 0,
  };
}

function pageLockOps(space: DaxSpace, job: LocksJob): Ops {
  const obj = new PageLockObject(space, job.objectId, job.pages, job.entryPages, job.pageLocks);
  return {
    fault: (index) => obj.fault(index) === 'ok',
    truncate: (keepPages) => {
      obj.truncate(keepPages);
      obj.extend(job.pages);
    },
    memoryFailure: (offset) => obj.memoryFailure(offset),
    retries: () => obj.retries,
  };
}

function run(job: LocksJob): LocksResult {
  const space = DaxSpace.attach(job.space);
  const ops = job.path === 'entry-locks' ? entryLockOps(space, job) : pageLockOps(space, job);
  const random = mulberry32(job.seed);
  const entries = job.pages / job.entryPages;
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60e9,
    numberOfSignificantValueDigits: 3,
  });
  const result: LocksResult = {
    role: job.role,
    ops: 0,
    beyondSize: 0,
    holes: 0,
    moved: 0,
    enospc: 0,
    retries: 0,
    histogram: '',
    elapsedMs: 0,
  };
  const ready = new Int32Array(job.startLine);
  Atomics.add(ready, 0, 1);
  Atomics.notify(ready, 0);
  for (let n = Atomics.load(ready, 0); n < job.workers; n = Atomics.load(ready, 0)) Atomics.wait(ready, 0, n, 100);
  const start = performance.now();
  const deadline = start + job.durationMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let nextTruncate = start;
  try {
    while (performance.now() < deadline) {
      if (job.role === 'truncate') {
        nextTruncate += job.truncateIntervalMs;
        const wait = Math.min(nextTruncate, deadline) - performance.now();
        if (wait > 0) Atomics.wait(pause, 0, 0, wait);
        if (performance.now() >= deadline) break;
      }
      const index = Math.floor(random() * job.pages);
      let offset = -1;
      if (job.role === 'memory-failure') {
        const block = blockOfPage(space, job.objectId, index, job.entryPages);
        if (block === undefined) {
          result.holes++;
          continue;
        }
        offset = space.device.blockOffset(block);
      }
      const keep = (entries - 1 - Math.floor((random() * entries) / 4)) * job.entryPages;
      const t0 = process.hrtime.bigint();
      try {
        if (job.role === 'fault') {
          if (!ops.fault(index)) result.beyondSize++;
        } else if (job.role === 'truncate') ops.truncate(keep);
        else if (!ops.memoryFailure(offset)) result.moved++;
      } catch (e) {
        // Truncated blocks wait in limbo for their grace period: when they fill the device, end
        // grace periods (what a background reclaimer does) and go on; the failed op is not counted.
        if (!isDaxError(e, 'ENOSPC')) throw e;
        result.enospc++;
        space.collect();
        continue;
      }
      histogram.recordValue(Math.max(1, Number(process.hrtime.bigint() - t0)));
      result.ops++;
    }
  } finally {
    result.retries = ops.retries();
    space.close();
  }
  result.elapsedMs = performance.now() - start;
  result.histogram = hdr.encodeIntoCompressedBase64(histogram);
  return result;
}

parentPort?.postMessage(run(workerData as LocksJob));
