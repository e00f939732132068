/**
 * Device-DAX geometry from fake sysfs trees in a temp dir (no /dev/dax on this machine).
 * The randomized case writes arbitrary text into size/align; seed from DAXSTORE_SEED.
 * Not covered: a real device-DAX mapping (needs /dev/daxX.Y hardware or emulation).
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceNumbers, readDevDaxGeometry, readDevDaxGeometryFor } from '../../src/device/sysfs.js';
import { openRegion } from '../../src/device/region.js';
import { planStoreFile } from '../../src/kv/store-file.js';
import { MIN_STORE_BYTES } from '../../src/kv/index.js';
import { rng } from '../helpers/seed.js';
import { DaxError, type DaxErrorCode } from '../../src/errors.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';
import { replayHint, testSeed } from '../helpers/seed.js';

afterEach(cleanupTemp);

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A fake sysfs root with files under dev/char/<dev>/ (paths relative to it; null = symlink target). */
function fakeSysfs(dev: string, files: Record<string, string>, links: Record<string, string> = {}): string {
  const root = tempDir();
  const node = path.join(root, 'dev', 'char', dev);
  fs.mkdirSync(node, { recursive: true });
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(node, rel)), { recursive: true });
    fs.writeFileSync(path.join(node, rel), text);
  }
  for (const [rel, target] of Object.entries(links)) fs.symlinkSync(target, path.join(node, rel));
  return root;
}

function expectCode(fn: () => unknown, code: DaxErrorCode, mention?: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DaxError);
  expect((caught as DaxError).code, (caught as Error).message).toBe(code);
  if (mention !== undefined) expect((caught as Error).message).toContain(mention);
}

describe('device-DAX geometry from sysfs', () => {
  it.each([
    [4096, 'device/align'],
    [2 * MiB, 'device/align'],
    [GiB, 'device/align'],
    [2 * MiB, 'align'],
    [2 * MiB, 'device/dax_region/align'],
  ])('alignment %i read from %s', (alignment, alignFile) => {
    const root = fakeSysfs(
      '252:0',
      { size: `${4 * GiB}\n`, [alignFile]: `${alignment}\n` },
      { subsystem: '../../../bus/dax' },
    );
    expect(readDevDaxGeometryFor(252, 0, root)).toEqual({
      sizeBytes: 4 * GiB,
      alignment,
      sysfsPath: path.join(root, 'dev/char/252:0'),
    });
  });

  it('device/align wins over the region-wide dax_region/align', () => {
    const root = fakeSysfs('252:1', {
      size: `${2 * GiB}`,
      'device/align': `${GiB}`,
      'device/dax_region/align': '4096',
    });
    expect(readDevDaxGeometryFor(252, 1, root).alignment).toBe(GiB);
  });

  it('missing sysfs node is ENOTSUP; missing size or align is ENOENT naming the files', () => {
    const root = fakeSysfs('252:0', { 'device/align': '2097152' });
    expectCode(() => readDevDaxGeometryFor(9, 9, root), 'ENOTSUP', 'no sysfs entry');
    expectCode(() => readDevDaxGeometryFor(252, 0, root), 'ENOENT', 'size');
    const noAlign = fakeSysfs('252:0', { size: '2097152' });
    expectCode(() => readDevDaxGeometryFor(252, 0, noAlign), 'ENOENT', 'dax_region/align');
  });

  it.each([
    [{ size: 'lots', 'device/align': '2097152' }, 'EINVAL', 'not a number'],
    [{ size: '4194304', 'device/align': '2M' }, 'EINVAL', 'not a number'],
    [{ size: '', 'device/align': '2097152' }, 'EINVAL', 'not a number'],
    [{ size: '4194304', 'device/align': '8192' }, 'EINVAL', 'alignment 8192'],
    [{ size: '3145728', 'device/align': '2097152' }, 'EINVAL', 'not a non-zero multiple'],
    [{ size: '0', 'device/align': '4096' }, 'EINVAL', 'not a non-zero multiple'],
    [{ size: '36893488147419103232', 'device/align': '4096' }, 'ERANGE', 'beyond 2^53'],
  ] as const)('garbage %j is %s', (files, code, mention) => {
    expectCode(() => readDevDaxGeometryFor(252, 0, fakeSysfs('252:0', files)), code, mention);
  });

  it('a character device of another subsystem is ENOTSUP', () => {
    const root = fakeSysfs('1:3', { size: '4096', align: '4096' }, { subsystem: '../../../../class/mem' });
    expectCode(() => readDevDaxGeometryFor(1, 3, root), 'ENOTSUP', "subsystem 'mem'");
  });

  it('arbitrary text in size and align gives a geometry or a DaxError, never anything else', () => {
    const seed = testSeed();
    const root = tempDir();
    const node = path.join(root, 'dev', 'char', '252:0');
    fs.mkdirSync(path.join(node, 'device'), { recursive: true });
    const text = fc.oneof(
      fc.string(),
      fc.nat().map(String),
      fc.constantFrom('4096', '2097152', '1073741824', '0x1000'),
    );
    try {
      fc.assert(
        fc.property(text, text, (size, align) => {
          fs.writeFileSync(path.join(node, 'size'), size);
          fs.writeFileSync(path.join(node, 'device', 'align'), align);
          try {
            const g = readDevDaxGeometryFor(252, 0, root);
            return g.sizeBytes > 0 && g.sizeBytes % g.alignment === 0;
          } catch (e) {
            return e instanceof DaxError;
          }
        }),
        { seed, numRuns: 300 },
      );
    } catch (e) {
      console.error(`sysfs fuzz failed: ${replayHint(seed, 'test/device/sysfs.test.ts')}`);
      throw e;
    }
  });
});

