/**
 * info and check work on a private copy-on-write mapping of the store, not a copy in memory:
 * on a 1 GiB store their peak RSS stays far below the store's size (a copy into a SimMedia
 * took three times the size: working image plus its durable shadow). The file is sparse on
 * tmpfs, so the test itself costs little memory. The file is unchanged afterwards.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../helpers/kv-bytes.js';
import { MAIN, tempDir } from './run-cli.js';

const GIB = 2 ** 30;

/** The first 8 MiB (superblocks, owner table, first segment); reading all 1 GiB would cost this process 1 GiB. */
function head(file: string): Buffer {
  const out = Buffer.alloc(8 * 2 ** 20);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, out, 0, out.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}
const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs one exported run* function of the compiled CLI in a child; returns its exit value and peak RSS in bytes. */
function peakRss(module: string, fn: string, file: string): { code: number; rssBytes: number; stderr: string } {
  const url = new URL(`file://${path.join(path.dirname(MAIN), module)}`).href;
  // VmHWM (peak RSS of this address space; getrusage's maxrss would carry the forking parent's over exec)
  const script = `const m = await import(${JSON.stringify(url)}); const code = m.${fn}(${JSON.stringify(file)}, { json: true }); const fs = await import('node:fs'); const kb = /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]; process.stderr.write('RSS ' + kb * 1024 + ' CODE ' + code + '\\n');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  const m = /RSS (\d+) CODE (\d+)/.exec(r.stderr);
  return { code: m === null ? -1 : Number(m[2]), rssBytes: m === null ? -1 : Number(m[1]), stderr: r.stderr };
}

describe('info and check on a large store', () => {
  const file = path.join(dir, 'big.pmem');
  const kv = open(file, { size: GIB });
  for (let i = 0; i < 100; i++) kv.put(`key${i}`, `value-${i}`);
  kv.close();
  const before = head(file);

  it.each([
    ['inspect.js', 'runInfo'],
    ['check.js', 'runCheck'],
  ])('%s %s: peak RSS well below the 1 GiB store, file unchanged', { timeout: 60_000 }, (module, fn) => {
    const r = peakRss(module, fn, file);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.rssBytes, r.stderr.slice(-500)).toBeGreaterThan(0);
    expect(r.rssBytes).toBeLessThan(GIB / 4);
    expect(head(file).equals(before)).toBe(true);
  });
});
