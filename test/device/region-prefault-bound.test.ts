/**
 * Background prefaults are bounded (addon/prefault.h): however fast a process asks for them
 * (a writer opening segment after segment while the prefault threads are starved), at most 4
 * prefault threads run at once; past that an ask is skipped (the writer faults those pages
 * itself). Each ask runs in a child process, so that the thread count read there
 * (/proc/self/status) is that process's own: a 256 MiB region on tmpfs, prefaulted whole 64
 * times in a row (each populate takes far longer than the 64 asks).
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { breakEnv } from '../../src/test-break.js';
import { cleanupTemp, runChild, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

interface Burst {
  before: number;
  max: number;
  started: number;
}

function burst(env: NodeJS.ProcessEnv): Burst {
  const file = path.join(tempDir(), 'region');
  const child = runChild('prefault-burst-child', [file, '256', '64'], { env });
  expect(child.status, child.stderr).toBe(0);
  return child.result as Burst;
}

describe('region prefault bound', () => {
  it('64 prefaults asked at once start at most 4 threads; the rest are skipped', () => {
    const r = burst(process.env);
    expect(r.started).toBeGreaterThanOrEqual(1);
    expect(r.started).toBeLessThan(64);
    // The bound's 4, and 2 for threads node or V8 may start meanwhile on their own.
    expect(r.max - r.before).toBeLessThanOrEqual(6);
  });

  it('with DAXSTORE_TEST_BREAK=prefault-unbounded every ask starts a thread and they pile up', () => {
    const r = burst({ ...process.env, ...breakEnv('prefault-unbounded') });
    expect(r.started).toBe(64);
    // Past what the case above allows: how many overlap depends on how fast each populate ends
    // (13 at most in one run on an idle machine, dozens on a loaded one).
    expect(r.max - r.before).toBeGreaterThan(6);
  });
});
