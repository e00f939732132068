/** `daxstore inject`: each fault it plants is seen by the store and by `check`. */
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDaxError } from '../../src/api/daxstore.js';
import { open } from '../helpers/kv-bytes.js';
import { cli, makeStore, tempDir } from './run-cli.js';

let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('inject', () => {
  it('eio damages the record of a key: check reports a checksum mismatch', () => {
    const file = makeStore(dir, 10);
    expect(cli(['inject', 'eio', file, '--key', 'key9']).status).toBe(0);
    const r = cli(['check', file]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/checksum mismatch/);
  });

  it('poison marks the block bad: open refuses with EIO, check reports it, salvage keeps what lies elsewhere', () => {
    const file = makeStore(dir, 10);
    const r = cli(['inject', 'poison', file, '--key', 'key3', '--json']);
    expect(r.status, r.stderr).toBe(0);
    let refusal: unknown;
    try {
      open(file).close();
    } catch (e) {
      refusal = e;
    }
    expect(isDaxError(refusal, 'EIO')).toBe(true);
    const kv = open(file, { recovery: 'salvage' });
    try {
      // the whole (small) log is on that block: every key of it is lost, and the report says so
      expect(kv.recovery?.poisonedSegments).toBe(1);
      expect(kv.recovery?.unknownSequences.length).toBe(1);
      expect(kv.dax.device.badBlocks()).toEqual([JSON.parse(r.stdout).poisonedBlock]);
    } finally {
      kv.close();
    }
    expect(cli(['check', file]).status).toBe(0); // salvage moved the log off the block
  });

  it('poison of a block in the middle of a log loses only the records on it', () => {
    const file = makeStore(dir, 400); // ~17 KiB of records: five blocks
    const r = cli(['inject', 'poison', file, '--key', 'key200', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(cli(['check', file]).stdout).toMatch(/poisoned block under key-value records/);
    const fixed = cli(['check', file, '--repair', '--json']);
    expect(fixed.status, fixed.stdout).toBe(0);
    const kv = open(file);
    try {
      const kept = Array.from({ length: 400 }, (_, i) => i).filter((i) => kv.get(`key${i}`) !== undefined);
      expect(kept.length).toBeGreaterThan(300); // ~100 records per block
      expect(kept).not.toContain(200);
      for (const i of kept) expect(new TextDecoder().decode(kv.get(`key${i}`))).toBe(`value-${i}-${'x'.repeat(20)}`);
    } finally {
      kv.close();
    }
  });

  it('enospc leaves the store full: a big put fails with ENOSPC; check --repair frees it', () => {
    const file = makeStore(dir, 10);
    expect(cli(['inject', 'enospc', file]).status).toBe(0);
    const kv = open(file);
    let error: unknown;
    try {
      for (let i = 0; i < 40; i++) kv.put(`big${i}`, new Uint8Array(256 * 1024));
    } catch (e) {
      error = e;
    } finally {
      kv.close();
    }
    expect(isDaxError(error, 'ENOSPC')).toBe(true);
    expect(cli(['check', file, '--repair']).status).toBe(0);
  });
});
