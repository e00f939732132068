/**
 * Shared by the region tests: unique temp paths on tmpfs (/dev/shm) and on os.tmpdir(),
 * removed after each test, and a way to run a compiled child script in another process.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const TMPFS_MAGIC = 0x01021994;
export const SHM_DIR = '/dev/shm';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const made: string[] = [];

/** A fresh directory under base (default /dev/shm); removed by cleanupTemp(). */
export function tempDir(base: string = SHM_DIR): string {
  const dir = fs.mkdtempSync(path.join(base, 'daxstore-region-'));
  made.push(dir);
  return dir;
}

export function cleanupTemp(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

export function isTmpfs(dir: string): boolean {
  return fs.statfsSync(dir).type === TMPFS_MAGIC;
}

/** Directory entries with sizes: to show a failed call left the file system as it was. */
export function snapshot(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .sort()
    .map((name) => `${name}:${fs.statSync(path.join(dir, name)).size}`);
}

/** Runs dist/test/workers/<name>.js in a new node process; stdout parsed as JSON when it can be. */
export function runChild(
  name: string,
  args: string[],
  opts: SpawnSyncOptions = {},
  nodeArgs: string[] = [],
): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; result: unknown } {
  const script = path.join(root, 'dist', 'test', 'workers', `${name}.js`);
  const out = spawnSync(process.execPath, [...nodeArgs, script, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    ...opts,
  });
  const stdout = String(out.stdout ?? '');
  let result: unknown;
  try {
    result = JSON.parse(stdout);
  } catch {
    result = undefined;
  }
  return { status: out.status, signal: out.signal, stdout, stderr: String(out.stderr ?? ''), result };
}
