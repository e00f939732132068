/**
 * A thread whose store handle is closed does not complete a reap without the store's part. A
 * worker closes its handle while a DaxSpace attached to the same space keeps its epoch domain
 * open; another worker dies inside a batch whose record is sealed (a roll-forward's case), in
 * half the trials pinned inside read(). The first worker then reaps the dead (reapDead): its
 * domain must refuse, since no live store handle of its thread can roll the batch forward or
 * release the dead writer's slot, and leave the reap to a thread that can. A survivor thread
 * then reads every key under a watchdog (the batch whole), writes the same keys, a reopen must
 * agree, and at the end nothing the dead held is held: no pin, no writer slot, no segment kept.
 * Red with DAXSTORE_TEST_BREAK=kv-close-keeps-death-handler: the closed handle's handler stays
 * registered and does nothing, the reap completes without it, the batch's keys are released
 * unpublished and the dead writer's slot is never reaped.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { type KvStore } from '../../src/kv/index.js';
import { open } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { workerScript } from '../helpers/workers.js';
import { breakEnv } from '../../src/test-break.js';
import { deathCount } from '../../src/device/participants.js';
import { Survivor, describeDiff, endTrials, finishTrials, reopenChecked, same, until } from '../helpers/survivor.js';
import type { Op } from '../helpers/thread-death.js';

const FILE = 'test/kv/kv-reap-closed-handle.test.ts';
const WATCHDOG_MS = 60_000;
const KEYS = Array.from({ length: 8 }, (_, i) => `c${i}`);
type BatchOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

function value(r: () => number, tag: string): string {
  return `${tag} ${'y'.repeat(r() < 0.2 ? 20_000 : Math.floor(r() * 300))}`;
}

/** The next message of `w`, or its error, under the watchdog. */
function answer<T>(w: Worker, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer in ${WATCHDOG_MS} ms`)), WATCHDOG_MS);
    w.once('message', (m: T) => {
      clearTimeout(timer);
      resolve(m);
    });
    w.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** One trial in a store of its own; what the closed handle's thread answered to reapDead(). */
async function trial(seed: number, t: number, env: NodeJS.ProcessEnv): Promise<boolean> {
  const r = rng(seed + t);
  const pinned = t % 2 === 1;
  const where = `trial ${t} (${pinned ? 'dead inside read()' : 'dead unpinned'})`;
  const dir = mkdtempSync(path.join('/dev/shm', 'kv-reap-closed-'));
  const file = path.join(dir, 'store');
  let db: KvStore = open(file, { size: 16 * 1024 * 1024 });
  const model = new Map<string, string>();
  for (const k of KEYS) {
    if (r() < 0.4) continue;
    const v = value(r, `first ${k}`);
    db.put(k, v);
    model.set(k, v);
  }
  const handle = db.share();
  const survivor = new Survivor(handle, WATCHDOG_MS, env);
  const closer = new Worker(workerScript('kv-closed-reaper'), { workerData: { handle }, env });
  const started = answer(closer, `${where}: the closed handle's thread starting`);
  let finished = false;
  try {
    await survivor.ready;
    await started;
    const keys = [...KEYS].sort(() => r() - 0.5).slice(0, 2 + Math.floor(r() * 5));
    const ops: BatchOp[] = keys.map((key) =>
      model.has(key) && r() < 0.35 ? { type: 'del', key } : { type: 'put', key, value: value(r, `batch ${key}`) },
    );
    for (const op of ops)
      if (op.type === 'put') model.set(op.key, op.value);
      else model.delete(op.key);
    const progress = new SharedArrayBuffer(8);
    const p = new Int32Array(progress);
    const writer = new Worker(workerScript('kv-reaper-death'), {
      workerData: { role: 'writer', handle, progress, ops, pinned },
      env,
    });
    let failed: Error | undefined;
    writer.on('error', (e) => (failed = e));
    await until(() => Atomics.load(p, 0) === 1 || failed !== undefined, WATCHDOG_MS, `${where}: the writer's batch`);
    if (failed !== undefined) throw failed;
    const deaths = deathCount();
    await writer.terminate();
    await until(() => deathCount() > deaths, WATCHDOG_MS, `${where}: the writer's death to be marked`);
    const reply = answer<boolean>(closer, `${where}: reapDead in the closed handle's thread`);
    closer.postMessage('reap');
    const reaped = await reply;
    const content = await survivor.request<Array<[string, string]>>({ t: 'content' }, `reading, ${where}`);
    if (!same(content, model))
      throw new Error(`${where}: the batch is not there whole:\n${describeDiff(content, model)}`);
    const mine: Op[] = keys.map((k, i) => (i % 2 === 0 ? { t: 'put', k, v: `survivor ${k}` } : { t: 'del', k }));
    await survivor.request({ t: 'ops', ops: mine }, `writing the batch's keys, ${where}`);
    for (const op of mine)
      if (op.t === 'put') model.set(op.k, op.v);
      else if (op.t === 'del') model.delete(op.k);
    db = await reopenChecked(
      survivor,
      () => {
        db.close();
        return open(file);
      },
      model,
      where,
    );
    await finishTrials(survivor, 1);
    finished = true;
    return reaped;
  } finally {
    const ended = answer(closer, `${where}: closing the space`).catch(() => undefined);
    closer.postMessage('end');
    await ended;
    await closer.terminate();
    await endTrials(survivor, db, dir, finished);
  }
}

describe("a closed store handle's thread does not complete a reap without the store's part", () => {
  const trials = scaled(4);
  it(
    `${trials} writers die while another thread's handle is closed; their slot, segment, pin and batch are recovered`,
    async () => {
      await withSeed(FILE, async (seed) => {
        for (let t = 0; t < trials; t++) {
          // The closed handle's thread refuses the reap (no live store handle to run its part).
          expect(await trial(seed, t, process.env), `trial ${t}: reapDead in the closed handle's thread`).toBe(false);
        }
      });
    },
    60_000 + trials * 30_000,
  );

  it('goes red with DAXSTORE_TEST_BREAK=kv-close-keeps-death-handler (the reap completes without the store)', async () => {
    const env = { ...process.env, ...breakEnv('kv-close-keeps-death-handler') };
    await expect(withSeed(FILE, (seed) => trial(seed, 0, env))).rejects.toThrow(/not there whole|still held/);
  }, 120_000);
});
