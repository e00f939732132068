/** `daxstore info` and `dump` on a small store: what they report, and that they change nothing. */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { open } from '../../src/kv/index.js';
import { cli, makeStore, tempDir } from './run-cli.js';

let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('info and dump', () => {
  it('info reports kind, flush method, both superblock copies and key count, and leaves the file as it was', () => {
    const file = makeStore(dir, 20);
    const before = fs.readFileSync(file);
    const r = cli(['info', file, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.kv.keys).toBe(20);
    expect(info.superblocks.map((c: { status: string }) => c.status)).toEqual(['ok', 'ok']);
    expect(info.sizeBytes).toBe(8 * 2 ** 20);
    expect(typeof info.flushMethod).toBe('string');
    if (info.kind !== 'devdax' && info.kind !== 'fsdax') expect(info.emulated).toBe(true);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(cli(['info', file]).stdout).toMatch(/^keys\s+20$/m);
  });

  it("info reports the store's own state: format, encodings, space, log counts; nothing of its own handle", () => {
    const file = path.join(dir, 'users.store');
    const db = open(file, { size: 16 * 2 ** 20, durability: 'none' }); // the defaults: ordered keys, msgpack values
    for (let i = 0; i < 300; i++) db.put(['user', i], { name: `u${i}` });
    for (let i = 0; i < 50; i++) db.put(['user', i], { name: `renamed ${i}` });
    for (let i = 250; i < 300; i++) db.delete(['user', i]);
    db.close();
    const r = cli(['info', file, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.formatVersion).toBeGreaterThanOrEqual(3);
    expect(info.encodings).toEqual({ state: 'recorded', keyEncoding: 'ordered', valueEncoding: 'msgpack' });
    // 300 puts + 50 overwrites + 50 deletes: 400 entries, 250 live, 150 superseded values or delete markers
    expect(info.kv).toMatchObject({ keys: 250, logEntries: 400, deadEntries: 150, sequence: 400, segments: 1 });
    expect(info.space.dataBytes).toBe(info.space.dataBlocks * info.space.blockBytes);
    expect(info.space.freeBlocks + info.space.ownedBlocks).toBe(info.space.dataBlocks);
    // space for reclamation: the reserve (two whole extents in a store of 14 MiB or more whose priority segment has under 256 KiB of room) and the log's
    // live and dead bytes as recovery estimates them (250 live entries, 150 dead)
    expect(info.space.reserveBytes).toBe(2 * 2 * 2 ** 20);
    expect(info.space.freeExtentBytes).toBeGreaterThanOrEqual(info.space.reserveBytes);
    expect(info.kv.liveBytes).toBeGreaterThan(250 * 16);
    expect(info.kv.deadBytes).toBeGreaterThan(0);
    expect(info.kv.liveBytes + info.kv.deadBytes).toBeLessThanOrEqual(2 * 2 ** 20);
    // the inspecting handle's own settings and counters are not the store's
    for (const own of ['durability', 'puts', 'deletes', 'batches', 'lostWakeups', 'indexBytesPerKey'])
      expect(info.kv, own).not.toHaveProperty(own);
    expect(info).not.toHaveProperty('device');
    const text = cli(['info', file]).stdout;
    expect(text).toMatch(/^encodings\s+keys 'ordered', values 'msgpack'$/m);
    expect(text).toMatch(/^log\s+400 entries in 1 segment \(2 MiB\): 250 live, 150 superseded or deletes$/m);
    expect(text).toMatch(/^format\s+version \d+$/m);
    expect(text).toMatch(/^log space\s+about [\d.]+ MiB live, [\d.]+ MiB reclaimable by compaction \(estimates\)/m);
    expect(text).toMatch(
      /^free extents\s+[\d.]+ MiB in whole 2 MiB extents, 4 MiB of it kept for deletes and compaction$/m,
    );
    expect(text, 'a raw JSON object in the text form').not.toMatch(/[{}]/);
    const bytes = JSON.parse(cli(['info', makeStore(dir, 5), '--json']).stdout);
    expect(bytes.encodings).toEqual({ state: 'recorded', keyEncoding: 'binary', valueEncoding: 'binary' });
  });

  it('info shows the size now and the most the store can grow to; a fixed-size store never grows', () => {
    const file = path.join(dir, 'grows.store');
    const db = open(file, { maxSize: 64 * 2 ** 20, keyEncoding: 'binary', valueEncoding: 'binary' });
    const start = db.stats().sizeBytes;
    for (let i = 0; db.stats().sizeBytes === start; i++) db.put(Buffer.from(`k${i}`), Buffer.alloc(4000, i));
    const grown = db.stats().sizeBytes;
    expect(db.stats().maxSize).toBe(64 * 2 ** 20);
    db.close();
    const info = JSON.parse(cli(['info', file, '--json']).stdout);
    expect(info).toMatchObject({ sizeBytes: grown, maxSizeBytes: 64 * 2 ** 20, canGrow: true });
    expect(fs.statSync(file).size).toBe(grown);
    expect(cli(['info', file]).stdout).toMatch(/^max size\s+64 MiB \(67108864 B\): grows online as data arrives$/m);
    const fixed = JSON.parse(cli(['info', makeStore(dir, 5), '--json']).stdout);
    expect(fixed).toMatchObject({ sizeBytes: 8 * 2 ** 20, maxSizeBytes: 8 * 2 ** 20, canGrow: false });
  });

  it("dump decodes keys and values by the store's encodings; --raw shows the stored bytes", () => {
    const file = path.join(dir, 'users.store');
    const db = open(file, { size: 16 * 2 ** 20 }); // ordered keys, msgpack values
    db.put(['user', 2], { name: 'ada', born: 1815, tags: new Set(['math']), id: 7n });
    db.put(['user', 10], { name: 'grace' });
    db.put('config', [1, 2, 3]);
    db.close();
    const rows = JSON.parse(cli(['dump', file, '--json']).stdout) as Array<{ key: unknown; value: unknown }>;
    expect(rows).toEqual([
      // in key order: 'config' < ['user', …] (first parts compared), then 2 < 10 numerically
      { key: 'config', valueBytes: expect.any(Number), value: [1, 2, 3] },
      {
        key: ['user', 2],
        valueBytes: expect.any(Number),
        value: { name: 'ada', born: 1815, tags: ['math'], id: '7n' },
      },
      { key: ['user', 10], valueBytes: expect.any(Number), value: { name: 'grace' } },
    ]);
    const text = cli(['dump', file]).stdout;
    expect(text).toMatch(/^\["user",2\]\s+\d+\s+\{"name":"ada","born":1815,"tags":\["math"\],"id":"7n"\}$/m);
    expect(text).toMatch(/^"config"\s+\d+\s+\[1,2,3\]$/m);
    const raw = JSON.parse(cli(['dump', file, '--raw', '--json']).stdout) as Array<{ key: string; value: string }>;
    expect(raw.map((r) => r.key)).toContain('config'); // an ordered string key's bytes are its UTF-8
    expect(raw.every((r) => typeof r.value === 'string')).toBe(true);
    expect(raw.some((r) => r.key.startsWith('hex:'))).toBe(true); // the compound keys

    const notes = path.join(dir, 'notes.store');
    const n = open(notes, { size: 8 * 2 ** 20, keyEncoding: 'utf8', valueEncoding: 'json' });
    n.put('b', { done: true });
    n.put('a', 'text');
    n.close();
    expect(JSON.parse(cli(['dump', notes, '--json']).stdout)).toEqual([
      { key: 'a', valueBytes: 6, value: 'text' },
      { key: 'b', valueBytes: 13, value: { done: true } },
    ]);
  });

  it('dump lists keys in order, honouring --prefix and --limit', () => {
    const file = makeStore(dir, 30);
    const r = cli(['dump', file, '--prefix', 'key2', '--limit', '4', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Array<{ key: string; value: string }>;
    expect(rows.map((x) => x.key)).toEqual(['key2', 'key20', 'key21', 'key22']);
    expect(rows[0].value).toBe(`value-2-${'x'.repeat(20)}`);
    const hex = cli(['dump', file, '--prefix', `hex:${Buffer.from('key29').toString('hex')}`, '--json']);
    expect(JSON.parse(hex.stdout).map((x: { key: string }) => x.key)).toEqual(['key29']);
  });
});
