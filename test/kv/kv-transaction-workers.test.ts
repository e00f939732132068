/**
 * Transactions across threads.
 *   - A bank: 50 accounts of 1000; three workers run random transfers through transactionSync
 *     (read both balances, move an amount if the source has it; every 8th also sums every
 *     account with txn.range inside the transaction) while a fourth takes snapshots (summed
 *     with range and with get), db.range() scans and read-only transactions: the total is the
 *     same in every transaction, snapshot and scan, and at the end.
 *   - Counters: four workers increment one key through transactionSync: its final value is
 *     the number of committed increments (an ECONFLICT counts as not committed).
 * Red with DAXSTORE_TEST_BREAK=kv-txn-no-validate in the writers (commits without validating
 * their reads: lost updates, money created or destroyed) and with
 * DAXSTORE_TEST_BREAK=kv-snapshot-newest in the auditor (its snapshots and scans read each
 * account's newest value: sums taken across transfers).
 * Not covered here: crashes (kv-crash runs transactions in its workload).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { runWorker } from '../helpers/workers.js';
import { scaled, testSeed, replayHint } from '../helpers/seed.js';
import { breakEnv, type SwitchName } from '../../src/test-break.js';
import type { MvccWorkerData, MvccWorkerResult } from '../workers/kv-mvcc.js';

const FILE = 'test/kv/kv-transaction-workers.test.ts';
const ACCOUNTS = 50;
const TOTAL = ACCOUNTS * 1000;
const td = new TextDecoder();
const account = (i: number): string => `acct${String(i).padStart(4, '0')}`;

interface Party {
  role: MvccWorkerData['role'];
  env?: Record<string, string>;
}

async function run(
  db: KvStore,
  parties: Party[],
  durationMs: number,
  seed: number,
): Promise<Array<MvccWorkerResult & { role: string }>> {
  const handle = db.share();
  const control = new SharedArrayBuffer(8);
  const c = new Int32Array(control);
  const results = parties.map(({ role, env }, i) =>
    runWorker<MvccWorkerResult>(
      'kv-mvcc',
      { handle, control, parties: parties.length, keys: ACCOUNTS, total: TOTAL, seed: seed + 7919 * i, role },
      60_000,
      env,
    ).then((r) => ({ ...r, role })),
  );
  while (Atomics.load(c, 0) < parties.length) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, durationMs));
  Atomics.store(c, 1, 1);
  return Promise.all(results);
}

function bank(): KvStore {
  const db = openMedia(createSimMedia(64 * 2 ** 20), { durability: 'none' });
  db.batch(Array.from({ length: ACCOUNTS }, (_, i) => ({ type: 'put' as const, key: account(i), value: '1000' })));
  return db;
}

function sum(db: KvStore): number {
  let total = 0;
  for (const [, v] of db.range({ prefix: 'acct' })) total += Number(td.decode(v));
  return total;
}

async function runBank(
  durationMs: number,
  seed: number,
  writerBreak?: SwitchName,
  auditorBreak?: SwitchName,
): Promise<{ end: number; results: Array<MvccWorkerResult & { role: string }> }> {
  const db = bank();
  try {
    const w = writerBreak === undefined ? undefined : breakEnv(writerBreak);
    const a = auditorBreak === undefined ? undefined : breakEnv(auditorBreak);
    const results = await run(
      db,
      [
        { role: 'transfer', env: w },
        { role: 'transfer', env: w },
        { role: 'transfer', env: w },
        { role: 'auditor', env: a },
      ],
      durationMs,
      seed,
    );
    expect(db.stats().snapshots).toBe(0);
    return { end: sum(db), results };
  } finally {
    db.close();
  }
}

async function runCounters(
  durationMs: number,
  seed: number,
  writerBreak?: SwitchName,
): Promise<{ counter: number; committed: number; conflicts: number }> {
  const db = openMedia(createSimMedia(64 * 2 ** 20), { durability: 'none' });
  try {
    const env = writerBreak === undefined ? undefined : breakEnv(writerBreak);
    const results = await run(
      db,
      Array.from({ length: 4 }, () => ({ role: 'counter' as const, env })),
      durationMs,
      seed,
    );
    const got = db.get('counter');
    return {
      counter: got === undefined ? 0 : Number(td.decode(got)),
      committed: results.reduce((n, r) => n + r.ops, 0),
      conflicts: results.reduce((n, r) => n + r.conflicts, 0),
    };
  } finally {
    db.close();
  }
}

const describeRun = (results: Array<MvccWorkerResult & { role: string }>): string =>
  results.map((r) => `${r.role} ${r.ops} (${r.partial} inconsistent, ${r.conflicts} ECONFLICT)`).join(', ');

describe('kv transactions across threads', () => {
  it('bank: the total is the same in every transaction, snapshot and scan, and at the end', async () => {
    const seed = testSeed();
    try {
      const { end, results } = await runBank(scaled(1500), seed);
      console.log(`bank: ${describeRun(results)}; end total ${end}`);
      expect(end).toBe(TOTAL);
      expect(results.filter((r) => r.role === 'transfer').reduce((n, r) => n + r.ops, 0)).toBeGreaterThan(20);
      expect(results.find((r) => r.role === 'auditor')!.ops).toBeGreaterThan(0);
      for (const r of results) expect(r.partial, r.detail.join('; ')).toBe(0);
    } catch (e) {
      console.error(replayHint(seed, FILE));
      throw e;
    }
  });

  it('counters: four workers incrementing one key through transactions end at the committed count', async () => {
    const seed = testSeed();
    const { counter, committed, conflicts } = await runCounters(scaled(1000), seed);
    console.log(`counters: ${committed} committed, ${conflicts} gave up with ECONFLICT, counter ${counter}`);
    expect(committed).toBeGreaterThan(20);
    expect(counter).toBe(committed);
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-txn-no-validate in the writers (money and increments lost)', async () => {
    let red = false;
    for (let attempt = 0; attempt < 3 && !red; attempt++) {
      const { end, results } = await runBank(1500, testSeed(), 'kv-txn-no-validate');
      const { counter, committed } = await runCounters(1000, testSeed(), 'kv-txn-no-validate');
      console.log(
        `kv-txn-no-validate: bank end total ${end} of ${TOTAL} (${describeRun(results)}); counter ${counter} of ${committed}`,
      );
      red = end !== TOTAL && counter !== committed;
    }
    expect(red).toBe(true);
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-snapshot-newest in the auditor (sums across transfers)', async () => {
    let inconsistent = 0;
    for (let attempt = 0; attempt < 3 && inconsistent === 0; attempt++) {
      const { results } = await runBank(1500, testSeed(), undefined, 'kv-snapshot-newest');
      inconsistent = results.find((r) => r.role === 'auditor')!.partial;
      console.log(`kv-snapshot-newest: ${describeRun(results)}`);
    }
    expect(inconsistent).toBeGreaterThan(0);
  });
});
