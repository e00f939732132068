/**
 * A thread that dies never wedges the store. A worker runs one kind of operation in a loop
 * (put, large put, delete, batch, deleteRange, compaction, range, read, getView inside read,
 * tree growth, snapshots and unfinished iterators held, transactions) and is terminated at a random moment; then a survivor thread works on the same
 * keys under a watchdog (a hang is a failure with a message, not a suite timeout), and the
 * whole content is checked against a model: what the dead worker had acknowledged is there,
 * and the one operation it may have been in is either wholly applied or wholly absent. Every
 * few trials the store is closed and reopened, so the running store is also held to what
 * recovery makes of the log. Workers that throw, exit or return without close() are run
 * hundreds of times in a small store, which must keep reclaiming their writer slots and
 * segments. With DAXSTORE_TEST_BREAK=death-unnoticed the same trials must go red.
 *
 * Not covered here: deaths of the main thread (the process ends), deaths inside the DAX object
 * API used directly (test/dax), crash images (kv-crash.test.ts, the crash checker).
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { type Durability, type KvStore } from '../../src/kv/index.js';
import { open } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { workerScript } from '../helpers/workers.js';
import { breakEnv, withBroken } from '../../src/test-break.js';
import { writerReapStats } from '../../src/kv/writer-reaper.js';
import { KINDS, applyOp, opAt, survivorOps, type Kind, type Op } from '../helpers/thread-death.js';
import {
  Survivor,
  describeDiff,
  endTrials,
  finishTrials,
  reopenChecked,
  same,
  until,
  type HeldInternals,
} from '../helpers/survivor.js';

const FILE = 'test/kv/kv-thread-death.test.ts';
/** Small enough that segments or limbo a dead thread kept would run it out of space within the run. */
const STORE_BYTES = 48 * 1024 * 1024;
type End = 'terminate' | 'throw' | 'exit' | 'return';

interface RunOptions {
  seed: number;
  trials: number;
  kinds: readonly Kind[];
  watchdogMs: number;
  env: NodeJS.ProcessEnv;
  /** reopen the store every this many trials */
  reopenEvery: number;
  /** how the dying workers end: terminated at a random moment, or after a random number of ops */
  ends: readonly End[];
  durability?: Durability;
}

interface Internals extends HeldInternals {
  segments: number;
  freeBlocks: number;
  snapshots: number;
  snapshotDeadSlots: number;
}

interface RunSummary {
  final?: Internals;
  trials: number;
  inFlight: number;
  appliedInFlight: number;
  byKind: Record<string, number>;
  reopens: number;
}

function modelAfter(base: Map<string, string>, kind: Kind, seed: number, ops: number): Map<string, string> {
  const m = new Map(base);
  for (let i = 0; i < ops; i++) applyOp(m, opAt(kind, seed, i));
  return m;
}

async function runTrials(o: RunOptions): Promise<RunSummary> {
  const dir = mkdtempSync(path.join('/dev/shm', 'kv-death-'));
  const file = path.join(dir, 'store');
  const rand = rng(o.seed);
  const durability = o.durability ?? 'sync';
  let db: KvStore = open(file, { size: STORE_BYTES, durability });
  const survivor = new Survivor(db.share(), o.watchdogMs, o.env);
  const summary: RunSummary = { trials: 0, inFlight: 0, appliedInFlight: 0, byKind: {}, reopens: 0 };
  let model = new Map<string, string>();
  let finished = false;
  try {
    await survivor.ready;
    for (let t = 0; t < o.trials; t++) {
      const kind = o.kinds[t % o.kinds.length];
      const end = o.ends[Math.floor(rand() * o.ends.length)];
      const seed = (o.seed + Math.imul(t + 1, 0x2545f491)) >>> 0;
      const progress = new SharedArrayBuffer(16);
      const p = new Int32Array(progress);
      const ops = 3 + Math.floor(rand() * 30);
      const w = new Worker(workerScript('kv-dying'), {
        workerData: { handle: db.share(), kind, seed, progress, end, ops },
        env: o.env,
      });
      let failed: Error | undefined;
      w.on('error', (e) => (failed = e));
      const exited = new Promise<number>((resolve) => w.once('exit', resolve));
      if (end === 'terminate') {
        await until(() => Atomics.load(p, 2) === 1 || failed !== undefined, 60_000, `worker ${t} to attach`);
        if (failed !== undefined) throw failed;
        const delayMs = rand() * (kind === 'large-put' || kind === 'compaction' ? 40 : 15);
        await new Promise((r) => setTimeout(r, delayMs));
        await w.terminate();
        if (failed !== undefined)
          throw new Error(`trial ${t} (${kind}): the worker failed before its death: ${failed}`);
      } else {
        const code = await exited;
        const expected = end === 'throw' && failed?.message === 'the dying worker throws on purpose';
        if (failed !== undefined && !expected)
          throw new Error(`trial ${t} (${kind}, ${end}): the worker failed: ${failed}`);
        if (Atomics.load(p, 1) !== ops)
          throw new Error(
            `trial ${t} (${kind}, ${end}): ended after ${Atomics.load(p, 1)} of ${ops} ops (exit ${code})`,
          );
      }
      const acked = Atomics.load(p, 1);
      const started = Atomics.load(p, 0);
      const where = `trial ${t} (${kind}, ${end}, seed ${seed}): died after ${acked} acknowledged ops${started > acked ? `, inside op ${acked} ${JSON.stringify(opAt(kind, seed, acked)).slice(0, 120)}` : ''}`;
      const before = modelAfter(model, kind, seed, acked);
      const after = started > acked ? modelAfter(model, kind, seed, started) : before;
      const content = await survivor.request<Array<[string, string]>>({ t: 'content' }, `reading after ${where}`);
      if (same(content, before)) model = before;
      else if (same(content, after)) {
        model = after;
        summary.appliedInFlight++;
      } else
        throw new Error(
          `${where}: the store matches neither the acknowledged ops nor them plus the op in flight:\n${describeDiff(content, before)}`,
        );
      if (started > acked) summary.inFlight++;
      const writes: Op[] = survivorOps(seed, t);
      await survivor.request({ t: 'ops', ops: writes }, `writing the same keys after ${where}`);
      for (const op of writes) applyOp(model, op);
      if (t % 4 === 3) await survivor.request({ t: 'compact' }, `compacting after ${where}`);
      const again = await survivor.request<Array<[string, string]>>({ t: 'content' }, `reading again after ${where}`);
      if (!same(again, model)) throw new Error(`${where}: after the survivor's writes:\n${describeDiff(again, model)}`);
      if (t % o.reopenEvery === o.reopenEvery - 1) {
        const closing = db;
        db = await reopenChecked(
          survivor,
          () => {
            closing.close();
            return open(file, { durability });
          },
          model,
          where,
        );
        summary.reopens++;
      }
      summary.trials++;
      summary.byKind[kind] = (summary.byKind[kind] ?? 0) + 1;
    }
    // Everything the dead held is back: no pin, no writer slot but the survivor's and the
    // opener's (it adopts the last segment at open), limbo drained.
    summary.final = await finishTrials<Internals>(survivor, o.trials, 2);
    finished = true;
    return summary;
  } finally {
    await endTrials(survivor, db, dir, finished);
  }
}

