/**
 * Every ```js snippet of README.md runs as a user would paste it: written to a file in a fresh
 * directory whose node_modules/daxstore links to this package (so `import ... from 'daxstore'`
 * resolves through package.json `exports`, as after `npm install daxstore`), run by node with
 * that directory as its working directory, and required to exit 0 within a watchdog. Output a
 * snippet promises in a trailing comment (`console.log(x); // ada`) must appear, in order.
 * The directory lives on /dev/shm when there is one and is removed afterwards, store files
 * included. Not covered: the ```sh blocks (the CLI has its own tests).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

/** The ```js blocks of a Markdown text, with the line each starts on. */
export function jsSnippets(markdown: string): Array<{ line: number; code: string }> {
  const out: Array<{ line: number; code: string }> = [];
  const re = /^```js\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(markdown); m !== null; m = re.exec(markdown))
    out.push({ line: markdown.slice(0, m.index).split('\n').length, code: m[1] });
  return out;
}

/** What the snippet's `console.log(...); // expected, expected` comments promise, in order. */
function promisedOutput(code: string): string[] {
  const promised: string[] = [];
  for (const line of code.split('\n')) {
    const m = /console\.log\(.*\);? \/\/ (.+)$/.exec(line);
    if (m !== null) promised.push(...m[1].split(', ').map((s) => s.trim()));
  }
  return promised;
}

const snippets = jsSnippets(readme);
let dir = '';

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'daxstore-readme-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'daxstore'), 'dir');
});

afterAll(() => {
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

test('README.md has js snippets to run', () => {
  expect(snippets.length).toBeGreaterThanOrEqual(4);
});

test('no README snippet hands a zero-copy view out of read()', () => {
  for (const { line, code } of snippets) {
    // read(() => db.getView(k)) returns the view itself: it outlives the guard that keeps it valid.
    expect(/read\(\s*\(\)\s*=>\s*[\w.]+\.getView\([^()]*\)\s*\)/.test(code), `README.md:${line}`).toBe(false);
  }
});

describe.each(snippets.map((s) => [`README.md:${s.line}`, s] as const))('%s', (_name, { line, code }) => {
  test('runs as pasted and prints what it promises', () => {
    const file = path.join(dir, `snippet-${line}.mjs`);
    fs.writeFileSync(file, code);
    const run = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    const report = `README.md:${line}: exit ${run.status} ${run.signal ?? ''}\n${run.stdout}\n${run.stderr}`;
    expect(run.error, report).toBeUndefined();
    expect(run.status, report).toBe(0);
    let at = 0;
    for (const text of promisedOutput(code)) {
      const found = run.stdout.indexOf(text, at);
      expect(found, `${report}\nexpected output: ${text}`).toBeGreaterThanOrEqual(0);
      at = found + text.length;
    }
  });
});
