/**
 * The library's entry points (package.json exports) load none of the packages only the CLI
 * needs: walking the compiled module graph from each entry (static imports and import()
 * calls alike), no module outside src/cli is reached and no CLI-only package is imported. So
 * an application that imports daxstore pays nothing at run time for `daxstore bench` or
 * `daxstore crash`.
 */
import { expect, test } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI_ONLY = ['commander', 'cli-progress', 'hdr-histogram-js', 'lmdb'];

function graph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const code = fs.readFileSync(file, 'utf8');
    for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)) {
      const spec = m[1];
      if (spec.startsWith('.')) queue.push(path.resolve(path.dirname(file), spec));
      else if (!spec.startsWith('node:'))
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
    }
  }
  return { files, packages };
}

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, string | { default?: string; import?: string | { default?: string } }>;
};

function entryFile(target: unknown): string | undefined {
  if (typeof target === 'string') return target.endsWith('.js') ? target : undefined;
  if (target !== null && typeof target === 'object')
    for (const key of ['import', 'default']) {
      const found = entryFile((target as Record<string, unknown>)[key]);
      if (found !== undefined) return found;
    }
  return undefined;
}

const entries = Object.entries(pkg.exports)
  .map(([name, target]) => [name, entryFile(target)] as const)
  .filter((e): e is readonly [string, string] => e[1] !== undefined);

test('package.json exports at least the four tiers', () => {
  expect(entries.map((e) => e[0])).toEqual(expect.arrayContaining(['.', './dax', './advanced', './testing']));
});

test.each(entries)('%s reaches no CLI module and no CLI-only package', (_name, file) => {
  const { files, packages } = graph(path.join(root, file));
  expect([...files].filter((f) => f.includes(`${path.sep}cli${path.sep}`))).toEqual([]);
  expect([...packages].filter((p) => CLI_ONLY.includes(p))).toEqual([]);
});
