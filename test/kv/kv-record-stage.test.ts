/**
 * Every record (put, delete, batch, deleteRange, compaction copy) is composed in the
 * per-thread stage and hashed there (record-stage.ts). A batch bigger than the stage's first
 * 64 KiB grows it: the records written before, across and after the growth must all validate
 * at recovery (a stale view after growth would copy zeros or throw on a detached buffer).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia, type KvStore } from '../../src/kv/index.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const listing = (db: KvStore): string => [...db.range()].map(([k, v]) => `${hex(k)}=${v.length}:${v[0]}:${v[v.length - 1]}`).join(',');
const value = (n: number, tag: number): Uint8Array => new Uint8Array(n).fill(tag);

describe('kv records through the stage', () => {
  it('puts, deletes, a batch larger than the stage, deleteRange and compaction copies all validate at recovery', () => {
    const media = createSimMedia(16 * 2 ** 20);
    const db = openMedia(media);
    for (let i = 0; i < 50; i++) db.put(`p${String(i).padStart(3, '0')}`, value(100, i));
    for (let i = 0; i < 50; i += 3) expect(db.delete(`p${String(i).padStart(3, '0')}`)).toBe(true);
    const big = Array.from({ length: 300 }, (_, i) => ({ type: 'put' as const, key: `b${String(i).padStart(3, '0')}`, value: value(1000, i & 0xff) }));
    db.batch([...big, { type: 'del', key: 'p001' }]); // ~320 KiB record: the stage grows
    db.put('after-growth', value(16 * 1024, 9)); // largest inline value, through the regrown views
    expect(db.deleteRange({ gte: 'b100', lt: 'b250' })).toBe(150); // one DEL record of 128 keys, then 22
    db.batch([{ type: 'put', key: 'small-batch', value: 'x' }, { type: 'del', key: 'p002' }]);
    const before = listing(db);
    expect(before.split(',').length).toBe(50 - 17 - 2 + 300 - 150 + 2);
    db.compact({ maxLiveRatio: 1 }); // copies every live entry of the closed segments through the stage
    expect(listing(db)).toBe(before);
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expect(again.recovery?.droppedRecords).toBe(0);
    expect(listing(again)).toBe(before);
    expect(again.dax.device.audit()).toEqual([]);
    again.close();
  });
});
