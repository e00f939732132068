/**
 * Device-DAX geometry from sysfs: size and mapping alignment of /dev/daxX.Y.
 *
 * Takes the sysfs root as a parameter so tests run against a fake tree in a temp dir;
 * the addon maps with exactly the size and alignment computed here.
 *
 *   <root>/dev/char/MAJ:MIN/size                     bytes, decimal
 *   <root>/dev/char/MAJ:MIN/device/align             bytes, decimal (newer kernels)
 *   <root>/dev/char/MAJ:MIN/align                    (some kernels expose it beside size)
 *   <root>/dev/char/MAJ:MIN/device/dax_region/align  (older kernels: region-wide)
 *   <root>/dev/char/MAJ:MIN/subsystem                symlink ending in 'dax' when present
 */
import fs from 'node:fs';
import path from 'node:path';
import { DaxError } from '../errors.js';

export const DEFAULT_SYSFS_ROOT = '/sys';
/** The alignments device-DAX supports: 4 KiB, 2 MiB, 1 GiB pages. */
export const DEVDAX_ALIGNMENTS: readonly number[] = [4096, 2 * 1024 * 1024, 1024 * 1024 * 1024];

export interface DevDaxGeometry {
  readonly sizeBytes: number;
  readonly alignment: number;
  /** the sysfs directory the numbers came from */
  readonly sysfsPath: string;
}

/** Linux dev_t split (glibc gnu_dev_major/minor), from fs.Stats.rdev. */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return { major, minor };
}

/** Geometry of the character device at devicePath (stat gives its numbers). */
export function readDevDaxGeometry(devicePath: string, sysfsRoot: string = DEFAULT_SYSFS_ROOT): DevDaxGeometry {
  const st = fs.statSync(devicePath, { throwIfNoEntry: false });
  if (st === undefined) throw new DaxError('ENOENT', `device ${devicePath} does not exist`, { path: devicePath });
  if (!st.isCharacterDevice())
    throw new DaxError('EINVAL', `${devicePath} is not a character device`, { path: devicePath });
  const { major, minor } = deviceNumbers(st.rdev);
  return readDevDaxGeometryFor(major, minor, sysfsRoot, devicePath);
}

export function readDevDaxGeometryFor(
  major: number,
  minor: number,
  sysfsRoot: string = DEFAULT_SYSFS_ROOT,
  devicePath = `char ${major}:${minor}`,
): DevDaxGeometry {
  const node = path.join(sysfsRoot, 'dev', 'char', `${major}:${minor}`);
  if (!fs.existsSync(node)) {
    throw new DaxError('ENOTSUP', `${devicePath} is not device-DAX: no sysfs entry ${node}`, { path: devicePath });
  }
  checkSubsystem(node, devicePath);
  const alignment = readNumber(findFirst(node, ['device/align', 'align', 'device/dax_region/align'], devicePath));
  if (!DEVDAX_ALIGNMENTS.includes(alignment)) {
    throw new DaxError('EINVAL', `${devicePath}: alignment ${alignment} is not 4 KiB, 2 MiB or 1 GiB (from ${node})`, {
      path: devicePath,
    });
  }
  const sizeBytes = readNumber(findFirst(node, ['size', 'device/size'], devicePath));
  if (sizeBytes === 0 || sizeBytes % alignment !== 0) {
    throw new DaxError(
      'EINVAL',
      `${devicePath}: size ${sizeBytes} is not a non-zero multiple of alignment ${alignment}`,
      {
        path: devicePath,
      },
    );
  }
  return { sizeBytes, alignment, sysfsPath: node };
}

function checkSubsystem(node: string, devicePath: string): void {
  let target: string;
  try {
    target = fs.readlinkSync(path.join(node, 'subsystem'));
  } catch {
    return; // absent: older kernels and fake trees; size/align decide
  }
  if (path.basename(target) !== 'dax') {
    throw new DaxError(
      'ENOTSUP',
      `${devicePath} is a character device of subsystem '${path.basename(target)}', not device-DAX`,
      {
        path: devicePath,
      },
    );
  }
}

function findFirst(node: string, candidates: readonly string[], devicePath: string): string {
  for (const rel of candidates) {
    const file = path.join(node, rel);
    if (fs.existsSync(file)) return file;
  }
  throw new DaxError(
    'ENOENT',
    `${devicePath}: none of ${candidates.map((c) => path.join(node, c)).join(', ')} exists`,
    {
      path: devicePath,
    },
  );
}

/** A sysfs number: decimal (or 0x hex), one line, a safe integer. */
function readNumber(file: string): number {
  const text = fs.readFileSync(file, 'utf8').trim();
  if (!/^(\d+|0x[0-9a-fA-F]+)$/.test(text)) {
    throw new DaxError('EINVAL', `sysfs file ${file} holds '${text.slice(0, 40)}', not a number`, { path: file });
  }
  const value = BigInt(text);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new DaxError('ERANGE', `sysfs file ${file} holds ${text}, beyond 2^53`, { path: file });
  }
  return Number(value);
}
