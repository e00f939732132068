import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cpuFlushMethods, openRegion } from '../../src/device/region.js';
import type { FlushMethod } from '../../src/device/media.js';
import { DaxError } from '../../src/errors.js';
import { cleanupTemp, isTmpfs, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

function exercise(file: string, flushMethod?: FlushMethod): string {
  const media = openRegion(file, { create: true, sizeBytes: 16384, ...(flushMethod ? { flushMethod } : {}) });
  const bytes = new Uint8Array(media.buffer);
  bytes.fill(0x5a, 100, 5000);
  media.flush(100, 4900); // unaligned start and end: covering lines/pages
  media.flush(0, 0);
  media.drain();
  media.persist(16383, 1);
  media.persist(0, 16384);
  media.msync(4095, 2);
  media.close();
  return media.flushMethod;
}

describe('flush methods', () => {
  it('the CPU reports clwb, clflushopt and clflush here, best first', () => {
    expect(cpuFlushMethods()).toEqual(['clwb', 'clflushopt', 'clflush']);
  });

  it.each(['clwb', 'clflushopt', 'clflush', 'msync'] as const)(
    'forced %s runs flush/drain/persist/msync on tmpfs',
    (method) => {
      expect(exercise(path.join(tempDir(), 'region'), method)).toBe(method);
    },
  );

  it.skipIf(isTmpfs(os.tmpdir()))('a page-cache file runs flush/drain/persist/msync with msync', () => {
    expect(exercise(path.join(tempDir(os.tmpdir()), 'region'))).toBe('msync');
  });

  it('ranges outside the region are ERANGE, non-integers EINVAL, naming path and offset', () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 4096 });
    const cases: Array<[() => void, string]> = [
      [() => media.flush(4000, 97), 'ERANGE'],
      [() => media.persist(4096, 1), 'ERANGE'],
      [() => media.msync(0, 4097), 'ERANGE'],
      [() => media.copyOut(4095, 2, new Uint8Array(2)), 'ERANGE'],
      [() => media.copyIn(4095, new Uint8Array(2)), 'ERANGE'],
      [() => media.flush(-1, 1), 'EINVAL'],
      [() => media.persist(1.5, 1), 'EINVAL'],
      [() => media.copyOut(0, 8, new Uint8Array(4)), 'EINVAL'],
      [() => media.copyOut(0, 8, [] as unknown as Uint8Array), 'EINVAL'],
    ];
    for (const [fn, code] of cases) {
      let caught: unknown;
      try {
        fn();
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(DaxError);
      expect((caught as DaxError).code).toBe(code);
    }
    media.close();
  });
});