describe('device numbers and detection', () => {
  it('splits dev_t like glibc, including majors and minors beyond 8 bits', () => {
    expect(deviceNumbers(fs.statSync('/dev/null').rdev)).toEqual({ major: 1, minor: 3 });
    const major = 300;
    const minor = 70000;
    const dev = ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12);
    expect(deviceNumbers(dev)).toEqual({ major, minor });
  });

  it('readDevDaxGeometry stats the device: missing is ENOENT, a regular file EINVAL', () => {
    expectCode(() => readDevDaxGeometry('/dev/no-such-dax9.9'), 'ENOENT');
    const file = path.join(tempDir(), 'f');
    fs.writeFileSync(file, 'x');
    expectCode(() => readDevDaxGeometry(file), 'EINVAL', 'not a character device');
  });

  it('openRegion on a character device that is not device-DAX is ENOTSUP (real /sys)', () => {
    expectCode(() => openRegion('/dev/null'), 'ENOTSUP', '/dev/null');
  });

  it('the device-DAX path maps a 2 MiB-aligned shared device (/dev/zero posing as dax via a fake sysfs)', () => {
    const root = fakeSysfs('1:5', { size: `${4 * MiB}`, 'device/align': `${2 * MiB}` });
    const media = openRegion('/dev/zero', { sysfsRoot: root });
    expect([media.kind, media.size, media.alignment, media.flushMethod]).toEqual(['devdax', 4 * MiB, 2 * MiB, 'clwb']);
    new Uint8Array(media.buffer)[4 * MiB - 1] = 9;
    media.persist(4 * MiB - 64, 64);
    const out = new Uint8Array(1);
    media.copyOut(4 * MiB - 1, 1, out);
    expect(out[0]).toBe(9);
    expectCode(() => openRegion('/dev/zero', { sysfsRoot: root, sizeBytes: 2 * MiB }), 'EINVAL', 'device size');
    media.close();
  });

  it('a device-DAX mmap failure is reported with the syscall and errno (/dev/null posing as dax)', () => {
    const root = fakeSysfs('1:3', { size: `${2 * MiB}`, 'device/align': `${2 * MiB}` });
    let caught: unknown;
    try {
      openRegion('/dev/null', { sysfsRoot: root });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(DaxError);
    expect([(caught as DaxError).code, (caught as DaxError).syscall, (caught as DaxError).errno]).toEqual([
      'ENOTSUP',
      'mmap',
      'ENODEV',
    ]);
  });
});

describe("open()'s maxSize on device-DAX (planStoreFile; /dev/zero posing as dax via a fake sysfs)", () => {
  it('a maxSize below the device is EINVAL naming the option; one at least the device holds', () => {
    const seed = testSeed();
    const random = rng(seed);
    for (let i = 0; i < 40; i++) {
      const device = (4 + Math.floor(random() * 60)) * 2 * MiB;
      const root = fakeSysfs('1:5', { size: `${device}`, 'device/align': `${2 * MiB}` });
      const maxSize = MIN_STORE_BYTES + Math.floor(random() * ((2 * device) / 4096)) * 4096;
      const plan = (): unknown => planStoreFile('/dev/zero', false, undefined, maxSize, MIN_STORE_BYTES, root);
      if (maxSize < device)
        expectCode(plan, 'EINVAL', `maxSize ${maxSize} is smaller than the device (${device} bytes)`);
      else
        expect(plan(), `device ${device}, maxSize ${maxSize} ${replayHint(seed, 'test/device/sysfs.test.ts')}`).toEqual(
          {
            region: {},
            minBytes: 0,
            maxBytes: 0,
          },
        );
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('without maxSize the device path plans the whole device; a character device that is not device-DAX is left to openRegion', () => {
    const root = fakeSysfs('1:5', { size: `${8 * MiB}`, 'device/align': `${2 * MiB}` });
    expect(planStoreFile('/dev/zero', false, undefined, undefined, MIN_STORE_BYTES, root)).toEqual({
      region: {},
      minBytes: 0,
      maxBytes: 0,
    });
    // /dev/null has no device-DAX sysfs entry in the fake tree: nothing to compare, openRegion reports it.
    expect(planStoreFile('/dev/null', false, undefined, MIN_STORE_BYTES, MIN_STORE_BYTES, root).maxBytes).toBe(0);
    expectCode(() => openRegion('/dev/null', { sysfsRoot: root }), 'ENOTSUP');
  });
});
