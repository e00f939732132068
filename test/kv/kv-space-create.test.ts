/**
 * Creating a store is all or nothing: a size below the minimum (or not a whole number of
 * blocks) is refused up front with EINVAL naming the minimum, before any file exists; a create
 * that fails later (the file system has no room for it) removes the file it made, so the retry
 * starts from nothing instead of meeting a half-made file (ENOTSTORE). Red with
 * DAXSTORE_TEST_BREAK=kv-create-keeps-file (the failed create's file is left behind; a test
 * hook makes the create fail after its file exists).
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaxError } from '../../src/errors.js';
import { MIN_STORE_BYTES } from '../../src/kv/index.js';
import { open } from '../helpers/kv-bytes.js';
import { setBroken, testHooks } from '../../src/test-break.js';
import { daxCodeOf } from '../helpers/expect-code.js';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync('/dev/shm/kv-space-create-');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('creating a store', () => {
  it('refuses a size below the minimum with EINVAL naming it, and creates no file', () => {
    const file = path.join(dir, 'small');
    for (const size of [1 << 20, MIN_STORE_BYTES - 4096, 0, -1, 4097, 1.5, Number.NaN]) {
      let error: unknown;
      try {
        open(file, { size });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(DaxError);
      expect((error as DaxError).code).toBe('EINVAL');
      if (size > 0 && Number.isInteger(size) && size % 4096 === 0)
        expect((error as DaxError).message).toContain(String(MIN_STORE_BYTES));
      expect(existsSync(file)).toBe(false);
    }
    const db = open(file, { size: MIN_STORE_BYTES });
    db.put('k', 'v');
    db.close();
    expect(Buffer.from(open(file).get('k')!).toString()).toBe('v');
  });

  it('a create the file system has no room for fails with ENOSPC and leaves nothing; the retry works', () => {
    const file = path.join(dir, 'huge');
    const fs = statfsSync(dir);
    const tooBig = Math.ceil((fs.bavail * fs.bsize * 2) / 4096) * 4096 + MIN_STORE_BYTES;
    expect(daxCodeOf(() => open(file, { size: tooBig }))).toBe('ENOSPC');
    expect(readdirSync(dir)).toEqual([]);
    const db = open(file, { size: MIN_STORE_BYTES });
    db.put('k', 'v');
    db.close();
  });

  /** A create that fails after its file exists (formatting throws); true when nothing is left and the retry works. */
  function lateFailureLeavesNothing(): boolean {
    const file = path.join(dir, 'fails-late');
    testHooks.kvCreated = () => {
      throw new DaxError('EIO', 'injected: formatting failed');
    };
    try {
      expect(daxCodeOf(() => open(file, { size: MIN_STORE_BYTES }))).toBe('EIO');
    } finally {
      testHooks.kvCreated = undefined;
    }
    const clean = readdirSync(dir).length === 0;
    rmSync(file, { force: true });
    const db = open(file, { size: MIN_STORE_BYTES });
    db.put('k', 'v');
    db.close();
    return clean;
  }

  it('a create that fails after its file exists removes it', () => {
    expect(lateFailureLeavesNothing()).toBe(true);
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-create-keeps-file', () => {
    setBroken('kv-create-keeps-file', true);
    try {
      expect(lateFailureLeavesNothing()).toBe(false);
    } finally {
      setBroken('kv-create-keeps-file', false);
    }
  });
});
