import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cpuFlushMethods, openRegion } from '../../src/device/region.js';
import { cleanupTemp, isTmpfs, SHM_DIR, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

const tmpIsDisk = !isTmpfs(os.tmpdir());

function writePersistReopen(dir: string): { kind: string; flushMethod: string; mapSync: boolean; alignment: number } {
  const file = path.join(dir, 'region');
  const media = openRegion(file, { create: true, sizeBytes: 64 * 1024 });
  const { kind, flushMethod, mapSync, alignment } = media;
  const bytes = new Uint8Array(media.buffer);
  for (let i = 0; i < 1000; i++) bytes[4096 + i] = (i * 7) & 0xff;
  new BigUint64Array(media.buffer, 0, 1)[0] = 0x0123456789abcdefn;
  media.persist(4096, 1000);
  media.persist(0, 8);
  media.close();

  // The bytes are in the file itself, read without the addon.
  const onDisk = fs.readFileSync(file);
  expect(onDisk.byteLength).toBe(64 * 1024);
  expect(onDisk.readBigUInt64LE(0)).toBe(0x0123456789abcdefn);

  const again = openRegion(file, { sizeBytes: 64 * 1024 });
  const back = new Uint8Array(again.buffer);
  for (let i = 0; i < 1000; i++) expect(back[4096 + i]).toBe((i * 7) & 0xff);
  const copied = new Uint8Array(8);
  again.copyOut(0, 8, copied);
  expect(Buffer.from(copied).readBigUInt64LE(0)).toBe(0x0123456789abcdefn);
  again.close();
  return { kind, flushMethod, mapSync, alignment };
}

describe('region round trip', () => {
  it('bytes persisted on /dev/shm read back after reopen, reported as tmpfs with the best CPU flush', () => {
    const info = writePersistReopen(tempDir(SHM_DIR));
    expect(info.kind).toBe('tmpfs');
    expect(info.flushMethod).toBe(cpuFlushMethods()[0]);
    expect(info.flushMethod).toBe('clwb'); // this machine has clwb (DESIGN.md)
    expect(info.mapSync).toBe(false);
    expect(info.alignment).toBe(4096);
  });

  it.skipIf(!tmpIsDisk)('bytes persisted on a disk file read back after reopen, reported as file with msync', () => {
    const info = writePersistReopen(tempDir(os.tmpdir()));
    expect(info.kind).toBe('file');
    expect(info.flushMethod).toBe('msync');
    expect(info.mapSync).toBe(false);
  });

  it('create on an existing file opens it without truncating', () => {
    const file = path.join(tempDir(), 'region');
    const first = openRegion(file, { create: true, sizeBytes: 8192 });
    new Uint8Array(first.buffer)[8191] = 99;
    first.persist(8191, 1);
    first.close();
    const second = openRegion(file, { create: true });
    expect(second.size).toBe(8192);
    expect(new Uint8Array(second.buffer)[8191]).toBe(99);
    second.close();
  });

  it('the buffer is exactly the region: byteLength equals size and share() carries the same buffer', () => {
    const media = openRegion(path.join(tempDir(), 'region'), { create: true, sizeBytes: 3 * 4096 });
    expect(media.buffer.byteLength).toBe(3 * 4096);
    const handle = media.share();
    expect(handle.type).toBe('mapped');
    expect(handle.buffer).toBe(media.buffer);
    expect(handle.info).toEqual({
      kind: 'tmpfs',
      flushMethod: media.flushMethod,
      mapSync: false,
      size: 3 * 4096,
      alignment: 4096,
      path: media.path,
    });
    media.close();
  });
});
