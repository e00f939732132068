/**
 * The package loads from CommonJS and from ES modules, as ONE module instance, and its types
 * resolve for TypeScript users of either, in each module mode a project may use. Run on the
 * built package (dist/, as npm test's pretest leaves it), reached by its own name.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

const repo = path.resolve(import.meta.dirname, '..', '..');
const entries = ['daxstore', 'daxstore/dax', 'daxstore/advanced', 'daxstore/testing', 'daxstore/level'];

describe('CommonJS require', () => {
  test('require() of every entry point works in a child process, and is the same instance as import', () => {
    const store = `/dev/shm/daxstore-cjs-${process.pid}`;
    const script = `
      const assert = require('node:assert');
      const entries = ${JSON.stringify(entries)};
      for (const e of entries) assert.ok(Object.keys(require(e)).length > 0, e);
      const { open, DaxError, isDaxError } = require('daxstore');
      const db = open(${JSON.stringify(store)}, { size: 32 << 20 });
      try {
        db.put('k', 'v');
        assert.strictEqual(db.get('k'), 'v');
        assert.throws(() => db.put(undefined, 'v'), (e) => e instanceof DaxError && isDaxError(e, 'EINVAL'));
      } finally {
        db.close();
        require('node:fs').rmSync(${JSON.stringify(store)}, { force: true });
      }
      import('daxstore').then((esm) => {
        assert.strictEqual(esm.DaxError, DaxError, 'import and require give one module instance');
        process.stdout.write('ok');
      });`;
    const out = execFileSync(process.execPath, ['-e', script], { cwd: repo, encoding: 'utf8' });
    expect(out).toBe('ok');
  });
});

describe('types for CommonJS and ESM consumers', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'daxstore-types-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(repo, path.join(dir, 'node_modules', 'daxstore'));
  const consumer = `
    import { open, isDaxError, type KvStore } from 'daxstore';
    import { RadixTree } from 'daxstore/advanced';
    import { DaxSpace } from 'daxstore/dax';
    import { createSimMedia } from 'daxstore/testing';
    export function use(db: KvStore): string {
      // @ts-expect-error get() is typed: a value is not a number (an untyped \`any\` would make this line pass)
      const n: number = db.get('k');
      return String(n) + typeof open + isDaxError(n) + typeof RadixTree + typeof DaxSpace + typeof createSimMedia;
    }
  `;
  const tsc = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
  const modes: Array<[string, string, 'commonjs' | 'module']> = [
    ['node16', 'node16', 'commonjs'],
    ['nodenext', 'nodenext', 'commonjs'],
    ['commonjs', 'node10', 'commonjs'],
    ['nodenext', 'nodenext', 'module'],
    ['preserve', 'bundler', 'module'],
  ];
  test.each(modes)('--module %s --moduleResolution %s, a %s package: no errors, no skipLibCheck', (mod, res, type) => {
    const project = path.join(dir, `${mod}-${res}-${type}`);
    mkdirSync(project);
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ type }));
    writeFileSync(path.join(project, 'index.ts'), consumer);
    const args = [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', mod, '--moduleResolution', res];
    args.push('--types', 'node', '--typeRoots', path.join(repo, 'node_modules', '@types'), 'index.ts');
    let output = '';
    try {
      execFileSync(process.execPath, args, { cwd: project, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      output = String((e as { stdout?: string }).stdout) + String((e as { stderr?: string }).stderr);
    }
    expect(output).toBe('');
  });
});
