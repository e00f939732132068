/**
 * The meta-test of the switch registry (src/test-break.ts): every registered switch has a test
 * that goes red with it, and the registry is the only list.
 *   - Each switch names at least one test file in `red`; every one exists and holds a test whose
 *     title names the switch (a templated title, `${name}` or `%s`, counts when the file spells
 *     the switch out as a string). The red test's own assertion is what makes it go red; this
 *     checks that no switch is left without one (its test removed, renamed or never written).
 *   - Every switch is read by the code it breaks: isBroken/brokenAtLoad in src/, or the addon.
 *   - DAXSTORE_TEST_BREAK is read only by src/test-break.ts (the addon gets its switches from
 *     TypeScript), and docs/TESTING.md lists exactly the registered switches.
 * Static by design: running every red test again here would double the suite's time.
 */
import { describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SWITCHES, breakEnv, setBroken, withBroken, isBroken, type SwitchName } from '../src/test-break.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const names = Object.keys(SWITCHES) as SwitchName[];

function read(rel: string): string {
  return fs.readFileSync(path.join(root, rel), 'utf8');
}

function filesUnder(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(rel, ext));
    else if (ext.test(entry.name)) out.push(rel);
  }
  return out;
}

/** Source without block comments and whole-line // comments (titles and strings stay). */
function code(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

/** The titles of the it()/test() calls (it.each included) in a test file's source. */
export function testTitles(source: string): string[] {
  const titles: string[] = [];
  const start = /\b(?:it|test)(?:\.each\([\s\S]*?\)\s*)?\(\s*(['"`])/g;
  const text = code(source);
  for (let m = start.exec(text); m !== null; m = start.exec(text)) {
    const quote = m[1];
    let i = start.lastIndex;
    let title = '';
    while (i < text.length && text[i] !== quote) {
      if (text[i] === '\\') title += text[i++];
      title += text[i++];
    }
    titles.push(title);
  }
  return titles;
}

function namesToken(text: string, name: string): boolean {
  return new RegExp(`(^|[^a-z0-9-])${name.replace(/-/g, '\\-')}([^a-z0-9-]|$)`).test(text);
}

/** Whether a test file holds a test whose title names the switch. */
export function hasRedTest(source: string, name: SwitchName): boolean {
  const spelled = new RegExp(`['"\`,]${name}['"\`,]`).test(code(source));
  return testTitles(source).some((t) => namesToken(t, name) || (spelled && /\$\{|%[sj]|\$\w/.test(t)));
}

/** The registered switches none of whose `red` files holds a test that names them. */
export function switchesWithoutRedTest(readFile: (rel: string) => string | undefined): string[] {
  const missing: string[] = [];
  for (const name of names) {
    const files: readonly string[] = SWITCHES[name].red;
    const covered = files.some((f) => {
      const source = readFile(f);
      return source !== undefined && hasRedTest(source, name);
    });
    if (files.length === 0 || !covered) missing.push(name);
  }
  return missing;
}

const readIfExists = (rel: string): string | undefined => (fs.existsSync(path.join(root, rel)) ? read(rel) : undefined);

describe('test-break switch registry', () => {
  test('every registered switch has a test that goes red with it', () => {
    expect(switchesWithoutRedTest(readIfExists)).toEqual([]);
  });

  test.each(names)('every red file listed for %s exists and names the switch in a test title', (name) => {
    for (const file of SWITCHES[name].red) {
      const source = readIfExists(file);
      expect(source, `${name}: ${file} does not exist`).toBeDefined();
      expect(hasRedTest(source!, name), `${name}: no test in ${file} names it`).toBe(true);
    }
  });

  test('removing a switch red test makes the check fail', () => {
    // The check above, on the repository with one red test taken out: it must report that switch.
    const name: SwitchName = 'kv-group-resolve-early';
    const [file] = SWITCHES[name].red;
    const removed = read(file).replace(/\bit\('goes red with DAXSTORE_TEST_BREAK=kv-group-resolve-early'/, "it('x'");
    expect(removed).not.toBe(read(file));
    expect(switchesWithoutRedTest((rel) => (rel === file ? removed : readIfExists(rel)))).toEqual([name]);
  });

  test('every switch is read by the code it breaks', () => {
    const sources = [...filesUnder('src', /\.ts$/), ...filesUnder('addon', /\.(cc|h)$/)]
      .filter((f) => f !== path.join('src', 'test-break.ts'))
      .map(read)
      .join('\n');
    for (const name of names) {
      const spec = SWITCHES[name];
      const reads =
        spec.read === 'process'
          ? new RegExp(`brokenAtLoad\\('${name}'\\)`).test(sources)
          : new RegExp(`${spec.read === 'call' ? 'isBroken' : 'brokenAtLoad'}\\('${name}'\\)`).test(sources);
      expect(reads, `${name} (${spec.read}) is never read in src/`).toBe(true);
    }
  });

  test('only src/test-break.ts reads DAXSTORE_TEST_BREAK; the addon never calls getenv for it', () => {
    for (const file of filesUnder('src', /\.ts$/)) {
      if (file === path.join('src', 'test-break.ts')) continue;
      expect(/process\.env\[?['".]?DAXSTORE_TEST_BREAK/.test(read(file)), file).toBe(false);
    }
    for (const file of filesUnder('addon', /\.(cc|h)$/)) expect(/getenv\(/.test(read(file)), file).toBe(false);
  });

  test('docs/TESTING.md lists exactly the registered switches', () => {
    const listed = [...read('docs/TESTING.md').matchAll(/^\| `([a-z0-9-]+)` \| (addon|device|index|dax|kv|cli) \|/gm)];
    expect(listed.map((m) => m[1]).sort()).toEqual([...names].sort());
    for (const m of listed) expect(m[2], m[1]).toBe(SWITCHES[m[1] as SwitchName].layer);
  });

  test('setBroken and withBroken flip call switches in this thread only; load and process switches refuse', () => {
    expect(isBroken('kv-skip-drain')).toBe(false);
    expect(withBroken('kv-skip-drain', () => isBroken('kv-skip-drain'))).toBe(true);
    expect(isBroken('kv-skip-drain')).toBe(false);
    expect(() => setBroken('entry-lock', true)).toThrow(/breakEnv/);
    expect(() => setBroken('flock', true)).toThrow(/breakEnv/);
    expect(breakEnv('epoch', 'wait-arm')).toEqual({ DAXSTORE_TEST_BREAK: 'epoch,wait-arm' });
  });

  test('an unknown name in DAXSTORE_TEST_BREAK is an error, not a switch that tests nothing', () => {
    const run = (value: string) =>
      spawnSync(process.execPath, ['-e', "import('./dist/src/test-break.js').then(() => console.log('loaded'))"], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, DAXSTORE_TEST_BREAK: value },
      });
    expect(run('epoch,kv-skip-drain').stdout).toContain('loaded');
    const typo = run('epoch,kv-skip-drian');
    expect(typo.status).not.toBe(0);
    expect(typo.stderr).toContain("unknown switch 'kv-skip-drian'");
  });
});
