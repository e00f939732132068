/**
 * One seed helper for every randomized test (test/helpers/seed.ts): no other test file reads
 * DAXSTORE_SEED or DAXSTORE_LONG, or builds its own generator, so every seed replays the same way.
 */
import { expect, test } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...testFiles(rel));
    else if (rel.endsWith('.ts')) out.push(rel);
  }
  return out;
}

test('only test/helpers/seed.ts reads the seed variables or makes a generator', () => {
  const offenders: string[] = [];
  for (const file of testFiles('test')) {
    if (file === path.join('test', 'helpers', 'seed.ts') || file === path.join('test', 'seed-helper-only.test.ts'))
      continue;
    const code = fs.readFileSync(path.join(root, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
    if (/process\.env(\.|\[')DAXSTORE_(SEED|LONG)/.test(code)) offenders.push(`${file}: reads DAXSTORE_SEED/LONG`);
    if (/\bmulberry32\b/.test(code)) offenders.push(`${file}: makes its own generator (use rng)`);
    if (/x \^= x << 13/.test(code)) offenders.push(`${file}: a xorshift generator of its own (use rng)`);
  }
  expect(offenders).toEqual([]);
});
