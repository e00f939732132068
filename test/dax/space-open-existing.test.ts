/**
 * DaxSpace.open on a path: creates and formats only what it created; an existing file that
 * holds no store is refused with ENOTSTORE and left byte for byte as it was.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DaxSpace } from '../../src/dax/space.js';
import { expectCode } from '../helpers/expect-code.js';

const dirs: string[] = [];
function scratch(): string {
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'dax-open-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('DaxSpace.open on a path', () => {
  it('refuses an existing file that is not a store, and leaves it unchanged', () => {
    const file = path.join(scratch(), 'not-a-store');
    for (const fill of [7, 0]) {
      writeFileSync(file, Buffer.alloc(8 * 2 ** 20, fill));
      const before = readFileSync(file);
      expectCode(() => DaxSpace.open(file), 'ENOTSTORE');
      expectCode(() => DaxSpace.open(file, { size: 8 * 2 ** 20 }), 'ENOTSTORE');
      expect(readFileSync(file).equals(before)).toBe(true);
    }
  });

  it('creates and formats a missing path only when given a size, then reopens it', () => {
    const file = path.join(scratch(), 'space');
    expectCode(() => DaxSpace.open(file), 'ENOENT');
    expect(existsSync(file)).toBe(false);
    const space = DaxSpace.open(file, { size: 8 * 2 ** 20 });
    const obj = space.object(16, { create: true, size: 8192 });
    obj.write(0, new TextEncoder().encode('kept'));
    space.close();
    const again = DaxSpace.open(file);
    expect(new TextDecoder().decode(again.object(16).read(0, 4))).toBe('kept');
    again.close();
  });
});
