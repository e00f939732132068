/**
 * Wait table on one thread: registration before sleeping, key-matched exclusive wake-ups in
 * a shared slot (a 1-slot table forces every key to collide), shared waiters, wakeAll,
 * waitAsync, misuse, and waitKey. Blocking waits across workers live in wait-table-workers.
 */
import { describe, expect, it } from 'vitest';
import { WaitTable, waitKey } from '../../src/index/wait-table.js';
import { expectCode } from '../helpers/expect-code.js';

function expectBaseline(t: WaitTable): void {
  expect(t.stats().waiting).toBe(0);
}

describe('WaitTable', () => {
  it('a wake-up between prepare and wait is not lost', () => {
    const t = WaitTable.create();
    const w = t.prepare(5, 'exclusive');
    expect(t.hasWaiters(5)).toBe(true);
    expect(t.wakeOne(5)).toBe(1);
    const started = performance.now();
    expect(t.wait(w, 5000)).toBe('woken');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(t.stats()).toEqual({ waiting: 0, woken: 1, timedOut: 0 });
  });

  it('a wait nobody wakes times out, is counted, and leaves no record queued', () => {
    const t = WaitTable.create();
    const w = t.prepare(5, 'exclusive');
    const started = performance.now();
    expect(t.wait(w, 30)).toBe('timed-out');
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(t.stats()).toEqual({ waiting: 0, woken: 0, timedOut: 1 });
    expect(t.hasWaiters(5)).toBe(false);
    expect(t.wakeOne(5)).toBe(0);
  });

  it('cancel deregisters and reports whether a wake-up had already been delivered', () => {
    const t = WaitTable.create();
    const a = t.prepare(1, 'exclusive');
    expect(t.cancel(a)).toBe(false);
    expect(t.wakeOne(1)).toBe(0);
    const b = t.prepare(1, 'exclusive');
    const c = t.prepare(1, 'exclusive');
    expect(t.wakeOne(1)).toBe(1);
    expect(t.cancel(b)).toBe(true); // b holds the baton
    expect(t.cancel(c)).toBe(false);
    expectBaseline(t);
  });

  it('wakeOne wakes exactly the first exclusive waiter of that key, none of another key in the same slot, in FIFO order', () => {
    const t = WaitTable.create({ slots: 1 });
    const a1 = t.prepare(1, 'exclusive');
    const b = t.prepare(2, 'exclusive');
    const a2 = t.prepare(1, 'exclusive');
    const bigKey = 2 ** 53 - 1; // differs from key 1 only in the high bits' mixing
    const big = t.prepare(bigKey, 'exclusive');
    expect(t.wakeOne(1)).toBe(1);
    expect(t.wait(a1, 0)).toBe('woken');
    expect(t.stats().waiting).toBe(3);
    expect(t.wakeOne(1)).toBe(1);
    expect(t.wait(a2, 0)).toBe('woken');
    expect(t.wakeOne(1)).toBe(0);
    expect(t.wait(b, 0)).toBe('timed-out');
    expect(t.wakeOne(bigKey)).toBe(1);
    expect(t.wait(big, 0)).toBe('woken');
    expectBaseline(t);
  });

  it('wakeOne wakes every shared waiter of the key plus one exclusive', () => {
    const t = WaitTable.create({ slots: 1 });
    const s1 = t.prepare(9, 'shared');
    const e1 = t.prepare(9, 'exclusive');
    const other = t.prepare(10, 'shared');
    const e2 = t.prepare(9, 'exclusive');
    const s2 = t.prepare(9, 'shared');
    expect(t.wakeOne(9)).toBe(3);
    for (const w of [s1, e1, s2]) expect(t.wait(w, 0)).toBe('woken');
    expect(t.wait(e2, 0)).toBe('timed-out');
    expect(t.wait(other, 0)).toBe('timed-out');
    expectBaseline(t);
  });

  it('wakeAll wakes every waiter of the key and only of the key', () => {
    const t = WaitTable.create({ slots: 1 });
    const mine = [t.prepare(3, 'exclusive'), t.prepare(3, 'shared'), t.prepare(3, 'exclusive')];
    const other = t.prepare(4, 'exclusive');
    expect(t.wakeAll(3)).toBe(3);
    for (const w of mine) expect(t.wait(w, 0)).toBe('woken');
    expect(t.cancel(other)).toBe(false);
    expect(t.stats()).toEqual({ waiting: 0, woken: 3, timedOut: 0 });
  });

  it('waitAsync on the main thread resolves when woken and times out otherwise', async () => {
    const t = WaitTable.create();
    const w = t.prepare(77, 'exclusive');
    setTimeout(() => t.wakeOne(77), 20);
    expect(await t.waitAsync(w, 5000)).toBe('woken');
    const idle = t.prepare(78, 'shared');
    expect(await t.waitAsync(idle, 20)).toBe('timed-out');
    expect(t.stats()).toEqual({ waiting: 0, woken: 1, timedOut: 1 });
  });

  it('misuse is reported with stable codes and leaves the table unchanged', () => {
    const t = WaitTable.create({ maxWaiters: 2 });
    const other = WaitTable.create();
    expectCode(() => t.prepare(-1, 'exclusive'), 'EINVAL');
    expectCode(() => t.prepare(2 ** 53, 'exclusive'), 'EINVAL');
    expectCode(() => t.prepare(1, 'both' as 'shared'), 'EINVAL');
    expectCode(() => t.wakeOne(0.5), 'EINVAL');
    expectCode(() => WaitTable.create({ slots: 0 }), 'EINVAL');
    expectCode(() => WaitTable.attach({ buffer: new SharedArrayBuffer(8) }), 'EINVAL');
    const a = t.prepare(1, 'exclusive');
    const b = t.prepare(2, 'shared');
    expectCode(() => t.prepare(3, 'exclusive'), 'EBUSY');
    expectCode(() => other.cancel(a), 'EINVAL');
    expectCode(() => t.wait(a, -1), 'EINVAL');
    expect(t.stats().waiting).toBe(2);
    t.cancel(a);
    expectCode(() => t.cancel(a), 'EINVAL');
    expectCode(() => t.wait(a, 0), 'EINVAL');
    expect(t.wait(b, 0)).toBe('timed-out');
    expect(t.cancel(t.prepare(3, 'exclusive'))).toBe(false); // records came back
    expectBaseline(t);
  });

  it('records are taken fresh, then from the free list; a fresh one whose claim a death cut short is given back', () => {
    const t = WaitTable.create({ slots: 1, maxWaiters: 3 });
    const a = t.prepare(1, 'exclusive'); // record 0, the first fresh one
    // Record 1 as a claim cut short leaves it: its owner named, the fresh mark not moved past it.
    // Words: a 16-word header, one 4-word slot, 8-word records; R_OWNER 5, R_OWNER_GEN 6.
    const w = new Int32Array(t.handle().buffer);
    const at = 16 + 4 + 8;
    w[at + 5] = 4000;
    w[at + 6] = 7;
    expect(t.reapParticipant(4000, 7, -1)).toBe(0); // still free: nothing to release
    expect(w[at + 5]).toBe(0);
    const b = t.prepare(2, 'exclusive');
    const c = t.prepare(3, 'shared');
    expectCode(() => t.prepare(4, 'shared'), 'EBUSY'); // three records, each taken once
    for (const x of [a, b, c]) t.cancel(x);
    const again = [t.prepare(5, 'shared'), t.prepare(6, 'shared'), t.prepare(7, 'shared')];
    expectCode(() => t.prepare(8, 'shared'), 'EBUSY');
    for (const x of again) t.cancel(x);
    expectBaseline(t);
  });

  it('attach in the same thread sees the same queues', () => {
    const t = WaitTable.create();
    const u = WaitTable.attach(t.handle());
    const w = t.prepare(11, 'exclusive');
    expect(u.hasWaiters(11)).toBe(true);
    expect(u.wakeOne(11)).toBe(1);
    expect(t.wait(w, 0)).toBe('woken');
  });
});

