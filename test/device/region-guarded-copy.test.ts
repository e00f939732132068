import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openRegion } from '../../src/device/region.js';
import { expectCode } from '../helpers/expect-code.js';
import { cleanupTemp, runChild, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

function expectEio(fn: () => void, file: string, offset: number): void {
  const err = expectCode(fn, 'EIO');
  expect(err.message).toContain(file);
  expect(err.message).toContain(`offset ${offset}`);
}

describe('guarded copies survive SIGBUS', () => {
  it('copyOut from a page truncated underneath is EIO; the surviving page still reads', () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 3 * 4096 });
    const bytes = new Uint8Array(media.buffer);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i & 0xff;
    media.persist(0, bytes.length);

    fs.truncateSync(file, 4096); // another descriptor: the mapping loses pages 1 and 2
    const dest = new Uint8Array(64);
    expectEio(() => media.copyOut(4096, 64, dest), file, 4096);
    expectEio(() => media.copyOut(4000, 200, new Uint8Array(200)), file, 4000);
    expectEio(() => media.copyIn(8192, new Uint8Array(16)), file, 8192);

    media.copyOut(64, 64, dest);
    expect(Array.from(dest)).toEqual(Array.from({ length: 64 }, (_, i) => (64 + i) & 0xff));
    expect(bytes[100]).toBe(100); // direct reads of a surviving page are fine too
    // Once the file grows back the page maps again (zero-filled), and the guard is disarmed.
    fs.truncateSync(file, 3 * 4096);
    media.copyOut(4096, 64, dest);
    expect(dest.every((b) => b === 0)).toBe(true);
    media.close();
  });

  it('in a separate process the same copy reports EIO, and with DAXSTORE_TEST_BREAK=sigbus-guard the process dies of SIGBUS', () => {
    const dir = tempDir();
    const guarded = runChild('region-open-child', [
      path.join(dir, 'a'),
      JSON.stringify({ create: true, sizeBytes: 8192 }),
      '4096',
    ]);
    expect(guarded.result, guarded.stderr).toMatchObject({ ok: false, code: 'EIO' });
    const broken = runChild(
      'region-open-child',
      [path.join(dir, 'b'), JSON.stringify({ create: true, sizeBytes: 8192 }), '4096'],
      {
        env: { ...process.env, DAXSTORE_TEST_BREAK: 'sigbus-guard' },
      },
    );
    expect(broken.signal).toBe('SIGBUS');
  });
});
