/** `daxstore inject`: each fault it plants is seen by the store and by `check`. */
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDaxError, open } from '../../src/api/daxstore.js';
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

  it('poison marks the block bad: recovery stops at it and check reports it', () => {
    const file = makeStore(dir, 10);
    const r = cli(['inject', 'poison', file, '--key', 'key3', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const kv = open(file);
    try {
      // the whole (small) log is on that block: the segment scan stops there and says so
      expect(kv.recovery?.poisonedSegments).toBe(1);
      expect(kv.dax.device.badBlocks()).toEqual([JSON.parse(r.stdout).poisonedBlock]);
    } finally {
      kv.close();
    }
    expect(cli(['check', file]).stdout).toMatch(/segments stop at a poisoned block/);
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
