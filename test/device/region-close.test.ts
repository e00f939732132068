import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openRegion, attachMappedMedia } from '../../src/device/region.js';
import { attachMedia } from '../../src/device/attach-media.js';
import { DaxError } from '../../src/errors.js';
import { expectCode } from '../helpers/expect-code.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

function expectClosed(fn: () => unknown): void {
  expectCode(fn, 'ECLOSED');
}

describe('region close', () => {
  it('after close every call is ECLOSED and a second close is a no-op', () => {
    const media = openRegion(path.join(tempDir(), 'region'), { create: true, sizeBytes: 4096 });
    media.close();
    expect(media.closed).toBe(true);
    expectClosed(() => media.flush(0, 64));
    expectClosed(() => media.drain());
    expectClosed(() => media.persist(0, 64));
    expectClosed(() => media.msync(0, 64));
    expectClosed(() => media.copyOut(0, 1, new Uint8Array(1)));
    expectClosed(() => media.copyIn(0, new Uint8Array(1)));
    expectClosed(() => media.share());
    media.close();
  });

  it('closing an attached view detaches it only; the opener and a fresh attach keep working', () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 4096 });
    const attached = attachMedia(media.share());
    expect(attached.buffer).toBe(media.buffer); // same thread: literally the same buffer, no rewrap
    attached.close();
    expectClosed(() => attached.persist(0, 1));
    media.persist(0, 1);
    const again = attachMappedMedia(media.share());
    again.persist(0, 64);
    again.close();
    media.close();
    // The opener's close released the flock even though the buffer is still referenced.
    openRegion(file).close();
  });

  it('a handle that is not from share() is EINVAL', () => {
    expect(() =>
      attachMappedMedia({ type: 'mapped', regionId: 123456, buffer: new SharedArrayBuffer(4096), info: {} } as never),
    ).toThrow(DaxError);
    expect(() => attachMedia({ type: 'nope' } as never)).toThrow(/unknown handle type/);
  });
});
