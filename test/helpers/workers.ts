/**
 * Worker threads in tests run the compiled JavaScript in dist/ (npm test compiles first:
 * see the pretest script), because worker_threads does not go through vitest's transform.
 * Main-thread test code imports src/ directly; both are the same source.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { avoidWorkerTeardownDeadlock } from '../../src/worker-teardown.js';

// Workers optimize on their own thread: Node 20 can deadlock when a worker exits (src/worker-teardown.ts).
avoidWorkerTeardownDeadlock();

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Path of the compiled worker script for test/workers/<name>.ts. */
export function workerScript(name: string): string {
  return path.join(root, 'dist', 'test', 'workers', `${name}.js`);
}

/**
 * Start test/workers/<name>.ts with workerData; resolves with its first message, rejects on
 * error or non-zero exit. `env` is merged over process.env for the worker (break switches are
 * read at module load, so a worker is how a test runs a broken build beside the real one).
 */
export function runWorker<T = unknown>(
  name: string,
  workerData: unknown,
  timeoutMs = 60_000,
  env?: Record<string, string>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const worker = new Worker(workerScript(name), {
      workerData,
      ...(env === undefined ? {} : { env: { ...process.env, ...env } }),
    });
    let result: { value: T } | undefined;
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`worker ${name} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    worker.once('message', (value: T) => {
      result = { value };
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    worker.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`worker ${name} exited with code ${code}`));
      else if (result === undefined) reject(new Error(`worker ${name} exited without a result`));
      else resolve(result.value);
    });
  });
}

/** Start a worker and return it, for tests that talk to it over messages. */
export function startWorker(name: string, workerData: unknown): Worker {
  return new Worker(workerScript(name), { workerData });
}
