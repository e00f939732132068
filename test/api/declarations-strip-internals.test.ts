/**
 * The published declarations (tsconfig.types.json: src/ only, stripInternal) leave out what is
 * marked @internal: the radix tree's lock-holder and arena members, the store's DAX space. A
 * rename of an internal is then no change to the package's types.
 */
import { expect, test } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
