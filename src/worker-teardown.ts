/**
 * A workaround for a Node 20 deadlock when a worker thread exits, for the processes of our
 * own that start workers (the CLI's benchmarks, bench/, the test helpers). The library never
 * calls it: a V8 flag is the application's choice.
 *
 * Why: a worker's teardown (NodePlatform::DrainTasks) waits for every background task of the
 * process, and a concurrent TurboFan job of that worker can be waiting for a GC that only the
 * draining thread would run (CollectionBarrier::AwaitCollectionBackground). Both wait forever,
 * and every later worker exit in the process hangs too (nodejs/node#54918, open). It shows as
 * a worker test hanging under load with every lock released and every exiting worker in
 * DrainTasks; with concurrent recompilation off for the workers it does not occur.
 *
 * The flag is read when an isolate is created, so it applies to workers started afterwards;
 * the calling thread keeps its concurrent compiler. Workers then optimize on their own thread
 * (a little more warm-up, the same steady state).
 */
import v8 from 'node:v8';

let applied = false;

export function avoidWorkerTeardownDeadlock(): void {
  if (applied) return;
  applied = true;
  v8.setFlagsFromString('--no-concurrent-recompilation');
}
