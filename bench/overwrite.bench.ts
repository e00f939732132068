/**
 * Steady overwrites, daxstore beside lmdb in one run: K live keys (16-byte random keys,
 * 100-byte values) overwritten at random until OVERWRITE_FACTOR times the daxstore store's
 * size has been written (~ 10x by default), every put durable ('sync' / lmdb putSync). Rows:
 *   dax auto     a store created without a size (it starts small and grows as it needs,
 *                maxSize 4 GiB) with automatic compaction: dead space is reclaimed as the log
 *                grows, nobody calls compact(); its file bytes are what the store took
 *   dax none     the same workload in a store of 2 * OVERWRITE_FACTOR times OVERWRITE_SIZE_MIB
 *                (default 32) with autoCompact: false: no reclamation ever runs (the latency
 *                baseline)
 *   lmdb         lmdb-js, putSync on a default environment
 * Per row: throughput, p50/p99/p999 put latency (hdr-histogram, ns, each put timed),
 * process CPU time per put, and space amplification = file bytes / live payload bytes
 * (keys x (16 + 100)); for daxstore also the log's own live/dead estimate (stats()) and the
 * file against the log's live bytes (each entry with its record header: the bound
 * docs/ARCHITECTURE.md states is on those).
 * The rows run one after the other in this process (order rotates with --order); note the
 * machine's load beside the figures.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/overwrite.bench.js
 *   OVERWRITE_SIZE_MIB=64 OVERWRITE_KEYS=50000 OVERWRITE_FACTOR=10 node dist/bench/overwrite.bench.js
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import * as hdr from 'hdr-histogram-js';
import { open as lmdbOpen } from 'lmdb';
import { open } from '../src/kv/index.js';
import { mulberry32 } from '../src/device/sim-media.js';

const MiB = 2 ** 20;
const SIZE = Number(process.env['OVERWRITE_SIZE_MIB'] ?? 32) * MiB;
const KEYS = Number(process.env['OVERWRITE_KEYS'] ?? 20_000);
const FACTOR = Number(process.env['OVERWRITE_FACTOR'] ?? 10);
const VALUE_BYTES = 100;
/** Bytes a daxstore put appends (record header, entry header, key, value, padding): how many puts make FACTOR x SIZE. */
const RECORD_BYTES = 160;
const PUTS = Math.ceil((FACTOR * SIZE) / RECORD_BYTES);
const PAYLOAD = KEYS * (16 + VALUE_BYTES);

interface Row {
  name: string;
  putsPerSec: number;
  cpuUsPerPut: number;
  p50: number;
  p99: number;
  p999: number;
  amplification: number;
  note: string;
}

function keysOf(n: number): Buffer[] {
  const rand = mulberry32(42);
  return Array.from({ length: n }, () => {
    const k = Buffer.allocUnsafe(16);
    for (let i = 0; i < 16; i += 4) k.writeUInt32LE((rand() * 2 ** 32) >>> 0, i);
    return k;
  });
}

function measure(
  name: string,
  keys: Buffer[],
  put: (k: Buffer, v: Buffer) => void,
): Omit<Row, 'amplification' | 'note'> {
  const value = Buffer.alloc(VALUE_BYTES, 7);
  for (const k of keys) put(k, value); // load
  const rand = mulberry32(7);
  const h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 10_000_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < PUTS; i++) {
    const k = keys[Math.floor(rand() * keys.length)];
    value.writeUInt32LE(i, 0);
    const s = process.hrtime.bigint();
    put(k, value);
    h.recordValue(Number(process.hrtime.bigint() - s));
  }
  const wallNs = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  const row = {
    name,
    putsPerSec: PUTS / (wallNs / 1e9),
    cpuUsPerPut: (cpu.user + cpu.system) / PUTS,
    p50: h.getValueAtPercentile(50),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
  };
  h.destroy();
  return row;
}

