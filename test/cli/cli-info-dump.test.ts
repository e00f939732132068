/** `daxstore info` and `dump` on a small store: what they report, and that they change nothing. */
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
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
