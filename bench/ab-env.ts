/**
 * A/B of one environment knob on the key-value store's write path: each round runs the same
 * workload in two fresh node processes, one with the knob set to 1 and one without (order
 * alternating), and prints the paired ratios (with / without) of wall rate and CPU rate; the
 * medians over the rounds are the figure. The knobs (docs/TESTING.md "A/B knobs"):
 *
 *   DAXSTORE_NO_PREFAULT    new log segments are not prefaulted on a background thread
 *   DAXSTORE_NO_MEMBARRIER  every epoch pin is a sequentially consistent store
 *   DAXSTORE_NO_HUGEPAGES   no transparent-huge-page advice for the index arena
 *   DAXSTORE_NO_COLLAPSE    new log segments on tmpfs are not collapsed into huge pages
 *
 * Workload: KEYS new 16-byte keys put with 100-byte values and durability 'sync' into a fresh
 * store on /dev/shm (the write path a knob changes), then KEYS random gets; each timed alone.
 * CPU time is the child's whole process (background threads included), from process.cpuUsage.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/ab-env.js DAXSTORE_NO_PREFAULT [rounds=10] [keys=200000]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median } from './ab-report.js';
import { fileURLToPath } from 'node:url';
import { open } from '../src/api/daxstore.js';

const KNOBS = ['DAXSTORE_NO_PREFAULT', 'DAXSTORE_NO_MEMBARRIER', 'DAXSTORE_NO_HUGEPAGES', 'DAXSTORE_NO_COLLAPSE'];

interface Run {
  putWallNs: number;
  putCpuUs: number;
  getWallNs: number;
  getCpuUs: number;
  keys: number;
}

function child(keys: number): void {
  const dir = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const file = path.join(dir, `daxstore-ab-env-${process.pid}.store`);
  const keyBytes = randomBytes(16 * keys);
  const value = randomBytes(100);
  const db = open(file, {
    size: Math.max(64 * 2 ** 20, Math.ceil((keys * 400) / 2 ** 21) * 2 ** 21),
    durability: 'sync',
    keyEncoding: 'binary',
    valueEncoding: 'binary',
  });
  try {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < keys; i++) db.put(keyBytes.subarray(16 * i, 16 * i + 16), value);
    const t1 = process.hrtime.bigint();
    const cpu1 = process.cpuUsage(cpu0);
    let found = 0;
    const cpu2 = process.cpuUsage();
    const t2 = process.hrtime.bigint();
    for (let i = 0; i < keys; i++) {
      const k = ((i * 7919) % keys) * 16;
      if (db.get(keyBytes.subarray(k, k + 16)) !== undefined) found++;
    }
    const t3 = process.hrtime.bigint();
    const cpu3 = process.cpuUsage(cpu2);
    if (found !== keys) throw new Error(`ab-env: ${found} of ${keys} keys found`);
    const run: Run = {
      putWallNs: Number(t1 - t0),
      putCpuUs: cpu1.user + cpu1.system,
      getWallNs: Number(t3 - t2),
      getCpuUs: cpu3.user + cpu3.system,
      keys,
    };
    process.stdout.write(JSON.stringify(run));
  } finally {
    db.close();
    fs.rmSync(file, { force: true });
  }
}

function runChild(keys: number, env: NodeJS.ProcessEnv): Run {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', String(keys)], {
    env,
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (r.status !== 0) throw new Error(`ab-env child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Run;
}

function main(): void {
  if (process.argv[2] === '--child') return child(Number(process.argv[3]));
  const knob = process.argv[2] ?? '';
  if (!KNOBS.includes(knob)) throw new Error(`usage: node dist/bench/ab-env.js <${KNOBS.join('|')}> [rounds] [keys]`);
  const rounds = Number(process.argv[3] ?? 10);
  const keys = Number(process.argv[4] ?? 200_000);
  const off: NodeJS.ProcessEnv = { ...process.env };
  delete off[knob];
  const on: NodeJS.ProcessEnv = { ...process.env, [knob]: '1' };
  console.log(`${knob}=1 vs unset: ${rounds} rounds of ${keys} new-key 'sync' puts and ${keys} gets`);
  console.log(`node ${process.version}, ${os.cpus().length} cpus, load ${os.loadavg().map((l) => l.toFixed(1))}`);
  const ratios = { putWall: [] as number[], putCpu: [] as number[], getWall: [] as number[], getCpu: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    const [a, b] = r % 2 === 0 ? [runChild(keys, on), runChild(keys, off)] : [runChild(keys, off), runChild(keys, on)];
    const withKnob = r % 2 === 0 ? a : b;
    const without = r % 2 === 0 ? b : a;
    // rate ratio (with / without) = time without / time with
    ratios.putWall.push(without.putWallNs / withKnob.putWallNs);
    ratios.putCpu.push(without.putCpuUs / withKnob.putCpuUs);
    ratios.getWall.push(without.getWallNs / withKnob.getWallNs);
    ratios.getCpu.push(without.getCpuUs / withKnob.getCpuUs);
    const rate = (run: Run) => Math.round((run.keys / run.putWallNs) * 1e9);
    console.log(
      `round ${r + 1}: puts/s ${rate(withKnob)} with, ${rate(without)} without; put wall ratio ${ratios.putWall[r].toFixed(3)}, cpu ${ratios.putCpu[r].toFixed(3)}`,
    );
  }
  const fmt = (xs: number[]) =>
    `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
  console.log(`rate with ${knob}=1 / without, median (range) over ${rounds} rounds:`);
  console.log(`  puts: wall ${fmt(ratios.putWall)}, cpu ${fmt(ratios.putCpu)}`);
  console.log(`  gets: wall ${fmt(ratios.getWall)}, cpu ${fmt(ratios.getCpu)}`);
  console.log(`load ${os.loadavg().map((l) => l.toFixed(1))}`);
}

main();
