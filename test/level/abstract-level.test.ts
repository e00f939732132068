/**
 * abstract-level's own test suite on DaxLevel (test/level/abstract-level-suite.ts, run as a
 * node program printing TAP): every test case must pass (KNOWN_GAPS would list one that waits
 * for a store feature, with the feature). The manifest decides which of the suite's
 * tests run: it declares implicit and explicit snapshots, so the suite runs its iterator
 * snapshot and explicit snapshot tests (and checks that the manifest says so).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect, test } from 'vitest';

const suite = path.resolve(import.meta.dirname, '..', '..', 'dist', 'test', 'level', 'abstract-level-suite.js');

/** Suite test cases that fail for a missing store feature (the name, and why): none. */
const KNOWN_GAPS = new Map<string, string>([]);

interface Tap {
  cases: number;
  assertions: number;
  passed: number;
  failedCases: string[];
  output: string;
}

function run(): Promise<Tap> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', suite], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.on('error', reject);
    child.on('close', () => {
      const failed = new Set<string>();
      let current = '';
      let cases = 0;
      for (const line of output.split('\n')) {
        if (/^# (tests|pass|fail|ok)\b/.test(line)) continue;
        if (line.startsWith('# ')) {
          current = line.slice(2);
          cases++;
        } else if (line.startsWith('not ok ')) failed.add(current);
      }
      const count = (re: RegExp): number => Number(re.exec(output)?.[1] ?? NaN);
      resolve({
        cases,
        assertions: count(/^# tests (\d+)/m),
        passed: count(/^# pass +(\d+)/m),
        failedCases: [...failed],
        output,
      });
    });
  });
}

test('abstract-level 3 suite: every test case passes', { timeout: 900_000 }, async () => {
  const tap = await run();
  console.log(
    `abstract-level suite: ${tap.cases} test cases, ${tap.assertions} assertions, ${tap.passed} passed; ` +
      `failing cases: ${tap.failedCases.length} (${tap.failedCases.join('; ')})`,
  );
  const unexpected = tap.failedCases.filter((name) => !KNOWN_GAPS.has(name));
  expect(
    unexpected,
    tap.output
      .split('\n')
      .filter((l) => l.startsWith('not ok'))
      .join('\n'),
  ).toEqual([]);
  expect(tap.cases).toBeGreaterThan(1000);
  expect(tap.assertions).toBeGreaterThan(4000);
});
