/**
 * Conditional writes: put(key, value, { ifVersion }) and delete(key, { ifVersion }) write only
 * when the key's version (getEntry().version, the sequence of the write that stored its value)
 * is the one given, or for ifVersion null (put) when the key is absent; they return whether they
 * wrote. Four workers looping getEntry then put(n + 1, { ifVersion }) on one counter end with
 * the number of puts that returned true. Red with DAXSTORE_TEST_BREAK=kv-ifversion-unlocked in
 * the workers (the version compared before the entry lock is taken: increments lost).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { runWorker } from '../helpers/workers.js';
import { scaled } from '../helpers/seed.js';
import { expectCode } from '../helpers/expect-code.js';
import { breakEnv } from '../../src/test-break.js';
import type { MvccWorkerResult } from '../workers/kv-mvcc.js';

const td = new TextDecoder();

async function casCounters(
  durationMs: number,
  env?: Record<string, string>,
): Promise<{ counter: number; ok: number; failed: number }> {
  const db = openMedia(createSimMedia(64 * 2 ** 20), { durability: 'none' });
  try {
    const handle = db.share();
    const control = new SharedArrayBuffer(8);
    const c = new Int32Array(control);
    const results = Array.from({ length: 4 }, () =>
      runWorker<MvccWorkerResult>(
        'kv-mvcc',
        { handle, control, parties: 4, keys: 1, role: 'cas-counter' },
        60_000,
        env,
      ),
    );
    while (Atomics.load(c, 0) < 4) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, durationMs));
    Atomics.store(c, 1, 1);
    const all = await Promise.all(results);
    return {
      counter: Number(td.decode(db.get('counter') ?? new Uint8Array())),
      ok: all.reduce((n, r) => n + r.ops, 0),
      failed: all.reduce((n, r) => n + r.conflicts, 0),
    };
  } finally {
    db.close();
  }
}

describe('kv conditional writes', () => {
  it('put and delete with ifVersion write only at the version given (null: only when absent)', () => {
    const db = openMedia(createSimMedia(16 * 2 ** 20), { durability: 'none' });
    expect(db.getEntry('k')).toBeUndefined();
    expect(db.put('k', 'one', { ifVersion: 12345 })).toBe(false);
    expect(db.put('k', 'one', { ifVersion: null })).toBe(true);
    expect(db.put('k', 'again', { ifVersion: null })).toBe(false);
    const v1 = db.getEntry('k')!;
    expect(td.decode(v1.value)).toBe('one');
    expect(db.put('k', 'two')).toBe(true);
    const v2 = db.getEntry('k')!.version;
    expect(v2).toBeGreaterThan(v1.version);
    expect(db.put('k', 'stale', { ifVersion: v1.version })).toBe(false);
    expect(db.put('k', 'three', { ifVersion: v2 })).toBe(true);
    expect(db.delete('k', { ifVersion: v2 })).toBe(false);
    expect(db.delete('k', { ifVersion: db.getEntry('k')!.version })).toBe(true);
    expect(db.has('k')).toBe(false);
    expect(db.put('k', new Uint8Array(30_000), { ifVersion: 1 })).toBe(false); // a large value: its object given back
    expect(db.stats().largeValueObjects).toBe(0);
    expectCode(() => db.put('k', 'x', { ifVersion: 0 }), 'EINVAL');
    expectCode(() => db.put('k', 'x', { ifVersion: 'v' as unknown as number }), 'EINVAL');
    expectCode(() => db.put('k', 'x', { ifversion: 3 } as unknown as { ifVersion: number }), 'EINVAL');
    expectCode(() => db.delete('k', null as unknown as { ifVersion: number }), 'EINVAL');
    db.close();
  });

  it('four workers incrementing one counter with getEntry and put ifVersion lose no increment', async () => {
    const { counter, ok, failed } = await casCounters(scaled(800));
    console.log(`cas counters: ${ok} puts written, ${failed} refused, counter ${counter}`);
    expect(ok).toBeGreaterThan(20);
    expect(counter).toBe(ok);
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-ifversion-unlocked in the workers', async () => {
    let red = false;
    for (let attempt = 0; attempt < 3 && !red; attempt++) {
      const { counter, ok } = await casCounters(800, breakEnv('kv-ifversion-unlocked'));
      console.log(`kv-ifversion-unlocked: counter ${counter}, ${ok} puts written`);
      red = counter !== ok;
    }
    expect(red).toBe(true);
  });
});
