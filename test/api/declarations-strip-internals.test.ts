/**
 * The published declarations (tsconfig.types.json: src/ only, stripInternal) leave out what is
 * marked @internal: the radix tree's lock-holder and arena members, the store's DAX space. A
 * rename of an internal is then no change to the package's types. What is left still
 * type-checks in a strict consumer that checks libraries (skipLibCheck false): a class must not
 * declare an interface whose members are stripped.
 */
import { expect, test } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The public (non-private) member names of `export declare class name` in a declaration file. */
function publicMembers(file: string, name: string): string[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const start = text.search(new RegExp(`export declare class ${name}[ <]`));
  expect(start, `${name} in ${file}`).toBeGreaterThanOrEqual(0);
  const body = text.slice(start, text.indexOf('\n}', start));
  return [...body.matchAll(/^ {4}(?:(?:readonly|static|get|set) )*([A-Za-z_$][\w$]*)\s*[(:<?=;]/gm)]
    .filter((m) => !/^ {4}private /.test(m[0]))
    .map((m) => m[1]);
}

test('RadixTree publishes its API, not its lock-holder and arena internals', () => {
  const members = publicMembers('dist/src/index/radix-tree.d.ts', 'RadixTree');
  expect(members).toEqual(
    expect.arrayContaining(['create', 'attach', 'handle', 'lookup', 'insert', 'delete', 'range']),
  );
  for (const internal of ['arena', 'lockTree', 'unlockTree', 'getOrCreateLocked', 'foundExact', 'touched', 'wasmGrab'])
    expect(members, internal).not.toContain(internal);
  expect(
    members.every((m) => !m.endsWith('Locked')),
    members.join(', '),
  ).toBe(true);
});

test('KvStore publishes no DAX space and no open-time internals', () => {
  const members = publicMembers('dist/src/kv/store.d.ts', 'KvStore');
  expect(members).toEqual(expect.arrayContaining(['get', 'put', 'delete', 'range', 'close']));
  expect(members).not.toContain('dax');
  expect(members).not.toContain('largeValuesAtOpen');
});

test('the test and bench sources publish no declarations', () => {
  const found: string[] = [];
  for (const dir of ['dist/test', 'dist/bench'])
    if (fs.existsSync(path.join(root, dir)))
      for (const f of fs.readdirSync(path.join(root, dir), { recursive: true }) as string[])
        if (f.endsWith('.d.ts')) found.push(path.join(dir, f));
  expect(found).toEqual([]);
});

test('the published declarations type-check in a strict consumer with skipLibCheck false', () => {
  const entries = ['daxstore', 'dax', 'advanced', 'testing', 'level'].map((e) =>
    path.join(root, `dist/src/api/${e}.d.ts`),
  );
  for (const e of entries) expect(fs.existsSync(e), e).toBe(true);
  const program = ts.createProgram(entries, {
    strict: true,
    skipLibCheck: false,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
    types: ['node'],
    typeRoots: [path.join(root, 'node_modules/@types')],
  });
  const errors = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file === undefined || d.file.fileName.startsWith(path.join(root, 'dist')))
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n') + (d.file ? ` (${d.file.fileName})` : ''));
  expect(errors).toEqual([]);
}, 60_000);
