/**
 * Single-thread behaviour of EpochDomain: grace periods, nesting, per-kind reclaimers,
 * the opportunistic collect in retire(), overflow when the shared limbo is full, misuse.
 * Cross-thread behaviour lives in epoch-stall / epoch-cross-thread / epoch-stress.
 */
import { describe, expect, it } from 'vitest';
import { participantId } from '../../src/device/participants.js';
import { EpochDomain, RETIRE_ARENA_NODE, RETIRE_DEVICE_BLOCK } from '../../src/index/epoch.js';
import { expectCode } from '../helpers/expect-code.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

function recording(domain: EpochDomain, kind: number): [number, number][] {
  const seen: [number, number][] = [];
  domain.registerReclaimer(kind, (payload, size) => seen.push([payload, size]));
  return seen;
}

function expectBaseline(domain: EpochDomain): void {
  const s = domain.stats();
  expect(s.pinned).toBe(0);
  expect(s.limbo.every((n) => n === 0)).toBe(true);
}

describe('EpochDomain', () => {
  it('pin holds reclamation until unpin', () => {
    const d = EpochDomain.create();
    const seen = recording(d, RETIRE_ARENA_NODE);
    d.pin();
    d.retire(RETIRE_ARENA_NODE, 7, 64);
    for (let i = 0; i < 10; i++) expect(d.collect()).toBe(0);
    expect(d.stats().limbo[RETIRE_ARENA_NODE]).toBe(1);
    d.unpin();
    expect(d.collect()).toBe(1);
    expect(seen).toEqual([[7, 64]]);
    expect(d.collect()).toBe(0);
    expectBaseline(d);
    d.close();
  });

  it('nested pins keep the participant pinned until the outermost unpin', () => {
    const d = EpochDomain.create();
    const seen = recording(d, RETIRE_ARENA_NODE);
    d.pin();
    d.pin();
    d.unpin();
    expect(d.isPinned()).toBe(true);
    d.retire(RETIRE_ARENA_NODE, 1);
    for (let i = 0; i < 5; i++) d.collect();
    expect(seen).toEqual([]);
    d.unpin();
    expect(d.isPinned()).toBe(false);
    d.collect();
    expect(seen).toEqual([[1, 0]]);
    expectBaseline(d);
    d.close();
  });

  it('a retire while unpinned is released after exactly two advances', () => {
    const d = EpochDomain.create();
    const seen = recording(d, RETIRE_DEVICE_BLOCK);
    const e0 = d.stats().epoch;
    d.retire(RETIRE_DEVICE_BLOCK, 42, 1);
    expect(d.collect()).toBe(0);
    expect(d.stats().epoch).toBe(e0 + 1);
    expect(d.collect()).toBe(1);
    expect(d.stats().epoch).toBe(e0 + 2);
    expect(seen).toEqual([[42, 1]]);
    expect(d.stats().released).toBe(1);
    d.close();
  });

  it('guard unpins when its function throws', () => {
    const d = EpochDomain.create();
    expect(() =>
      d.guard(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(d.isPinned()).toBe(false);
    expect(d.guard(() => 5)).toBe(5);
    expect(d.stats().pinned).toBe(0);
    d.close();
  });

  it('each kind goes to its own reclaimer with the right payloads, exactly once', () => {
    const seed = testSeed();
    const random = rng(seed);
    const rand = (n: number): number => Math.floor(random() * n);
    try {
      const d = EpochDomain.create();
      const kinds = [0, 1, 15];
      const seen = new Map(kinds.map((k) => [k, recording(d, k)]));
      const expected = new Map<number, [number, number][]>(kinds.map((k) => [k, []]));
      const edge = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 48 - 1];
      for (let i = 0; i < 1000; i++) {
        const kind = kinds[rand(kinds.length)];
        const payload = i < edge.length ? edge[i] : rand(2 ** 30) * 2 ** 18 + rand(2 ** 18);
        const size = i < edge.length ? 2 ** 32 - 1 - i : rand(2 ** 20);
        d.retire(kind, payload, size);
        expected.get(kind)!.push([payload, size]);
      }
      d.retire(7, 99); // no reclaimer for kind 7 in this thread: stays in limbo
      for (let i = 0; i < 4; i++) d.collect();
      for (const k of kinds) expect(seen.get(k)).toEqual(expected.get(k));
      expect(d.collect()).toBe(0);
      const s = d.stats();
      expect(s.limbo[7]).toBe(1);
      expect(s.limbo.reduce((a, b) => a + b, 0)).toBe(1);
      expect(s.released).toBe(1000);
      d.close();
    } catch (e) {
      console.error(replayHint(seed, 'test/index/epoch.test.ts'));
      throw e;
    }
  });

  it('retire collects on its own every 64 calls', () => {
    const d = EpochDomain.create();
    const seen = recording(d, RETIRE_ARENA_NODE);
    for (let i = 0; i < 64 * 3; i++) d.retire(RETIRE_ARENA_NODE, i);
    expect(seen.length).toBeGreaterThanOrEqual(64);
    expect(seen.map(([p]) => p)).toEqual(seen.map((_, i) => i));
    for (let i = 0; i < 2; i++) d.collect();
    expect(seen.length).toBe(64 * 3);
    expectBaseline(d);
    d.close();
  });

  it('a stalled participant cannot make retire fail, even past the shared limbo limit', () => {
    const d = EpochDomain.create({ limboMaxBytes: (64 + 2 * 260) * 4 }); // room for 2 chunks of 64
    const seen = recording(d, RETIRE_ARENA_NODE);
    const stalled = d.pinAsync();
    for (let i = 0; i < 1000; i++) d.retire(RETIRE_ARENA_NODE, i);
    expect(d.stats().limbo[RETIRE_ARENA_NODE]).toBe(1000);
    for (let i = 0; i < 3; i++) d.collect();
    expect(seen.length).toBe(0);
    stalled.release();
    for (let i = 0; i < 3; i++) d.collect();
    expect(seen.map(([p]) => p).sort((a, b) => a - b)).toEqual([...Array(1000).keys()]);
    expectBaseline(d);
    d.close();
  });

  it('pinAsync pins a slot of its own until released; release is idempotent', () => {
    const d = EpochDomain.create();
    const seen = recording(d, RETIRE_ARENA_NODE);
    const tid = d.threadId;
    const g = d.pinAsync();
    expect(g.id).not.toBe(tid);
    expect(d.isThisThread(g.id)).toBe(true);
    expect(d.isPinned()).toBe(false);
    expect(d.stats().pinned).toBe(1);
    d.retire(RETIRE_ARENA_NODE, 3);
    for (let i = 0; i < 4; i++) d.collect();
    expect(seen).toEqual([]);
    g.release();
    g.release();
    d.collect();
    expect(seen).toEqual([[3, 0]]);
    expectBaseline(d);
    d.close();
  });

  it("threadId is the thread's participant id, shared by every attach in one thread, each attach matched by a close", () => {
    const d = EpochDomain.create({ maxParticipants: 8 });
    const id = d.threadId;
    expect(id).toBe(participantId()); // participants.ts: one id per thread for the whole process
    expect(id).toBeGreaterThanOrEqual(1);
    expect(id).toBeLessThanOrEqual(4095);
    expect(d.threadId).toBe(id);
    const again = EpochDomain.attach(d.handle());
    expect(again).toBe(d);
    expect(again.threadId).toBe(id);
    again.close(); // matches the attach: the domain stays open for the create
    expect(d.threadId).toBe(id);
    d.close();
    expectCode(() => d.threadId, 'ECLOSED');
    const fresh = EpochDomain.attach(d.handle());
    expect(fresh).not.toBe(d);
    expect(fresh.threadId).toBe(id);
    fresh.close();
  });

  it('misuse is reported with stable codes and changes nothing', () => {
    const d = EpochDomain.create({ maxParticipants: 2 });
    expectCode(() => d.unpin(), 'EINVAL');
    expectCode(() => d.retire(16, 1), 'EINVAL');
    expectCode(() => d.retire(-1, 1), 'EINVAL');
    expectCode(() => d.retire(0, 2 ** 48), 'EINVAL');
    expectCode(() => d.retire(0, 1.5), 'EINVAL');
    expectCode(() => d.retire(0, 1, 2 ** 32), 'EINVAL');
    expectCode(() => d.registerReclaimer(16, () => {}), 'EINVAL');
    expectCode(() => EpochDomain.create({ maxParticipants: 4096 }), 'EINVAL');
    expectCode(
      () => EpochDomain.attach({ buffer: new SharedArrayBuffer(8), limbo: new SharedArrayBuffer(8) }),
      'EINVAL',
    );
    expect(d.stats().limbo.every((n) => n === 0)).toBe(true);
    void d.threadId;
    const a = d.pinAsync();
    expectCode(() => d.pinAsync(), 'EBUSY'); // both slots taken
    a.release();
    d.pin();
    expectCode(() => d.close(), 'EBUSY');
    d.unpin();
    d.close();
    d.close(); // idempotent
    expectCode(() => d.pin(), 'ECLOSED');
    expectCode(() => d.retire(0, 1), 'ECLOSED');
    expectCode(() => d.collect(), 'ECLOSED');
    expectCode(() => d.pinAsync(), 'ECLOSED');
    expect(d.stats().pinned).toBe(0);
  });
});
