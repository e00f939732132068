/**
 * abstract-level's own test suite (abstract-level/test, run with tape) on DaxLevel, as a
 * plain node program printing TAP; test/level/abstract-level.test.ts runs it in npm test.
 * Every database the suite makes is a fresh store file in one directory, removed at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DaxLevel } from '../../src/level/dax-level.js';

const require = createRequire(import.meta.url);
const tape = require('tape') as { (name: string, fn: (t: unknown) => unknown): void; onFinish(fn: () => void): void };
const suite = require('abstract-level/test') as (options: { test: unknown; factory: (o?: object) => unknown }) => void;

const dir = mkdtempSync(path.join('/dev/shm', 'daxlevel-suite-'));
let n = 0;
tape.onFinish(() => rmSync(dir, { recursive: true, force: true }));
suite({
  test: tape,
  factory: (options?: object) => new DaxLevel(path.join(dir, `db-${n++}`), { size: 16 * 2 ** 20, ...options }),
});
