/**
 * `daxstore bench` as a user meets it: --help shows every default as it would be typed (and
 * each shown default is accepted back), and a store too small for the workload — while
 * loading, or in a worker thread during the run — is ENOSPC in one line naming --size, exit 3,
 * never an internal error with a stack. Speed is not asserted (bench/ measures it).
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';
import { parseDuration, parseList, parseSize } from '../../src/cli/args.js';

function benchDirs(): string[] {
  return fs.existsSync('/dev/shm') ? fs.readdirSync('/dev/shm').filter((f) => f.startsWith('daxstore-bench-')) : [];
}

describe('bench', () => {
  it('--help shows the defaults as a user types them, and each is accepted back', () => {
    const help = cli(['bench', '--help']).stdout.replace(/\s+/g, ' ');
    const shown = (flag: string): string => {
      const m = new RegExp(`${flag} <[a-z]+> [^-]*?\\(default: ([^)]+)\\)`).exec(help);
      expect(m, `${flag} in\n${help}`).not.toBeNull();
      return m![1];
    };
    expect(shown('--size')).toBe('256M');
    expect(parseSize(shown('--size'))).toBe(256 * 2 ** 20);
    expect(shown('--threads')).toBe('1,2');
    expect(parseList(shown('--threads'))).toEqual([1, 2]);
    expect(shown('--duration')).toBe('1s');
    expect(parseDuration(shown('--duration'))).toBe(1000);
    expect(shown('--workload')).toBe('a,b,c');
    const locks = cli(['bench', 'locks', '--help']).stdout.replace(/\s+/g, ' ');
    for (const d of ['256M', '16M', '2s', '1ms']) expect(locks).toContain(`(default: ${d})`);
    expect(help + locks, 'a default shown in bytes or milliseconds').not.toMatch(
      /default: ((268435456|1000|2000)\)|\[)/,
    );
  });

  const tooSmall: Array<[string, string[]]> = [
    ['while loading its keys', ['--size', '6M', '--keys', '200000', '--workload', 'a', '--duration', '200ms']],
    [
      'in a worker thread during the run',
      ['--size', '6M', '--value-size', '4000', '--workload', 'fill', '--duration', '5s'],
    ],
  ];
  for (const [when, args] of tooSmall)
    it(`a store too small for the workload (${when}): ENOSPC naming --size, exit 3, no stack`, () => {
      const before = new Set(benchDirs());
      const r = cli(['bench', '--threads', '1', '--no-progress', ...args]);
      expect(r.status, r.stderr).toBe(3);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^daxstore: ENOSPC: bench: the daxstore store \(--size \d+ MiB\) is too small .*larger --size/,
      );
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(
        benchDirs().filter((d) => !before.has(d)),
        'bench left its directory behind',
      ).toEqual([]);
    });
});
