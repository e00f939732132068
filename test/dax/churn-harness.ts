/** Starts roles of test/workers/dax-churn.ts against one space, with an optional break switch in the workers' env. */
import { Worker } from 'node:worker_threads';
import { workerScript } from '../helpers/workers.js';
import type { DaxSpace } from '../../src/dax/space.js';
import { READY, STOP, controlWords } from '../workers/dax-churn-layout.js';

export interface RoleSpec {
  role: string;
  objectId: number;
  from?: number;
  to?: number;
  otherId?: number;
  huge?: boolean;
}

export interface Churn {
  control: Int32Array;
  /** Waits until every role is attached and looping. */
  ready(): Promise<void>;
  /** Sets STOP and resolves with each role's result (in start order). */
  stop(): Promise<unknown[]>;
}

export function startChurn(space: DaxSpace, pages: number, seed: number, specs: RoleSpec[], breakName?: string, timeoutMs = 30_000): Churn {
  const control = new Int32Array(new SharedArrayBuffer(4 * controlWords(pages)));
  const env = { ...process.env, DAXSTORE_TEST_BREAK: breakName ?? '' };
  let failed = false; // a worker died (e.g. could not load its module): stop waiting for READY
  const results = specs.map((spec, i) => new Promise<unknown>((resolve, reject) => {
    const w = new Worker(workerScript('dax-churn'), { workerData: { handle: space.share(), control: control.buffer, pages, seed: (seed + i * 7919) >>> 0, ...spec }, env });
    let value: unknown = 'no result';
    const timer = setTimeout(() => {
      void w.terminate();
      resolve(`timeout: ${spec.role}`);
    }, timeoutMs);
    w.once('message', (v) => (value = v));
    w.once('error', (e) => {
      clearTimeout(timer);
      failed = true;
      reject(e);
    });
    w.once('exit', () => {
      clearTimeout(timer);
      resolve(value);
    });
  }));
  for (const r of results) r.catch(() => undefined); // reported by stop(), not as an unhandled rejection
  return {
    control,
    async ready() {
      const deadline = Date.now() + timeoutMs;
      while (!failed && Atomics.load(control, READY) < specs.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    },
    async stop() {
      Atomics.store(control, STOP, 1);
      return Promise.all(results);
    },
  };
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
