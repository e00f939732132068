/**
 * `daxstore check` on damaged store files: a flipped byte in a record, a torn superblock
 * copy, a leaked block. Each is found (exit 1, named in the report), check itself changes
 * nothing, and --repair leaves a store that checks clean.
 */
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cli, flipRecordByte, leakBlock, makeStore, tearSuperblockCopyB, tempDir } from './run-cli.js';

let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function checkJson(
  file: string,
  extra: string[] = [],
): {
  status: number | null;
  report: { ok: boolean; problems: string[]; repaired?: { after: { ok: boolean }; lostKeys: string[] } };
} {
  const r = cli(['check', file, '--json', ...extra]);
  return { status: r.status, report: JSON.parse(r.stdout) };
}

describe('check', () => {
  it('a healthy store checks ok with exit 0', () => {
    const file = makeStore(dir);
    const r = checkJson(file);
    expect(r.status).toBe(0);
    expect(r.report.problems).toEqual([]);
  });

  it('finds a flipped byte in a record, changes nothing, and --repair keeps every other key and lists the lost one', () => {
    const file = makeStore(dir);
    flipRecordByte(file, 7);
    const damaged = fs.readFileSync(file);
    const r = checkJson(file);
    expect(r.status).toBe(1);
    expect(r.report.problems.join('\n')).toMatch(
      /damaged key-value record at offset \d+\.\.\d+ \(segment at block \d+\): checksum mismatch; it held put "key7"/,
    );
    expect(r.report.problems.join('\n')).toMatch(/keys whose newest value is in the damage \(lost\): "key7"/);
    expect(fs.readFileSync(file).equals(damaged)).toBe(true);
    const fixed = checkJson(file, ['--repair']);
    expect(fixed.status).toBe(0);
    expect(fixed.report.repaired?.after.ok).toBe(true);
    expect(fixed.report.repaired?.lostKeys).toEqual(['"key7"']);
    expect(fs.readdirSync(`${file}.quarantine`)).toHaveLength(2); // the damaged bytes, the report
    const dump = JSON.parse(cli(['dump', file, '--json']).stdout) as Array<{ key: string; value: string }>;
    expect(dump.map((d) => d.key).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `key${i}`).sort());
    expect(dump.find((d) => d.key === 'key7')?.value).toBe('(EIO: cannot be read)');
    expect(dump.find((d) => d.key === 'key8')?.value).toMatch(/^value-8-/);
    const again = checkJson(file);
    expect(again.status).toBe(0);
    expect(again.report.problems).toEqual([]);
  });

  it('finds a torn superblock copy, and --repair rewrites it', () => {
    const file = makeStore(dir);
    tearSuperblockCopyB(file);
    const r = checkJson(file);
    expect(r.status).toBe(1);
    expect(r.report.problems).toEqual(['superblock copy B at offset 4096: checksum-mismatch']);
    expect(checkJson(file, ['--repair']).status).toBe(0);
    expect(checkJson(file).report.problems).toEqual([]);
  });

  it('finds a leaked block, and --repair frees it', () => {
    const file = makeStore(dir);
    leakBlock(file);
    const r = checkJson(file);
    expect(r.status).toBe(1);
    expect(r.report.problems.join('\n')).toMatch(/leaked blocks: 1 owned by dead objects/);
    expect(checkJson(file, ['--repair']).status).toBe(0);
    expect(checkJson(file).status).toBe(0);
  });

  it('text output names the problem on one line per problem', () => {
    const file = makeStore(dir);
    tearSuperblockCopyB(file);
    const r = cli(['check', file]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/problem: superblock copy B at offset 4096: checksum-mismatch/);
  });
});
