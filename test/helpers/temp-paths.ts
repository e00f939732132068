import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';

/** Where emulated-pmem test files live: tmpfs when the machine has it. */
export const TEMP_DIR = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();

export interface TempPaths {
  /** A fresh path (nothing is created), removed after the current test; `suffixes` names companions removed with it. */
  next(suffixes?: readonly string[]): string;
  /** Removes every path handed out so far. */
  removeAll(): void;
}

/**
 * Unique file paths under TEMP_DIR named `daxstore-<tag>-<pid>-<random>`, each removed after the test
 * that took it (call at a test file's top level: it registers an afterEach).
 */
export function tempPaths(tag: string): TempPaths {
  const taken: string[] = [];
  const removeAll = (): void => {
    for (const p of taken.splice(0)) fs.rmSync(p, { force: true });
  };
  afterEach(removeAll);
  return {
    next(suffixes = []) {
      const p = path.join(TEMP_DIR, `daxstore-${tag}-${process.pid}-${Math.random().toString(36).slice(2)}`);
      taken.push(p, ...suffixes.map((s) => p + s));
      return p;
    },
    removeAll,
  };
}
