/**
 * R6, readers never see freed memory: workers pin and read a shared object while a writer
 * worker replaces and retires it and the reclaimer poisons released objects. With the
 * epoch check on, no reader ever sees poison or a torn object; the same run with
 * DAXSTORE_TEST_BREAK=epoch (retire releases at once) must see it, which shows the
 * property rests on the grace period and not on luck.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { EpochDomain } from '../../src/index/epoch.js';
import { workerScript } from '../helpers/workers.js';
import { CONTROL, WORDS } from '../workers/index-epoch-stress-layout.js';

interface ReaderResult {
  reads: number;
  violations: number;
  poisonSeen: number;
  broken: boolean;
}
interface WriterResult {
  writes: number;
  starved: number;
  limboLeft: number;
  broken: boolean;
}

function run<T>(name: string, workerData: unknown, breakEpoch: boolean): Promise<T> {
  const env = breakEpoch
    ? { ...process.env, DAXSTORE_TEST_BREAK: 'epoch' }
    : { ...process.env, DAXSTORE_TEST_BREAK: '' };
  const worker = new Worker(workerScript(name), { workerData, env });
  return new Promise<T>((resolve, reject) => {
    let result: T | undefined;
    worker.once('message', (m: T) => (result = m));
    worker.once('error', reject);
    worker.once('exit', (code) =>
      code === 0 && result !== undefined ? resolve(result) : reject(new Error(`${name} exited ${code}`)),
    );
  });
}

async function stress(
  readers: number,
  breakEpoch: boolean,
): Promise<{ readers: ReaderResult[]; writer: WriterResult; domain: EpochDomain }> {
  const domain = EpochDomain.create();
  const objects = new Int32Array(new SharedArrayBuffer(1024 * WORDS * 4));
  objects.fill(1, 0, WORDS); // slot 0 holds version 1 and is current
  const control = new SharedArrayBuffer(4 * 4);
  const data = { handle: domain.handle(), objects: objects.buffer, control, durationMs: 300, readers };
  const readerRuns = Array.from({ length: readers }, () => run<ReaderResult>('index-epoch-reader', data, breakEpoch));
  const writer = await run<WriterResult>('index-epoch-writer', data, breakEpoch);
  expect(Atomics.load(new Int32Array(control), CONTROL.STOP)).toBe(1);
  const all = await Promise.all(readerRuns);
  if (process.env['EPOCH_STRESS_VERBOSE']) console.log(JSON.stringify({ readers, breakEpoch, writer, all }));
  return { readers: all, writer, domain };
}

describe.each([2, 4])('epoch stress with %i reader workers', (readers) => {
  it('pinned readers never see a released object', async () => {
    const r = await stress(readers, false);
    expect(r.writer.broken).toBe(false);
    expect(r.writer.writes).toBeGreaterThan(1000);
    for (const reader of r.readers) {
      expect(reader.reads).toBeGreaterThan(100);
      expect(reader.violations).toBe(0);
    }
    expect(r.writer.limboLeft).toBe(0);
    const s = r.domain.stats();
    expect(s.pinned).toBe(0);
    expect(s.limbo.every((n) => n === 0)).toBe(true);
    expect(s.released).toBe(r.writer.writes);
  });

  it('the same run with DAXSTORE_TEST_BREAK=epoch sees released objects (goes red without the grace period)', async () => {
    const r = await stress(readers, true);
    expect(r.writer.broken).toBe(true);
    const violations = r.readers.reduce((n, x) => n + x.violations, 0);
    expect(violations).toBeGreaterThan(0);
  });
});
