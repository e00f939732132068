/** Wrong arguments: exit 2, one line `daxstore: EUSAGE: …` on stderr, never a stack trace. */
import { describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

const WRONG: Array<[string, string[]]> = [
  ['unknown command', ['frobnicate']],
  ['unknown option', ['info', '/tmp/x', '--bogus']],
  ['missing path', ['check']],
  ['bad number', ['dump', '/tmp/x', '--limit', 'ten']],
  ['zero limit', ['dump', '/tmp/x', '--limit', '0']],
  ['bad size', ['bench', '--size', '12Q']],
  ['bad choice', ['crash', '--workload', 'nope']],
  ['bad hex prefix', ['dump', '/dev/null', '--prefix', 'hex:zz']],
  ['poison without a target', ['inject', 'poison', '/tmp/x']],
  ['bench locks with too few threads', ['bench', 'locks', '--threads', '2']],
  ['bench locks with an object too small for 2 MiB entries', ['bench', 'locks', '--object-size', '4M']],
  ['bench locks: a store too small for its object', ['bench', 'locks', '--size', '16M']],
  ['no command at all', []],
];

describe('usage errors', () => {
  for (const [name, args] of WRONG) {
    it(`${name}: exit 2, one line with its code, no stack`, () => {
      const r = cli(args);
      expect(r.status, r.stderr).toBe(2);
      if (args.length > 0) {
        const lines = r.stderr.trimEnd().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(/^daxstore: EUSAGE: /);
      }
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it('a store error is one line with the DaxError code and exit 3', () => {
    const r = cli(['info', '/nonexistent/daxstore.pmem']);
    expect(r.status).toBe(3);
    expect(r.stderr.trimEnd()).toMatch(/^daxstore: ENOENT: \/nonexistent\/daxstore.pmem does not exist$/);
  });

  it('a file that is not a store: ENOTSTORE, exit 3, file unchanged', () => {
    const r = cli(['check', '/dev/null']);
    expect(r.status).toBe(3);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('--help works on every subcommand and exits 0', () => {
    for (const sub of [
      ['info'],
      ['dump'],
      ['check'],
      ['bench'],
      ['crash'],
      ['inject'],
      ['inject', 'poison'],
      ['inject', 'enospc'],
      ['inject', 'eio'],
    ]) {
      const r = cli([...sub, '--help']);
      expect(r.status, sub.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: daxstore /);
    }
  });
});
