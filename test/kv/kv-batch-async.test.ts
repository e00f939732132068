/**
 * batchAsync: applied at once, acknowledged when durable. In 'group' mode the promise must
 * not resolve before the group commit made the batch durable (checked on the simulated
 * device's durable image: crashImage({ mode: 'none' }) drops every pending word), and the
 * batches issued in one window share one fence. Red with DAXSTORE_TEST_BREAK=
 * kv-group-resolve-early. Also: bad input rejects (nothing applied), close() settles waiters,
 * 'sync' is durable on resolution. Not covered: several threads (each handle has its own
 * group commit over its own segment).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { DaxError } from '../../src/errors.js';
import { setBroken } from '../../src/test-break.js';

const td = new TextDecoder();

/** What a crash now would recover: only the durable image. */
function durableValue(media: SimMedia, key: string): string | undefined {
  const image = media.crashImage({ mode: 'none' });
  const db = openMedia(image, { formatIfEmpty: false });
  try {
    const v = db.get(key);
    return v === undefined ? undefined : td.decode(v);
  } finally {
    db.close();
    image.dispose();
  }
}

async function groupBatchesAreDurableWhenResolved(): Promise<void> {
  const media = createSimMedia(8 * 2 ** 20);
  const db = openMedia(media, { durability: 'group' });
  try {
    db.put('warm', 'up'); // the segment is allocated and zeroed (fences of their own) before counting
    await db.flushed();
    const acknowledged: string[] = [];
    const all = Array.from({ length: 20 }, (_, i) =>
      db
        .batchAsync([
          { type: 'put', key: `k${i}`, value: `v${i}` },
          { type: 'del', key: `gone${i}` },
        ])
        .then(() => {
          acknowledged.push(`k${i}`);
          // Resolved: this batch must be in the durable image (a crash now keeps it).
          expect(durableValue(media, `k${i}`)).toBe(`v${i}`);
        }),
    );
    expect(td.decode(db.get('k7'))).toBe('v7'); // visible at once
    expect(durableValue(media, 'k7')).toBeUndefined(); // not yet durable: nothing was fenced
    let fences = 0;
    const unhook = media.onFence(() => void fences++);
    await Promise.all(all);
    unhook();
    expect(acknowledged.length).toBe(20);
    expect(fences).toBe(1); // one group commit for all 20
  } finally {
    db.close();
  }
}

describe('kv batchAsync', () => {
  it(
    "'group': resolves only once its batch is durable, and one fence covers the batches of a window",
    groupBatchesAreDurableWhenResolved,
  );

  it('goes red with DAXSTORE_TEST_BREAK=kv-group-resolve-early', async () => {
    setBroken('kv-group-resolve-early', true);
    try {
      await expect(groupBatchesAreDurableWhenResolved()).rejects.toThrow();
    } finally {
      setBroken('kv-group-resolve-early', false);
    }
  });

  it("'sync': durable when it resolves; 'none': applied when it resolves", async () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'sync' });
    await db.batchAsync([{ type: 'put', key: 'a', value: '1' }]);
    expect(durableValue(media, 'a')).toBe('1');
    db.close();
    const none = openMedia(createSimMedia(8 * 2 ** 20), { durability: 'none' });
    await none.batchAsync([{ type: 'put', key: 'b', value: '2' }]);
    expect(td.decode(none.get('b'))).toBe('2');
    none.close();
  });

  it('bad input and a closed store reject with a DaxError and apply nothing; close() resolves the waiters of durable batches', async () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'group' });
    const bad = db.batchAsync([
      { type: 'put', key: 'x', value: '1' },
      { type: 'put', key: 'k'.repeat(1025), value: '2' },
    ]);
    await expect(bad).rejects.toBeInstanceOf(DaxError);
    await expect(bad).rejects.toMatchObject({ code: 'EINVAL' });
    expect(db.get('x')).toBeUndefined();
    await expect(db.batchAsync('nope' as never)).rejects.toMatchObject({ code: 'EINVAL' });
    const pending = db.batchAsync([{ type: 'put', key: 'y', value: '3' }]);
    db.close(); // before the group timer: close commits, the batch is durable, the promise resolves
    await expect(pending).resolves.toBeUndefined();
    expect(durableValue(media, 'y')).toBe('3');
    await expect(db.batchAsync([{ type: 'put', key: 'z', value: '4' }])).rejects.toMatchObject({ code: 'ECLOSED' });
  });
});