function daxRow(dir: string, keys: Buffer[], auto: boolean): Row {
  const file = path.join(dir, auto ? 'dax-auto' : 'dax-none');
  const sizing = auto ? { maxSize: 4096 * MiB } : { size: Math.ceil((2 * FACTOR * SIZE) / (2 * MiB)) * 2 * MiB };
  const db = open(file, {
    ...sizing,
    durability: 'sync',
    autoCompact: auto,
    keyEncoding: 'binary',
    valueEncoding: 'binary',
  });
  try {
    const r = measure(auto ? 'dax auto' : 'dax none', keys, (k, v) => db.put(k, v));
    const s = db.stats();
    // A fixed-size store's file is its size; what its log occupies is its segments (2 MiB each).
    const logBytes = s.segments * 2 * MiB;
    // A growable store's owner table is sized for maxSize and stays a hole where unused: the
    // file's allocated bytes beside its length.
    const allocated = statSync(file).blocks * 512;
    return {
      ...r,
      amplification: (auto ? s.fileBytes : logBytes) / PAYLOAD,
      note: `file ${(s.fileBytes / MiB).toFixed(0)} MiB (${(s.fileBytes / s.liveBytes).toFixed(2)}x log live; allocated ${(allocated / MiB).toFixed(0)} MiB, ${(allocated / PAYLOAD).toFixed(2)}x payload, data area ${((s.fileBytes - db.dax.device.dataOffset) / s.liveBytes).toFixed(2)}x log live), segments ${s.segments} (${((logBytes / PAYLOAD) as number).toFixed(2)}x payload), log live ${(s.liveBytes / MiB).toFixed(1)} MiB dead ${(s.deadBytes / MiB).toFixed(1)} MiB, compactions ${s.compactionRuns} (auto ${s.autoCompactions}), reclaimed ${(s.reclaimedBytes / MiB).toFixed(0)} MiB`,
    };
  } finally {
    db.close();
  }
}

function lmdbRow(dir: string, keys: Buffer[]): Row {
  const p = path.join(dir, 'lmdb');
  const db = lmdbOpen({ path: p, keyEncoding: 'binary', encoding: 'binary' });
  try {
    const r = measure('lmdb', keys, (k, v) => db.putSync(k, v));
    const st = statSync(path.join(p, 'data.mdb'));
    const bytes = st.size;
    return {
      ...r,
      amplification: bytes / PAYLOAD,
      note: `data.mdb ${(bytes / MiB).toFixed(1)} MiB (allocated ${((st.blocks * 512) / MiB).toFixed(1)} MiB)`,
    };
  } finally {
    db.close();
  }
}

function main(): void {
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'overwrite-bench-'));
  const keys = keysOf(KEYS);
  const load = loadavg().map((x) => x.toFixed(2));
  const rows: Row[] = [];
  try {
    rows.push(daxRow(dir, keys, true));
    rows.push(daxRow(dir, keys, false));
    rows.push(lmdbRow(dir, keys));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    `overwrite bench: ${KEYS} keys (payload ${(PAYLOAD / MiB).toFixed(2)} MiB), ${PUTS} durable puts = ${FACTOR}x ${SIZE / MiB} MiB; load before ${load.join(' ')}, after ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  for (const r of rows)
    console.log(
      `${r.name.padEnd(9)} ${Math.round(r.putsPerSec).toString().padStart(8)} puts/s  cpu ${r.cpuUsPerPut.toFixed(2)} us/put  p50 ${(r.p50 / 1000).toFixed(1)} us  p99 ${(r.p99 / 1000).toFixed(1)} us  p99.9 ${(r.p999 / 1000).toFixed(1)} us  space ${r.amplification.toFixed(2)}x  ${r.note}`,
    );
  const [auto, none, lmdb] = rows;
  console.log(
    `dax auto / lmdb: throughput ${(auto.putsPerSec / lmdb.putsPerSec).toFixed(2)}x, cpu per put ${(lmdb.cpuUsPerPut / auto.cpuUsPerPut).toFixed(2)}x; p99 with reclamation / without: ${(auto.p99 / none.p99).toFixed(2)}x`,
  );
}

main();
