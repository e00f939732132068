/**
 * openRegion({ privateCopy: true }): a copy-on-write mapping for read-only tools. It reads the
 * file's bytes, takes the flock like any opener, and nothing stored, flushed or persisted
 * through it reaches the file, on tmpfs and on a page-cache file alike. It never creates.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openRegion } from '../../src/device/region.js';
import { isDaxError } from '../../src/errors.js';
import { cleanupTemp, SHM_DIR, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

const SIZE = 64 * 1024;

describe.each([
  ['tmpfs', SHM_DIR],
  ['page-cache file', os.tmpdir()],
])('privateCopy on %s', (_name, base) => {
  it('sees the file, keeps its own stores, and leaves the file unchanged', () => {
    const file = path.join(tempDir(base), 'region');
    const media = openRegion(file, { create: true, sizeBytes: SIZE });
    new Uint8Array(media.buffer).fill(0x5a, 0, 4096);
    media.persist(0, 4096);
    media.close();
    const before = fs.readFileSync(file);

    const copy = openRegion(file, { privateCopy: true });
    const bytes = new Uint8Array(copy.buffer);
    expect(bytes[100]).toBe(0x5a);
    bytes.fill(0xa5, 0, 8192);
    copy.persist(0, 8192);
    expect(bytes[100]).toBe(0xa5);
    expect(() => openRegion(file, {})).toThrow(/EBUSY/); // it holds the flock like any opener
    copy.close();
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });
});

describe('privateCopy', () => {
  it('never creates a file', () => {
    const file = path.join(tempDir(SHM_DIR), 'absent');
    let code = '';
    try {
      openRegion(file, { privateCopy: true, create: true, sizeBytes: SIZE });
    } catch (e) {
      code = isDaxError(e) ? e.code : String(e);
    }
    expect(code).toBe('EINVAL');
    expect(fs.existsSync(file)).toBe(false);
  });
});
