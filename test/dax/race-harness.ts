/** Runs two roles of test/workers/dax-race.ts against one space, with an optional break switch. */
import { Worker } from 'node:worker_threads';
import { workerScript } from '../helpers/workers.js';
import type { DaxSpace } from '../../src/dax/space.js';

export function runRole(
  space: DaxSpace,
  control: SharedArrayBuffer,
  role: string,
  objectId: number,
  breakName: string | undefined,
  extra: Record<string, unknown> = {},
  timeoutMs = 20_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, DAXSTORE_TEST_BREAK: breakName ?? '' };
    const w = new Worker(workerScript('dax-race'), {
      workerData: { handle: space.share(), control, role, objectId, ...extra },
      env,
    });
    let value: unknown;
    const timer = setTimeout(() => {
      void w.terminate();
      resolve('timeout');
    }, timeoutMs);
    w.once('message', (v) => (value = v));
    w.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    w.once('exit', () => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}
