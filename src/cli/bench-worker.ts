/**
 * One benchmark thread: attaches to the shared daxstore (or opens the same lmdb env), runs
 * the workload until the deadline, and posts its op count and an HDR histogram of per-op
 * latency (ns, compressed base64). Insert numbers come from a counter all workers share.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { isDaxError, type DaxErrorCode } from '../errors.js';
import { attach, type KvHandle } from '../kv/index.js';
import { mulberry32 } from '../device/sim-media.js';
import { OpChooser, keyOf, type Distribution, type WorkloadName } from './ycsb.js';

export interface WorkerJob {
  store: { type: 'daxstore'; handle: KvHandle } | { type: 'lmdb'; path: string };
  workload: WorkloadName;
  distribution: Distribution;
  loadedKeys: number;
  valueBytes: number;
  durationMs: number;
  seed: number;
  /** Int32[0]: next key number to insert (shared) */
  counter: SharedArrayBuffer;
}

export interface WorkerResult {
  ops: number;
  histogram: string;
  elapsedMs: number;
}

/** What a worker posts when the store refused an operation (a DaxError: a full store, say), instead of a result. */
export interface WorkerFailure {
  failed: { code: DaxErrorCode; message: string };
}

interface Store {
  get(key: string): Uint8Array | undefined;
  put(key: string, value: Uint8Array): void;
  scan(from: string, limit: number): number;
  close(): void;
}

/** Puts between free-space checks, and the free space (share of the free blocks at attach, at least 8 segments) below which a worker compacts. */
const COMPACT_CHECK_EVERY = 1024;
const COMPACT_FREE_FRACTION = 0.3;
const COMPACT_MIN_FREE_BLOCKS = 8 * 512;

async function openStore(job: WorkerJob): Promise<Store> {
  if (job.store.type === 'daxstore') {
    const kv = attach(job.store.handle);
    // The store is log-structured: updates leave dead records behind, and a run longer than
    // the store's size allows would end in ENOSPC. Like an application would, the worker
    // compacts when free space runs low; the time it takes counts in its latencies.
    const lowWater = Math.max(COMPACT_MIN_FREE_BLOCKS, kv.stats().freeBlocks * COMPACT_FREE_FRACTION);
    let putsSinceCheck = 0;
    return {
      get: (k) => kv.get(k),
      put: (k, v) => {
        if (++putsSinceCheck === COMPACT_CHECK_EVERY) {
          putsSinceCheck = 0;
          if (kv.stats().freeBlocks < lowWater) kv.compact();
        }
        kv.put(k, v);
      },
      scan: (from, limit) => {
        let n = 0;
        for (const _ of kv.range({ gte: from, limit })) n++;
        return n;
      },
      close: () => kv.close(),
    };
  }
  const { open } = await import('lmdb');
  const db = open({ path: job.store.path, encoding: 'binary', noSubdir: true });
  return {
    get: (k) => db.getBinary(k) as Uint8Array | undefined,
    put: (k, v) => db.putSync(k, Buffer.from(v.buffer, v.byteOffset, v.byteLength)),
    scan: (from, limit) => {
      let n = 0;
      for (const _ of db.getRange({ start: from, limit })) n++;
      return n;
    },
    close: () => void db.close(),
  };
}

async function run(job: WorkerJob): Promise<WorkerResult> {
  const store = await openStore(job);
  try {
    return measure(job, store);
  } finally {
    store.close();
  }
}

function measure(job: WorkerJob, store: Store): WorkerResult {
  const random = mulberry32(job.seed);
  const chooser = new OpChooser(job.workload, job.distribution, job.loadedKeys, random);
  const counter = new Int32Array(job.counter);
  const value = new Uint8Array(job.valueBytes).fill(0x61);
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60e9,
    numberOfSignificantValueDigits: 3,
  });
  const start = performance.now();
  const deadline = start + job.durationMs;
  let ops = 0;
  while ((ops & 63) !== 0 || performance.now() < deadline) {
    const op = chooser.op();
    const t0 = process.hrtime.bigint();
    if (op === 'insert') store.put(keyOf(Atomics.add(counter, 0, 1)), value);
    else {
      const key = keyOf(chooser.existing(Atomics.load(counter, 0)));
      if (op === 'read') store.get(key);
      else if (op === 'update') store.put(key, value);
      else if (op === 'scan') store.scan(key, chooser.scanLength());
      else {
        const old = store.get(key);
        const next = old === undefined ? value : old.slice();
        next[0] = (next[0] + 1) & 0xff;
        store.put(key, next);
      }
    }
    histogram.recordValue(Math.max(1, Number(process.hrtime.bigint() - t0)));
    ops++;
  }
  const elapsedMs = performance.now() - start;
  return { ops, histogram: hdr.encodeIntoCompressedBase64(histogram), elapsedMs };
}

/** A DaxError goes to the parent as its code and message (a thrown error would reach it as a plain Error); anything else is a bug and is thrown. */
async function runReporting(job: WorkerJob): Promise<WorkerResult | WorkerFailure> {
  try {
    return await run(job);
  } catch (e) {
    if (!isDaxError(e)) throw e;
    return { failed: { code: e.code, message: e.message.slice(e.code.length + 2) } };
  }
}

parentPort?.postMessage(await runReporting(workerData as WorkerJob));
