/**
 * The design lives in the repository: every race number (R1, R2 ...) cited in src/, addon/ or
 * test/ is defined in docs/ARCHITECTURE.md, and every relative link in README.md and docs/*.md
 * names a file of the repository (none points outside it, as ../shared once did).
 */
import { expect, test } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function filesUnder(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'vendor') out.push(...filesUnder(rel, ext));
    } else if (ext.test(entry.name)) out.push(rel);
  }
  return out;
}

test('every R-number cited in the code is defined in docs/ARCHITECTURE.md', () => {
  const architecture = fs.readFileSync(path.join(root, 'docs/ARCHITECTURE.md'), 'utf8');
  const cited = new Map<string, string>();
  for (const file of [
    ...filesUnder('src', /\.ts$/),
    ...filesUnder('addon', /\.(cc|h)$/),
    ...filesUnder('test', /\.ts$/),
  ])
    for (const m of fs.readFileSync(path.join(root, file), 'utf8').matchAll(/\bR([1-9][0-9]*)\b/g))
      if (!cited.has(m[0])) cited.set(m[0], file);
  expect(cited.size).toBeGreaterThan(0);
  for (const [race, file] of cited)
    expect(architecture.includes(`**${race} —`), `${race} (cited in ${file}) has no definition`).toBe(true);
});

test('every relative link in README.md and docs/ names a file of the repository', () => {
  const docs = ['README.md', ...filesUnder('docs', /\.md$/)];
  for (const doc of docs) {
    const text = fs.readFileSync(path.join(root, doc), 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      const resolved = path.resolve(root, path.dirname(doc), target);
      expect(resolved.startsWith(root + path.sep), `${doc}: ${target} points outside the repository`).toBe(true);
      expect(fs.existsSync(resolved), `${doc}: ${target} does not exist`).toBe(true);
    }
    expect(text.includes('../shared'), `${doc} cites ../shared`).toBe(false);
  }
});
