/**
 * Encoded keys and values vs lmdb-js with its own defaults, in one run, in the same tmpfs
 * directory: daxstore opened with its defaults (keyEncoding 'ordered', valueEncoding
 * 'msgpack') beside lmdb-js opened with its defaults (ordered-binary keys, msgpackr values
 * with record structures shared through the database). Keys are compound ['user', n]
 * (n < KV_MSGPACK_KEYS, default 200,000); values are JS objects of about 100 bytes once
 * packed (seven fields: numbers, strings, a boolean, an array). Rows: overwrite puts ('none'
 * vs noSync, 'sync' vs lmdb's durable putSync), random gets (decoded objects), and range
 * scans of 1,000 entries (decoded keys and values). Each row is a daxstore/lmdb throughput
 * ratio by wall time and by this process's CPU time (lmdb's threads included).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/kv-msgpack.bench.js
 */
import { Bench } from 'tinybench';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { Packr, Unpackr, pack } from 'msgpackr';
import { open as lmdbOpen } from 'lmdb';
import { open } from '../src/api/daxstore.js';
import { CpuTimer } from './cpu-timed.js';
import { type User, VALUES, fillDax, fillLmdb, storeBytes, userValues } from './msgpack-users.js';

const KEYS = Number(process.env['KV_MSGPACK_KEYS'] ?? 200_000);
const PER_SAMPLE = 1000;
const SCAN = 1000;
const cpu = new CpuTimer();
const cpuTimed = cpu.timed.bind(cpu);

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-msgpack-bench-'));
  try {
    const values = userValues();
    const packedBytes = values.reduce((s, v) => s + pack(v).length, 0) / VALUES;
    const size = storeBytes(KEYS);
    const dax = open(path.join(dir, 'dax-none'), { size, durability: 'none' });
    const daxSync = open(path.join(dir, 'dax-sync'), { size, durability: 'sync' });
    const lm = lmdbOpen<User, [string, number]>({ path: path.join(dir, 'lmdb-nosync'), noSync: true });
    const lmSync = lmdbOpen<User, [string, number]>({ path: path.join(dir, 'lmdb-sync') });

    let t = performance.now();
    fillDax(dax, KEYS, values);
    const loadDax = performance.now() - t;
    t = performance.now();
    await fillLmdb(lm, KEYS, values);
    const loadLmdb = performance.now() - t;
    fillDax(daxSync, KEYS, values);
    await fillLmdb(lmSync, KEYS, values);

    // Keys in a fixed pseudo-random order (stride 7919): each op builds its compound key, both sides alike.
    let c = 0;
    const nextId = (): number => (c = (c + 7919) % KEYS);
    const scanFrom = (): number => nextId() % Math.max(1, KEYS - SCAN);
    let sink = 0;
    const bench = new Bench({ time: 600, warmup: true });
    const add = (name: string, fn: () => void): void => void bench.add(name, cpuTimed(name, fn));
    add('dax put none', () => {
      for (let i = 0; i < PER_SAMPLE; i++) {
        const n = nextId();
        dax.put(['user', n], values[n % VALUES]);
      }
    });
    add('lmdb putSync noSync', () => {
      for (let i = 0; i < PER_SAMPLE; i++) {
        const n = nextId();
        lm.putSync(['user', n], values[n % VALUES]);
      }
    });
    add('dax put sync', () => {
      for (let i = 0; i < PER_SAMPLE; i++) {
        const n = nextId();
        daxSync.put(['user', n], values[n % VALUES]);
      }
    });
    add('lmdb putSync durable', () => {
      for (let i = 0; i < PER_SAMPLE; i++) {
        const n = nextId();
        lmSync.putSync(['user', n], values[n % VALUES]);
      }
    });
    add('dax get', () => {
      for (let i = 0; i < PER_SAMPLE; i++) sink += (dax.get(['user', nextId()]) as User).age;
    });
    add('lmdb get', () => {
      for (let i = 0; i < PER_SAMPLE; i++) sink += lm.get(['user', nextId()])!.age;
    });
    add('dax range', () => {
      for (const [k, v] of dax.range({ gte: ['user', scanFrom()], limit: SCAN }))
        sink += (v as User).age + ((k as [string, number])[1] & 1);
    });
    add('lmdb getRange', () => {
      for (const { key, value } of lm.getRange({ start: ['user', scanFrom()], limit: SCAN }))
        sink += value.age + (key[1] & 1);
    });
    // The decoding alone, both ways msgpackr can store these values: self-contained (each value
    // carries its record definition) and against structures shared out of band (both daxstore
    // and lmdb-js keep them in the store). A copy first, as daxstore decodes from one.
    const selfContained = Buffer.from(new Packr({ moreTypes: true }).pack(values[1]));
    const structures: object[] = [];
    const sharedPackr = new Packr({ structures, moreTypes: true });
    const shared = Buffer.from(sharedPackr.pack(values[1]));
    const ownUnpackr = new Unpackr({ moreTypes: true, copyBuffers: true });
    const sharedUnpackr = new Unpackr({ structures, moreTypes: true, copyBuffers: true });
    const copy = Buffer.allocUnsafeSlow(1024);
    add('unpack self-contained', () => {
      for (let i = 0; i < PER_SAMPLE; i++) {
        selfContained.copy(copy);
        sink += (ownUnpackr.unpack(copy, { start: 0, end: selfContained.length }) as User).age;
      }
    });
    add('unpack shared structures', () => {
      for (let i = 0; i < PER_SAMPLE; i++) {
        shared.copy(copy);
        sink += (sharedUnpackr.unpack(copy, { start: 0, end: shared.length }) as User).age;
      }
    });
    await bench.run();

    const wallRate = (name: string, perSample: number): number => {
      const r = bench.getTask(name)?.result;
      if (r === undefined || !('latency' in r)) throw new Error(`bench task ${name} did not complete`);
      return (perSample * 1000) / r.latency.mean;
    };
    const row = (label: string, a: string, b: string, perSample: number, target: string): string => {
      const x = wallRate(a, perSample);
      const y = wallRate(b, perSample);
      const byCpu = cpu.opsPerCpuSec(a, perSample) / cpu.opsPerCpuSec(b, perSample);
      return `${label.padEnd(28)} daxstore ${(x / 1e3).toFixed(0).padStart(6)}k/s   lmdb ${(y / 1e3).toFixed(0).padStart(6)}k/s   ratio ${(x / y).toFixed(2)}x, by CPU time ${byCpu.toFixed(2)}x (target ${target})`;
    };
    console.log(
      `ordered keys ['user', n] and msgpack objects (${packedBytes.toFixed(0)} B packed self-contained; both stores keep their shapes as shared structures) vs lmdb-js ${lmdbVersion()} defaults (ordered-binary keys, msgpackr with shared structures): ${KEYS} keys, tmpfs ${dir}, node ${process.version}; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} (2 cores: ratios are noisy above ~1)`,
    );
    console.log(
      `load ${KEYS} keys: daxstore ${loadDax.toFixed(0)} ms (batches of 1000, 'none'), lmdb ${loadLmdb.toFixed(0)} ms (one transaction)`,
    );
    console.log(row('put (none / noSync)', 'dax put none', 'lmdb putSync noSync', PER_SAMPLE, '>= 3x'));
    console.log(row('durable put (sync)', 'dax put sync', 'lmdb putSync durable', PER_SAMPLE, '>= 3x'));
    console.log(row('random get (decoded)', 'dax get', 'lmdb get', PER_SAMPLE, '>= 3x'));
    console.log(row(`range ${SCAN} (keys and values)`, 'dax range', 'lmdb getRange', SCAN, '>= 2x'));
    const nsPer = (name: string): string => (1e9 / cpu.opsPerCpuSec(name, PER_SAMPLE)).toFixed(0);
    console.log(
      `msgpackr decode alone (CPU ns per value): self-contained ${nsPer('unpack self-contained')} (${selfContained.length} B), with shared structures ${nsPer('unpack shared structures')} (${shared.length} B, as daxstore and lmdb-js store it)`,
    );
    if (sink === -1) console.log(sink);
    dax.close();
    daxSync.close();
    await lm.close();
    await lmSync.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The lmdb package's version (its exports map does not expose package.json): from this package's node_modules. */
function lmdbVersion(): string {
  const file = new URL('../../node_modules/lmdb/package.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

await main();
