/**
 * abstract-level's own test suite (abstract-level/test, run with tape) on DaxLevel, as a
 * plain node program printing TAP; test/level/abstract-level.test.ts runs it in npm test.
 * Every database the suite makes is a fresh store file in one directory. A store file takes
 * its whole size in tmpfs (the suite makes well over a thousand), so each test's teardown
 * removes the files of the databases that are closed by then (a test that closes and reopens
 * a database does so before its end); the directory goes at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DaxLevel } from '../../src/level/dax-level.js';

interface Tape {
  (...args: unknown[]): unknown;
  onFinish(fn: () => void): void;
}
interface TapeTest {
  teardown(fn: () => void): void;
}

const require = createRequire(import.meta.url);
const tape = require('tape') as Tape;
const suite = require('abstract-level/test') as (options: { test: unknown; factory: (o?: object) => unknown }) => void;

const dir = mkdtempSync(path.join('/dev/shm', 'daxlevel-suite-'));
let n = 0;
const made = new Map<string, DaxLevel>();

/** The garbage collector, when run with --expose-gc (abstract-level.test.ts does). */
const gc = (globalThis as { gc?: () => void }).gc;
let removed = 0;

function removeClosed(): void {
  for (const [file, db] of made)
    if (db.status === 'closed') {
      rmSync(file, { force: true });
      made.delete(file);
      // A closed store's mapping (and so its tmpfs pages) goes only when its buffer is collected;
      // the heap stays small, so without this the suite's resident size grows to gigabytes.
      if (++removed % 64 === 0) gc?.();
    }
}

/** tape's test() with the teardown above; anything else (test.skip, options) as tape has it. */
const test = Object.assign((...args: unknown[]) => {
  const fn = args[args.length - 1];
  if (typeof fn === 'function')
    args[args.length - 1] = (t: TapeTest) => {
      t.teardown(removeClosed);
      return (fn as (t: TapeTest) => unknown)(t);
    };
  return tape(...args);
}, tape);

tape.onFinish(() => rmSync(dir, { recursive: true, force: true }));
suite({
  test,
  factory: (options?: object) => {
    const file = path.join(dir, `db-${n++}`);
    const db = new DaxLevel(file, { size: 6 * 2 ** 20, ...options });
    made.set(file, db);
    return db;
  },
});
