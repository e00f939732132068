/**
 * Every bad input to openRegion gives its typed DaxError naming the path, and leaves the
 * directory exactly as it was (snapshot of names and sizes before and after).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openRegion, type OpenRegionOptions } from '../../src/device/region.js';
import { DaxError, type DaxErrorCode } from '../../src/errors.js';
import { cleanupTemp, isTmpfs, runChild, snapshot, tempDir } from '../workers/region-helpers.js';
import { workerScript } from '../helpers/workers.js';

afterEach(cleanupTemp);

function expectOpenError(
  file: string,
  opts: OpenRegionOptions,
  code: DaxErrorCode,
  dir = path.dirname(file),
): DaxError {
  const before = snapshot(dir);
  let caught: unknown;
  try {
    openRegion(file, opts).close();
  } catch (e) {
    caught = e;
  }
  expect(caught, `openRegion(${file}, ${JSON.stringify(opts)})`).toBeInstanceOf(DaxError);
  const err = caught as DaxError;
  expect(err.code, err.message).toBe(code);
  expect(err.message).toContain(file);
  expect(snapshot(dir)).toEqual(before);
  return err;
}

describe('openRegion bad inputs', () => {
  it('a missing path without create is ENOENT', () => {
    expectOpenError(path.join(tempDir(), 'absent'), {}, 'ENOENT');
  });

  it('create under a missing directory is ENOENT from open(2)', () => {
    const dir = tempDir();
    const err = expectOpenError(
      path.join(dir, 'no-such-dir', 'region'),
      { create: true, sizeBytes: 4096 },
      'ENOENT',
      dir,
    );
    expect(err.syscall).toBe('open');
  });

  it('a directory is EISDIR', () => {
    const dir = tempDir();
    expectOpenError(dir, {}, 'EISDIR');
    expectOpenError(dir, { create: true, sizeBytes: 4096 }, 'EISDIR');
  });

  it('size 0, a size not a multiple of 4096, or no size at creation is EINVAL and creates nothing', () => {
    const file = path.join(tempDir(), 'region');
    expectOpenError(file, { create: true, sizeBytes: 0 }, 'EINVAL');
    expectOpenError(file, { create: true, sizeBytes: 4097 }, 'EINVAL');
    expectOpenError(file, { create: true, sizeBytes: -4096 }, 'EINVAL');
    expectOpenError(file, { create: true, sizeBytes: 4096.5 }, 'EINVAL');
    expectOpenError(file, { create: true }, 'EINVAL');
  });

  it('an existing file of size 0 or not block-aligned is EINVAL', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'empty'), '');
    fs.writeFileSync(path.join(dir, 'odd'), Buffer.alloc(5000));
    expectOpenError(path.join(dir, 'empty'), {}, 'EINVAL');
    expectOpenError(path.join(dir, 'odd'), {}, 'EINVAL');
  });

  it('sizeBytes that does not match an existing file is EINVAL and the file is untouched', () => {
    const file = path.join(tempDir(), 'region');
    fs.writeFileSync(file, Buffer.alloc(8192, 5));
    expectOpenError(file, { sizeBytes: 4096 }, 'EINVAL');
    expectOpenError(file, { create: true, sizeBytes: 16384 }, 'EINVAL');
    expect(fs.readFileSync(file).equals(Buffer.alloc(8192, 5))).toBe(true);
  });

  it('an unknown or simulated flush method is EINVAL', () => {
    const file = path.join(tempDir(), 'region');
    expectOpenError(file, { create: true, sizeBytes: 4096, flushMethod: 'bogus' as never }, 'EINVAL');
    expectOpenError(file, { create: true, sizeBytes: 4096, flushMethod: 'sim' }, 'EINVAL');
  });

  it.skipIf(isTmpfs(os.tmpdir()))(
    'a CPU flush method on a page-cache file is EINVAL (not durable) and the new file is removed',
    () => {
      const file = path.join(tempDir(os.tmpdir()), 'region');
      expectOpenError(file, { create: true, sizeBytes: 4096, flushMethod: 'clwb' }, 'EINVAL');
    },
  );

  it('a FIFO is ENOTSUP', () => {
    const file = path.join(tempDir(), 'fifo');
    const made = spawnSync('mkfifo', [file]);
    expect(made.status).toBe(0);
    expectOpenError(file, {}, 'ENOTSUP');
  });

  it('a read-only file is EACCES for a non-root opener (root bypasses modes, so the opener runs as nobody)', (ctx) => {
    const asNobodyProbe = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const unreadable = unreadableForOpener(asNobodyProbe);
    if (unreadable !== undefined)
      ctx.skip(`the opener (nobody) cannot read ${unreadable}: the checkout's directories are not world-readable`);
    const dir = tempDir();
    fs.chmodSync(dir, 0o755);
    const file = path.join(dir, 'region');
    fs.writeFileSync(file, Buffer.alloc(4096, 1));
    fs.chmodSync(file, 0o444);
    const before = snapshot(dir);
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const child = runChild('region-open-child', [file], asNobody);
    expect(child.result, child.stderr).toMatchObject({ ok: false, code: 'EACCES' });
    expect((child.result as { message: string }).message).toContain(file);
    expect(snapshot(dir)).toEqual(before);
  });

  const canMount = process.getuid?.() === 0;
  it.skipIf(!canMount)(
    'creating a region larger than a 1 MiB tmpfs is ENOSPC and leaves no file (skipped unless root can mount)',
    () => {
      const dir = tempDir();
      const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
      if (mounted.status !== 0) {
        console.warn(`skipping ENOSPC: mount -t tmpfs not permitted: ${String(mounted.stderr)}`);
        return;
      }
      try {
        const file = path.join(dir, 'region');
        const err = expectOpenError(file, { create: true, sizeBytes: 2 * 1024 * 1024 }, 'ENOSPC');
        expect(err.syscall).toBe('posix_fallocate');
        expect(fs.readdirSync(dir)).toEqual([]);
        openRegion(file, { create: true, sizeBytes: 512 * 1024 }).close(); // what fits still works
      } finally {
        // Lazy: the 512 KiB region stays mapped until its buffer is collected.
        expect(spawnSync('umount', ['-l', dir]).status).toBe(0);
      }
    },
  );
});

/**
 * The child that opens as nobody must load its script and the addon from this checkout; in a
 * checkout under a private directory (mktemp -d is 0700) it cannot, and the test cannot run.
 */
function unreadableForOpener(ids: { uid?: number; gid?: number }): string | undefined {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  for (const file of [workerScript('region-open-child'), path.join(root, 'build', 'Release', 'daxstore.node')]) {
    const probe = spawnSync(
      process.execPath,
      ['-e', `require('fs').accessSync(${JSON.stringify(file)}, require('fs').constants.R_OK)`],
      ids,
    );
    if (probe.status !== 0) return file;
  }
  return undefined;
}
