/**
 * Snapshots across threads: a worker loops 200-key batches that write one version n into every
 * key while other workers scan with db.range() (an implicit snapshot) and take db.snapshot()s
 * and read them with get, getView and range in random orders. Every scan and every snapshot
 * must see exactly one version: no reader ever sees part of a batch, whatever the writer does
 * meanwhile. Red with DAXSTORE_TEST_BREAK=kv-snapshot-newest in the readers (snapshot reads
 * take each key's newest version: the range of the old store, before snapshots) and with
 * DAXSTORE_TEST_BREAK=kv-snapshot-no-wait (a snapshot reads at the last sequence taken without
 * waiting for it to be published: it reads the keys a batch has published and the old
 * version of the others).
 * Not covered here: transactions (kv-transaction-workers), crashes (kv-crash, the crash checker).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { runWorker } from '../helpers/workers.js';
import { scaled } from '../helpers/seed.js';
import { breakEnv, type SwitchName } from '../../src/test-break.js';
import type { MvccWorkerData, MvccWorkerResult } from '../workers/kv-mvcc.js';

const KEYS = 200;

async function run(
  durationMs: number,
  readerBreak?: SwitchName,
): Promise<{ writer: MvccWorkerResult; readers: Array<MvccWorkerResult & { role: string }> }> {
  const db = openMedia(createSimMedia(128 * 2 ** 20), { durability: 'none' });
  try {
    const handle = db.share();
    const control = new SharedArrayBuffer(8);
    const c = new Int32Array(control);
    const roles: Array<MvccWorkerData['role']> = ['scanner', 'scanner', 'snapshotter'];
    const parties = roles.length + 1;
    const common = { handle, control, parties, keys: KEYS };
    const env = readerBreak === undefined ? undefined : breakEnv(readerBreak);
    const writer = runWorker<MvccWorkerResult>('kv-mvcc', { ...common, role: 'batch-writer' });
    const readers = roles.map((role) =>
      runWorker<MvccWorkerResult>('kv-mvcc', { ...common, role }, 60_000, env).then((r) => ({ ...r, role })),
    );
    while (Atomics.load(c, 0) < parties) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, durationMs));
    Atomics.store(c, 1, 1);
    const result = { writer: await writer, readers: await Promise.all(readers) };
    const stats = db.stats();
    expect(stats.snapshots).toBe(0); // every range and snapshot released
    return result;
  } finally {
    db.close();
  }
}

const summary = (readers: Array<MvccWorkerResult & { role: string }>): string =>
  readers.map((r) => `${r.role} ${r.ops} (${r.partial} partial)`).join(', ');

describe('kv snapshots across threads', () => {
  it('no range() and no snapshot sees part of a batch while a worker writes batches', async () => {
    const { writer, readers } = await run(scaled(800));
    console.log(`batches ${writer.ops}; ${summary(readers)}`);
    expect(writer.ops).toBeGreaterThan(5);
    for (const r of readers) {
      expect(r.ops).toBeGreaterThan(0);
      expect(r.torn).toBe(0);
      expect(r.partial, r.detail.join('; ')).toBe(0);
    }
  });

  for (const name of ['kv-snapshot-newest', 'kv-snapshot-no-wait'] as const) {
    it(`goes red with DAXSTORE_TEST_BREAK=${name} in the readers`, async () => {
      let partial = 0;
      for (let attempt = 0; attempt < 6 && partial === 0; attempt++) {
        const { readers } = await run(1000, name);
        partial = readers.reduce((n, r) => n + r.partial, 0);
        console.log(`${name}: ${summary(readers)}; ${readers.flatMap((r) => r.detail)[0] ?? ''}`);
      }
      expect(partial).toBeGreaterThan(0);
    });
  }
});
