/**
 * Growth is crash-safe: a child process writing durable puts into a growable store is killed
 * (SIGKILL) at a step inside a growth (file extended; new owner records free; superblock
 * naming the new size written), chosen by the seed. The store must then open at the old or
 * the new size with every acknowledged key whole, and keep growing afterwards.
 *
 * Red case: DAXSTORE_TEST_BREAK=grow-superblock-first writes the superblock before the file
 * has the new size; a kill between the two leaves a superblock larger than the file (ECORRUPT).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { open } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { workerScript } from '../helpers/workers.js';
import { breakEnv } from '../../src/test-break.js';
import { growValue } from '../helpers/grow.js';
import { tempPaths } from '../helpers/temp-paths.js';

const FILE = 'test/kv/kv-growth-crash.test.ts';
const STEPS = ['file-grown', 'records-free', 'superblock-written'] as const;
const KEYS = 40_000; // ~70 MiB of records: several growths from the initial 10 MiB
const temp = tempPaths('grow-crash');

function trialPaths(): [string, string] {
  const base = temp.next(['.ack']);
  return [base, `${base}.ack`];
}

/** One trial: the child killed at `step` of growth number `growth`; then reopen and check. */
function trial(growth: number, step: (typeof STEPS)[number], env: NodeJS.ProcessEnv): string {
  const [store, ackFile] = trialPaths();
  const child = spawnSync(
    process.execPath,
    [workerScript('kv-grow-child'), store, ackFile, String(KEYS), String(growth), step],
    { env, timeout: 120_000, encoding: 'utf8' },
  );
  if (child.error !== undefined) throw new Error(`child: ${child.error.message} (watchdog: 120 s)`);
  if (child.signal !== 'SIGKILL')
    throw new Error(`child was not killed inside growth ${growth} at ${step}: exit ${child.status} ${child.stderr}`);
  const acked = fs.readFileSync(ackFile).readUInt32LE(0);
  const where = `killed at ${step} of growth ${growth} after ${acked} acknowledged puts`;
  let db;
  let again = 0;
  try {
    db = open(store);
  } catch (e) {
    throw new Error(`${where}: the store does not open: ${(e as Error).message}`);
  }
  try {
    for (let n = 0; n < acked; n++) {
      const got = db.get(Buffer.from(`k${n}`));
      if (got === undefined || !Buffer.from(got).equals(growValue(0, n))) throw new Error(`${where}: key k${n} lost`);
    }
    const size = db.dax.device.media.size;
    // It keeps growing: puts until the next growth (the room a killed growth added comes first).
    let n = 0;
    for (; n < 100_000 && db.dax.device.media.size <= size; n++) db.put(Buffer.from(`again${n}`), growValue(1, n));
    if (db.dax.device.media.size <= size) throw new Error(`${where}: the store did not grow after the reopen`);
    again = n;
  } finally {
    db.close();
  }
  db = open(store);
  try {
    for (let n = 0; n < again; n += 97)
      if (!Buffer.from(db.get(Buffer.from(`again${n}`)) ?? []).equals(growValue(1, n)))
        throw new Error(`${where}: key again${n} lost after the second reopen`);
  } finally {
    db.close();
  }
  return where;
}

describe('a crash inside a growth', () => {
  it('killed at every step of a growth, the store opens at the old or new size with every acknowledged key', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const trials = scaled(STEPS.length);
      for (let t = 0; t < trials; t++) {
        const step = STEPS[t % STEPS.length];
        const growth = 1 + Math.floor(r() * 3);
        trial(growth, step, process.env);
        temp.removeAll();
      }
    });
  }, 600_000);

  it('DAXSTORE_TEST_BREAK=grow-superblock-first: a kill between the superblock and the file leaves a store that does not open (goes red)', async () => {
    const env = { ...process.env, ...breakEnv('grow-superblock-first') };
    await expect(
      withSeed(FILE, (seed) => trial(1 + Math.floor(rng(seed)() * 3), 'superblock-written', env)),
    ).rejects.toThrow(/does not open/);
  }, 300_000);
});
