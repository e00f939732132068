/**
 * The death reaper checks what shared memory tells it before it reads or frees anything there
 * (src/kv/writer-reaper.ts isEntryOf). A worker dies holding the keys of a batch whose record
 * is sealed and committed, its held entries' value words spoilt to name offset 0 (the
 * superblock: no entry of their key); the survivor (this thread) rolls the record forward: the
 * batch is published whole, nothing is read or retired at offset 0 (an entry's counters there
 * would index the segment table at extent -1: RangeError), the store keeps working and a
 * reopen agrees. With DAXSTORE_TEST_BREAK=kv-reap-trust-index the reaper takes the value words
 * for an entry and the survivor's next operation fails.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type KvStore } from '../../src/kv/index.js';
import { open } from '../helpers/kv-bytes.js';
import { rng, withSeed } from '../helpers/seed.js';
import { workerScript } from '../helpers/workers.js';
import { until } from '../helpers/survivor.js';
import { withBroken } from '../../src/test-break.js';
import { deathCount } from '../../src/device/participants.js';
import { writerReapStats } from '../../src/kv/writer-reaper.js';

const FILE = 'test/kv/kv-reap-checks.test.ts';
const WATCHDOG_MS = 60_000;

interface Trial {
  dir: string;
  file: string;
  db: KvStore;
  puts: Array<[string, string]>;
  bad: number[];
}

/** A store whose keys hold values, and a worker that died inside a batch over them with `bad` entries spoilt. */
async function deadBatch(seed: number): Promise<Trial> {
  const r = rng(seed);
  const dir = mkdtempSync(path.join('/dev/shm', 'kv-reap-checks-'));
  const file = path.join(dir, 'store');
  const db = open(file, { size: 16 * 1024 * 1024 });
  try {
    return await killedInBatch(r, seed, dir, file, db);
  } catch (e) {
    db.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function killedInBatch(r: () => number, seed: number, dir: string, file: string, db: KvStore): Promise<Trial> {
  const n = 2 + Math.floor(r() * 4);
  const keys = Array.from({ length: n }, (_, i) => `key-${i}`);
  for (const k of keys) db.put(k, `old ${k} ${seed}`);
  const puts = keys.map((k): [string, string] => [k, `new ${k} ${seed} ${'x'.repeat(Math.floor(r() * 200))}`]);
  const bad = keys.map((_, i) => i).filter(() => r() < 0.5);
  if (bad.length === 0) bad.push(Math.floor(r() * n));
  const progress = new SharedArrayBuffer(4);
  const p = new Int32Array(progress);
  const deaths = deathCount();
  const w = new Worker(workerScript('kv-reap-bad-index'), { workerData: { handle: db.share(), progress, puts, bad } });
  let failed: Error | undefined;
  w.on('error', (e) => (failed = e));
  await until(
    () => Atomics.load(p, 0) === 1 || failed !== undefined,
    WATCHDOG_MS,
    'the worker to hold its sealed batch',
  );
  if (failed !== undefined) throw failed;
  await w.terminate();
  await until(() => deathCount() > deaths, WATCHDOG_MS, "the worker's death to be marked");
  return { dir, file, db, puts, bad };
}

function text(v: Uint8Array | undefined): string | undefined {
  return v === undefined ? undefined : Buffer.from(v).toString();
}

describe('the death reaper checks what an entry names before reading it', () => {
  it('a dead batch over entries that name no entry is published whole; nothing is read there', async () => {
    await withSeed(FILE, async (seed) => {
      const before = writerReapStats.oldNotEntry;
      const t = await deadBatch(seed);
      try {
        for (const [k, v] of t.puts) expect(text(t.db.get(k)), k).toBe(v);
        expect(writerReapStats.oldNotEntry - before).toBe(t.bad.length);
        t.db.put(t.puts[0][0], 'after');
        t.db.delete(t.puts[t.puts.length - 1][0]);
        const want = new Map(t.puts);
        want.set(t.puts[0][0], 'after');
        want.delete(t.puts[t.puts.length - 1][0]);
        t.db.close();
        t.db = open(t.file);
        for (const [k] of t.puts) expect(text(t.db.get(k)), k).toBe(want.get(k));
      } finally {
        t.db.close();
        rmSync(t.dir, { recursive: true, force: true });
      }
    });
  }, 120_000);

  it('DAXSTORE_TEST_BREAK=kv-reap-trust-index: the reaper reads an entry at offset 0 and fails (goes red)', async () => {
    await withSeed(FILE, async (seed) => {
      const t = await deadBatch(seed);
      try {
        expect(() => withBroken('kv-reap-trust-index', () => t.db.get(t.puts[0][0]))).toThrow(RangeError);
      } finally {
        try {
          t.db.close();
        } catch {
          // the broken reap may leave the close something to refuse: the file goes all the same
        }
        rmSync(t.dir, { recursive: true, force: true });
      }
    });
  }, 120_000);
});
