/**
 * The survivor of the thread-death tests (kv-thread-death, kv-space-death): a worker
 * (test/workers/kv-survivor.ts) attached to the store that answers requests, each under a
 * watchdog, so that a request that hangs on something a dead thread left is a failure with a
 * message instead of a blocked test. And the model comparisons those tests share.
 */
import { Worker } from 'node:worker_threads';
import { rmSync } from 'node:fs';
import type { KvHandle, KvStore } from '../../src/kv/index.js';
import { workerScript } from './workers.js';
import { sortedEntries } from './thread-death.js';

/** The survivor worker: requests with a watchdog. */
export class Survivor {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly worker: Worker;
  readonly ready: Promise<unknown>;

  constructor(
    handle: KvHandle,
    private readonly watchdogMs: number,
    env: NodeJS.ProcessEnv,
  ) {
    this.worker = new Worker(workerScript('kv-survivor'), { workerData: { handle }, env });
    this.ready = new Promise((resolve, reject) => this.pending.set(0, { resolve, reject }));
    this.worker.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`survivor: ${m.error}`));
    });
    this.worker.on('error', (e) => {
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    });
  }

  request<T>(req: Record<string, unknown>, what: string): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`survivor hung for ${this.watchdogMs} ms: ${what}`));
      }, this.watchdogMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.worker.postMessage({ ...req, id });
    });
  }
}

export function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() > end) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 1);
    };
    tick();
  });
}

/** A worker of test/workers/<name>.ts whose error is kept: a wait under way (waitFor) fails with it. */
export interface Watched {
  w: Worker;
  failed: () => Error | undefined;
}

export function startWatched(name: string, data: Record<string, unknown>, env: NodeJS.ProcessEnv): Watched {
  const w = new Worker(workerScript(name), { workerData: data, env });
  let failed: Error | undefined;
  w.on('error', (e) => (failed = e));
  return { w, failed: () => failed };
}

/** Waits (watchdog `ms`) until `cond` holds; the worker's error, if it failed meanwhile, is thrown instead. */
export async function waitFor(cond: () => boolean, x: Watched, ms: number, what: string): Promise<void> {
  await until(() => cond() || x.failed() !== undefined, ms, what);
  const e = x.failed();
  if (e !== undefined) throw e;
}

/** The worker's next message (watchdog `ms`); its error rejects. */
export function nextMessage<T>(x: Watched, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    x.w.once('message', (m: T) => {
      clearTimeout(timer);
      resolve(m);
    });
    x.w.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export function same(content: Array<[string, string]>, model: Map<string, string>): boolean {
  const want = sortedEntries(model);
  return content.length === want.length && content.every(([k, v], i) => k === want[i][0] && v === want[i][1]);
}

export function describeDiff(content: Array<[string, string]>, model: Map<string, string>): string {
  const got = new Map(content);
  const lines: string[] = [];
  for (const k of new Set([...got.keys(), ...model.keys()])) {
    const a = got.get(k);
    const b = model.get(k);
    if (a !== b) lines.push(`  ${k}: store ${a?.slice(0, 40) ?? '(absent)'} model ${b?.slice(0, 40) ?? '(absent)'}`);
  }
  return lines.slice(0, 12).join('\n');
}

/** What the survivor's 'internals' request reports of what threads hold (kv-survivor.ts). */
export interface HeldInternals {
  pinned: number;
  openSlots: number;
  deadSlots: number;
  limboBlocks: number;
  /** snapshots still held, and snapshot slots of dead threads not yet released (stores that report them) */
  snapshots?: number;
  snapshotDeadSlots?: number;
}

/**
 * The end of a run of deaths: the survivor compacts and reports the store's internals, and
 * nothing the dead held may be held any more (no pin, no dead slot, no snapshot, limbo drained, at most
 * `maxOpenSlots` writer slots); then the survivor closes its handle. Returns the internals.
 */
export async function finishTrials<T extends HeldInternals>(
  survivor: Survivor,
  trials: number,
  maxOpenSlots = Infinity,
): Promise<T> {
  const last = await survivor.request<T>({ t: 'internals' }, 'compacting at the end');
  if (
    last.pinned !== 0 ||
    last.deadSlots !== 0 ||
    last.openSlots > maxOpenSlots ||
    last.limboBlocks !== 0 ||
    (last.snapshots ?? 0) !== 0 ||
    (last.snapshotDeadSlots ?? 0) !== 0
  )
    throw new Error(`after ${trials} deaths something is still held: ${JSON.stringify(last)}`);
  await survivor.request({ t: 'close' }, 'closing the survivor at the end');
  return last;
}

/**
 * A run's `finally`: the survivor's thread ends and the store's directory goes. The store is
 * closed only after a run that `finished` (finishTrials returned): after a failure, above all
 * in a red case whose switch lets no thread notice a death, a dead thread may still hold the
 * compaction mutex or an entry lock, and close() would wait for it on this thread forever (a
 * hung test file instead of a failed test). The mapping of such a store goes with the process.
 */
export async function endTrials(survivor: Survivor, db: KvStore, dir: string, finished: boolean): Promise<void> {
  await survivor.worker.terminate();
  try {
    if (finished) db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Every few trials: the survivor lets go of the store, `reopen` closes and opens it again
 * (recovery runs), the survivor attaches to the new handle, and what it reads must be `model`.
 * Returns the new handle.
 */
export async function reopenChecked(
  survivor: Survivor,
  reopen: () => KvStore,
  model: Map<string, string>,
  where: string,
): Promise<KvStore> {
  await survivor.request({ t: 'close' }, `closing the survivor after ${where}`);
  const db = reopen();
  await survivor.request({ t: 'attach', handle: db.share() }, `re-attaching after ${where}`);
  const reopened = await survivor.request<Array<[string, string]>>({ t: 'content' }, `reading after reopen, ${where}`);
  if (!same(reopened, model))
    throw new Error(`${where}: recovery disagrees with the running store:\n${describeDiff(reopened, model)}`);
  return db;
}
