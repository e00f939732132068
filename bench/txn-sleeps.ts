/**
 * Where txn.bench's worker threads sleep (blocked: the "asleep" column), from a scheduler trace:
 * every switch away from a thread in state S or D with its kernel stack, until the switch back
 * to it, summed per worker by what the stack waits on:
 *
 *   folio       a page fault waiting for a page's lock (shmem_fault -> __folio_lock): a
 *               MADV_COLLAPSE of the same 2 MiB holds its pages locked while it runs
 *   mmap_lock   the address space's lock (rwsem): mmap, mprotect, madvise of another thread
 *   futex       a futex: Atomics.wait, V8's platform and GC task queues, malloc's arena lock
 *   epoll       the worker's event loop, idle (start-up and exit)
 *
 * The workers are told apart by the order txn.bench starts them in (12 per round: daxstore
 * 'none' 1 thread, lmdb noSync, daxstore 'sync', lmdb sync, then the same with 2 threads each);
 * daxstore's are printed per row over all rounds, warm-up and exit included.
 *
 *   TXN_BENCH_SKIP=reads,snapshot perf record -q -o /tmp/t.data -e sched:sched_switch \
 *     -e sched:sched_wakeup -g -- node dist/bench/txn.bench.js
 *   perf script -i /tmp/t.data -F tid,time,event,trace,ip,sym > /tmp/t.script
 *   node dist/bench/txn-sleeps.js /tmp/t.script
 */
import { readFileSync } from 'node:fs';

const ROWS = ['none 1', 'lmdb 1', 'sync 1', 'lmdbs 1', 'none 2', 'none 2', 'lmdb 2', 'lmdb 2', 'sync 2', 'sync 2'];
const ROWS_PER_ROUND = 12;
const SWITCH =
  /(\d+\.\d+):\s+sched:sched_switch: prev_comm=\S+ prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=\S+ next_pid=(\d+)/;

function kind(stack: string): string {
  if (stack.includes('folio')) return 'folio';
  if (stack.includes('rwsem')) return 'mmap_lock';
  if (stack.includes('epoll')) return 'epoll';
  if (stack.includes('futex')) return 'futex';
  return 'other';
}

for (const file of process.argv.slice(2)) {
  const first = new Map<number, number>();
  const switches = new Map<number, number>();
  const sleeping = new Map<number, [number, string]>();
  const asleep = new Map<number, Map<string, number>>();
  for (const event of readFileSync(file, 'utf8').split('\n\n')) {
    const lines = event.trim().split('\n');
    const m = SWITCH.exec(lines[0]);
    if (m === null) continue;
    const t = Number(m[1]);
    const prev = Number(m[2]);
    const next = Number(m[4]);
    if (!first.has(prev)) first.set(prev, t);
    switches.set(prev, (switches.get(prev) ?? 0) + 1);
    if (m[3][0] === 'S' || m[3][0] === 'D') sleeping.set(prev, [t, kind(lines.slice(1, 8).join(' '))]);
    const s = sleeping.get(next);
    if (s !== undefined) {
      sleeping.delete(next);
      const by = asleep.get(next) ?? new Map<string, number>();
      by.set(s[1], (by.get(s[1]) ?? 0) + t - s[0]);
      asleep.set(next, by);
    }
  }
  // Threads that ran (more than 200 switches), by first appearance: the main thread, then V8's
  // and libuv's from the start, then the workers from half a second on.
  const threads = [...switches].filter(([, n]) => n > 200).map(([tid]) => tid);
  threads.sort((a, b) => first.get(a)! - first.get(b)!);
  const main = first.get(threads[0])!;
  const workers = threads.filter((tid) => first.get(tid)! - main > 0.5);
  const total = new Map<string, number>();
  workers.forEach((tid, i) => {
    const row = ROWS[i % ROWS_PER_ROUND];
    if (row === undefined || row.startsWith('lmdb')) return;
    for (const [k, s] of asleep.get(tid) ?? [])
      total.set(`${row} thread(s) ${k}`, (total.get(`${row} thread(s) ${k}`) ?? 0) + s);
  });
  console.log(`${file}: daxstore workers asleep, ms (${workers.length} workers)`);
  for (const [k, s] of [...total].sort()) console.log(`  ${k.padEnd(28)} ${(s * 1000).toFixed(0).padStart(7)}`);
}
