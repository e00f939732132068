/**
 * Runs the compiled command (dist/src/cli/main.js; `npx tsc -p tsconfig.json` first) as a
 * child process, and makes small stores for the tests in a fresh temp directory.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from '../helpers/kv-bytes.js';
import { Device, openRegion } from '../../src/api/dax.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MAIN = path.join(root, 'dist', 'src', 'cli', 'main.js');

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the command to its end; a run past `timeoutMs` is killed (status null). */
export function cli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 120_000): CliRun {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: timeoutMs,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** cli() without blocking: several children run at once (the crash runs are CPU-bound, one each). */
export function cliAsync(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

export function tempDir(): string {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, 'daxstore-cli-test-'));
}

/** A closed 8 MiB store with `keys` keys 'key<i>' -> 'value-<i>-…'. */
export function makeStore(dir: string, keys = 50): string {
  const file = path.join(dir, 'store.pmem');
  const kv = open(file, { size: 8 * 2 ** 20 });
  for (let i = 0; i < keys; i++) kv.put(`key${i}`, `value-${i}-${'x'.repeat(20)}`);
  kv.close();
  return file;
}

/** Flips one bit inside the record of 'key<i>' (in its value bytes). */
export function flipRecordByte(file: string, i: number): number {
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf(`value-${i}-`);
  if (at < 0) throw new Error(`value of key${i} not found in ${file}`);
  bytes[at + 3] ^= 0x20;
  fs.writeFileSync(file, bytes);
  return at;
}

/** Flips one byte of superblock copy B (a torn update of that copy). */
export function tearSuperblockCopyB(file: string): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, 4096 + 40);
  b[0] ^= 1;
  fs.writeSync(fd, b, 0, 1, 4096 + 40);
  fs.closeSync(fd);
}

/** Allocates one block to an owner nothing reaches (a dead object id). */
export function leakBlock(file: string): number {
  const device = Device.open(openRegion(file, {}));
  try {
    return device.allocate(999, 0);
  } finally {
    device.close();
  }
}
