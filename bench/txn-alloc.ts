/**
 * What a 4-read + 4-write transaction (txn.bench.ts's, in one thread) allocates on the V8 heap,
 * for one or more builds of daxstore: per build, in a fresh child process, a store filled with
 * 16-byte random keys and 100-byte values ('binary' keys and values), a warm-up, then a window
 * of transactions recorded by v8.GCProfiler. Bytes allocated in the window are the sum, over its
 * garbage collections, of the heap used before each one minus the heap used after the one
 * before (the window's start and end: the heap used then). Prints bytes per transaction, scavenges per 10,000
 * transactions and their pause per transaction. The bench's own allocation (a closure and 8 key
 * subarrays per transaction, about 0.9 KB) is in the figure; it is the same for every build.
 * Builds run one after another, several passes alternated.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/txn-alloc.js [--roots '<root A>,<root B>'] [--passes 2] [--keys 100000]
 *     [--ms 2000] [--durability none|sync]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GCProfiler, getHeapStatistics } from 'node:v8';
import { packedKeys } from './bench-store.js';
import { arg, packageRoot } from './args.js';

const KEYS = Number(arg('keys', '100000'));
const MS = Number(arg('ms', '2000'));
const DURABILITY = arg('durability', 'none');
const VALUE = new Uint8Array(100).fill(7);

interface Db {
  put(key: Uint8Array, value: Uint8Array): void;
  transactionSync(fn: (txn: { get(k: Uint8Array): unknown; put(k: Uint8Array, v: Uint8Array): void }) => void): void;
  close(): void;
}

/** Child mode: one build's figures as a JSON line. */
async function child(root: string): Promise<void> {
  const { open } = (await import(pathToFileURL(path.resolve(root, 'dist/src/kv/index.js')).href)) as {
    open: (p: string, o: object) => Db;
  };
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'txn-alloc-'));
  try {
    const { key, pick } = await packedKeys(KEYS);
    const db = open(path.join(dir, 'db'), {
      size: 256 * 2 ** 20,
      durability: DURABILITY,
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
    for (let i = 0; i < KEYS; i++) db.put(key(i), VALUE);
    const step = (): void =>
      db.transactionSync((txn) => {
        for (let i = 0; i < 4; i++) txn.get(pick());
        for (let i = 0; i < 4; i++) txn.put(pick(), VALUE);
      });
    for (let i = 0; i < 20000; i++) step();
    const profiler = new GCProfiler();
    const used0 = getHeapStatistics().used_heap_size;
    profiler.start();
    let n = 0;
    const end = performance.now() + MS;
    while (performance.now() < end) {
      for (let i = 0; i < 64; i++) step();
      n += 64;
    }
    const stats = profiler.stop();
    const used1 = getHeapStatistics().used_heap_size;
    db.close();
    let bytes = 0;
    let scavenges = 0;
    let pauseUs = 0;
    let after = used0;
    for (const s of stats?.statistics ?? []) {
      bytes += s.beforeGC.heapStatistics.usedHeapSize - after;
      after = s.afterGC.heapStatistics.usedHeapSize;
      if (s.gcType === 'Scavenge') scavenges++;
      pauseUs += s.cost;
    }
    bytes += used1 - after;
    console.log(
      JSON.stringify({
        bytesPerTxn: bytes / n,
        scavengesPer10k: (scavenges * 1e4) / n,
        pauseNsPerTxn: (pauseUs * 1000) / n,
        gcs: stats?.statistics.length ?? 0,
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const self = fileURLToPath(import.meta.url);
const childRoot = process.argv.indexOf('--child');
if (childRoot >= 0) await child(process.argv[childRoot + 1]);
else {
  const roots = arg('roots', packageRoot).split(',');
  const passes = Number(arg('passes', '2'));
  console.log(
    `txn 4r+4w heap allocation, one thread, ${KEYS} keys, '${DURABILITY}', ${MS} ms windows; load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  for (let p = 0; p < passes; p++)
    for (const root of roots) {
      const out = execFileSync(
        process.execPath,
        [self, '--child', root, '--keys', String(KEYS), '--ms', String(MS), '--durability', DURABILITY],
        { encoding: 'utf8' },
      );
      const r = JSON.parse(out.trim().split('\n').pop()!) as {
        bytesPerTxn: number;
        scavengesPer10k: number;
        pauseNsPerTxn: number;
        gcs: number;
      };
      console.log(
        `${path.resolve(root)}: ${r.bytesPerTxn.toFixed(0)} bytes per transaction, ${r.scavengesPer10k.toFixed(2)} scavenges per 10,000, GC pause ${r.pauseNsPerTxn.toFixed(0)} ns per transaction (${r.gcs} collections)`,
      );
    }
}