describe('a thread that dies never wedges the store', () => {
  it('a worker terminated at random moments inside every kind of operation leaves the store usable and whole', async () => {
    const trials = scaled(KINDS.length * 10);
    const summary = await withSeed(FILE, (seed) =>
      runTrials({
        seed,
        trials,
        kinds: KINDS,
        watchdogMs: 60_000,
        env: process.env,
        reopenEvery: 5,
        ends: ['terminate'],
      }),
    );
    console.log(
      `thread death (terminate): ${JSON.stringify(summary)}; main thread's reaps: ${JSON.stringify(writerReapStats)}`,
    );
    expect(summary.trials).toBe(trials);
  }, 3_600_000);

  it("with 'group' durability too: what readers saw of a dead worker's writes is what a reopen finds", async () => {
    const trials = scaled(KINDS.length * 3);
    const summary = await withSeed(FILE, (seed) =>
      runTrials({
        seed,
        trials,
        kinds: KINDS,
        watchdogMs: 60_000,
        env: process.env,
        reopenEvery: 2,
        ends: ['terminate'],
        durability: 'group',
      }),
    );
    console.log(
      `thread death (terminate, group): ${JSON.stringify(summary)}; main thread's reaps: ${JSON.stringify(writerReapStats)}`,
    );
    expect(summary.trials).toBe(trials);
  }, 3_600_000);

  it('workers that throw, exit or return without close(), again and again in a small store: everything is reclaimed', async () => {
    const trials = scaled(100);
    const summary = await withSeed(FILE, (seed) =>
      runTrials({
        seed,
        trials,
        kinds: ['put', 'large-put', 'batch', 'read', 'get-view', 'compaction', 'snapshot', 'transaction'],
        watchdogMs: 60_000,
        env: process.env,
        reopenEvery: 50,
        ends: ['throw', 'exit', 'return'],
      }),
    );
    console.log(
      `thread death (throw, exit, return): ${JSON.stringify(summary)}; main thread's reaps: ${JSON.stringify(writerReapStats)}`,
    );
    expect(summary.trials).toBe(trials);
  }, 3_600_000);

  it('DAXSTORE_TEST_BREAK=death-unnoticed: terminated workers wedge the survivor or tear an operation (goes red)', async () => {
    const env = { ...process.env, ...breakEnv('death-unnoticed') };
    // The main thread too (it reaps at every share()): no thread may notice a death.
    await expect(
      withBroken('death-unnoticed', () =>
        withSeed(FILE, (seed) =>
          runTrials({
            seed,
            trials: 40,
            kinds: ['put', 'batch'],
            watchdogMs: 5_000,
            env,
            reopenEvery: 1000,
            ends: ['terminate'],
          }),
        ),
      ),
    ).rejects.toThrow(/hung|matches neither|still held/);
  }, 600_000);

  it('DAXSTORE_TEST_BREAK=death-unnoticed: workers that end without close() leak their slots and segments (goes red)', async () => {
    const env = { ...process.env, ...breakEnv('death-unnoticed') };
    // The main thread too (it reaps at every share()): no thread may notice a death.
    await expect(
      withBroken('death-unnoticed', () =>
        withSeed(FILE, (seed) =>
          runTrials({
            seed,
            trials: 60,
            kinds: ['put'],
            watchdogMs: 10_000,
            env,
            reopenEvery: 1000,
            ends: ['exit', 'return'],
          }),
        ),
      ),
    ).rejects.toThrow(/ENOSPC|EBUSY|still held|hung/);
  }, 600_000);
});
