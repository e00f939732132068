/**
 * Worker threads in tests run the compiled JavaScript in dist/ (npm test compiles first:
 * see the pretest script), because worker_threads does not go through vitest's transform.
 * Main-thread test code imports src/ directly; both are the same source.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import v8 from 'node:v8';

// Workers started after this line optimize on their own thread instead of in a V8 background
// job (the flag is read when an isolate is created; the vitest process itself keeps it).
// Why: Node 20's worker teardown (NodePlatform::DrainTasks -> BlockingDrain, which waits for
// every background task of the process) deadlocks with a concurrent TurboFan job of that
// worker that needs a GC (CollectionBarrier::AwaitCollectionBackground) — the worker thread
// that would run the GC is the one draining. nodejs/node#54918, still open. Seen here as
// test/dax/memory-failure-workers.test.ts "hanging" under load: every role had posted its
// result and released every lock, and all worker threads sat in DrainTasks (gdb), and every
// later worker exit in that process hung too. Replaying that test's churn in a loop on one
// loaded core: 4 of 4 processes hung, after 8-34 rounds (77 in all); none in 595 rounds
// with concurrent recompilation off.
v8.setFlagsFromString('--no-concurrent-recompilation');

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
export function runWorker<T = unknown>(name: string, workerData: unknown, timeoutMs = 60_000, env?: Record<string, string>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const worker = new Worker(workerScript(name), { workerData, ...(env === undefined ? {} : { env: { ...process.env, ...env } }) });
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