describe('waitKey', () => {
  it('is a deterministic 53-bit integer that depends on the tree and every key byte', () => {
    const key = Uint8Array.from([0, 0, 0, 0, 0, 0, 1, 0]);
    const k = waitKey(1, key);
    expect(Number.isSafeInteger(k) && k >= 0 && k < 2 ** 53).toBe(true);
    expect(waitKey(1, key.slice())).toBe(k);
    expect(waitKey(2, key)).not.toBe(k);
    expect(waitKey(1, key.subarray(0, 7))).not.toBe(k);
    const seen = new Set<number>();
    const buf = new Uint8Array(8);
    const view = new DataView(buf.buffer);
    for (let i = 0; i < 100_000; i++) {
      view.setBigUint64(0, BigInt(i));
      seen.add(waitKey(7, buf));
    }
    expect(seen.size).toBe(100_000);
    let high = 0;
    for (const h of seen) if (h >= 2 ** 52) high++;
    expect(Math.abs(high - 50_000)).toBeLessThan(2_000); // the top bit is used too
  });

  it('rejects a bad tree id or key', () => {
    expectCode(() => waitKey(-1, new Uint8Array(8)), 'EINVAL');
    expectCode(() => waitKey(2 ** 32, new Uint8Array(8)), 'EINVAL');
    expectCode(() => waitKey(0, [1, 2] as unknown as Uint8Array), 'EINVAL');
  });
});
