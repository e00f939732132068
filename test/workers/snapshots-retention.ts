/**
 * Child process of test/kv/kv-snapshot-registry.test.ts (run with --expose-gc): in ONE
 * synchronous job, creates `count` handles' Snapshots over fresh shared buffers, each taking
 * and leaving (as close() does), with (`register`) or without a snapshot taken first, then
 * collects and prints how many MiB of array buffers the job still holds. A snapshot queues a
 * microtask that stamps it, and a job that never ends never runs it: the task must not keep a
 * closed handle (and its buffer) alive.
 */
import { Snapshots } from '../../src/kv/snapshots.js';

const [count, register] = [Number(process.argv[2]), process.argv[3] === 'register'];
const gc = (globalThis as { gc?: () => void }).gc!;
gc();
const before = process.memoryUsage().arrayBuffers;
for (let i = 0; i < count; i++) {
  const s = new Snapshots(Snapshots.create(), () => 0);
  if (register) s.register(() => 1);
  s.leave();
}
gc();
process.stdout.write(String((process.memoryUsage().arrayBuffers - before) / 2 ** 20));
