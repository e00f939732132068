import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openRegion } from '../../src/device/region.js';
import { expectCode } from '../helpers/expect-code.js';
import { cleanupTemp, runChild, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

function expectBusy(fn: () => unknown, file: string): void {
  const err = expectCode(fn, 'EBUSY');
  expect(err.message).toContain(file);
  expect(err.message).toContain('another daxstore holds it');
}

describe('region flock', () => {
  it('a second open in the same process gets EBUSY naming the path; after close a reopen works', () => {
    const file = path.join(tempDir(), 'region');
    const first = openRegion(file, { create: true, sizeBytes: 4096 });
    expectBusy(() => openRegion(file), file);
    expectBusy(() => openRegion(file, { create: true, sizeBytes: 4096 }), file);
    first.close();
    const again = openRegion(file);
    again.close();
  });

  it('a second open from another process gets EBUSY; after close it succeeds', () => {
    const file = path.join(tempDir(), 'region');
    const first = openRegion(file, { create: true, sizeBytes: 4096 });
    const busy = runChild('region-open-child', [file]);
    expect(busy.result, busy.stderr).toMatchObject({ ok: false, code: 'EBUSY' });
    expect((busy.result as { message: string }).message).toContain(file);
    first.close();
    const free = runChild('region-open-child', [file]);
    expect(free.result, free.stderr).toMatchObject({ ok: true });
  });

  it('with DAXSTORE_TEST_BREAK=flock the second opener gets in: the EBUSY tests depend on flock', () => {
    const file = path.join(tempDir(), 'region');
    const first = openRegion(file, { create: true, sizeBytes: 4096 });
    const child = runChild('region-open-child', [file], { env: { ...process.env, DAXSTORE_TEST_BREAK: 'flock' } });
    expect(child.result, child.stderr).toMatchObject({ ok: true });
    first.close();
  });
});
