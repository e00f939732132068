/** One process owns a store file: a second process opening it gets EBUSY and changes nothing. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from '../helpers/kv-bytes.js';
import { expectCode } from '../helpers/expect-code.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('kv single owner process', () => {
  it('a second process gets EBUSY while the first has the store open', () => {
    const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-busy-'));
    const file = path.join(dir, 'store');
    const script = `import(${JSON.stringify(path.join(root, 'dist/src/kv/index.js'))}).then((m) => { try { m.open(${JSON.stringify(file)}).close(); console.log('opened'); } catch (e) { console.log(e.code); } })`;
    try {
      const db = open(file, { size: 8 * 2 ** 20 });
      db.put('k', 'v');
      expect(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim()).toBe('EBUSY');
      expect(Buffer.from(db.get('k')!).toString()).toBe('v');
      db.close();
      expect(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim()).toBe('opened');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a second open() in this process says to share the open store; another process is told it is held elsewhere', () => {
    const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-busy-'));
    const file = path.join(dir, 'store');
    const script = `import(${JSON.stringify(path.join(root, 'dist/src/kv/index.js'))}).then((m) => { try { m.open(${JSON.stringify(file)}); } catch (e) { console.log(e.message); } })`;
    try {
      const db = open(file, { size: 8 * 2 ** 20 });
      const e = expectCode(() => open(file), 'EBUSY');
      expect(e.message).toMatch(/already open in this process.*db\.share\(\).*attach\(handle\)/);
      const elsewhere = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      expect(elsewhere).toContain('EBUSY');
      expect(elsewhere).not.toContain('this process');
      db.close();
      open(file).close(); // the refused opens left nothing held
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
