/**
 * The main job (npm start): a short benchmark on an emulated-pmem file in /dev/shm (or the
 * OS temp dir), a short crash-injection pass on the simulated device, then one summary
 * table. Under a minute on a 2-core machine.
 */
import { bench, renderBench } from './bench.js';
import { crashRun, renderCrash } from './crash.js';
import { table } from './output.js';

async function mainJob(): Promise<number> {
  const seed = Date.now() >>> 0;
  process.stdout.write('daxstore main job: short YCSB bench beside lmdb, then crash injection\n\n');
  let compare: 'lmdb' | undefined = 'lmdb';
  try {
    await import('lmdb');
  } catch {
    compare = undefined;
    process.stdout.write('(lmdb is not installed: benchmarking daxstore alone)\n');
  }
  const b = await bench({
    size: 128 * 2 ** 20,
    workload: 'a,b,c',
    threads: [1, 2],
    valueSize: 100,
    keys: 10_000,
    duration: 700,
    distribution: 'zipfian',
    compare,
    seed,
    progress: true,
  });
  process.stdout.write(`${renderBench(b)}\n\n`);
  const c = crashRun({ workload: 'kv-mixed', ops: 24, images: 16, progress: false }, seed);
  process.stdout.write(`${renderCrash(c)}\n\n`);
  const rows: (string | number)[][] = [['summary', 'value']];
  rows.push(['device', b.device.note], ['persist', b.device.flushMethod]);
  for (const r of b.rows.filter((x) => x.store === 'daxstore'))
    rows.push([`ycsb ${r.workload} x${r.threads} ops/s`, r.opsPerSec]);
  for (const r of b.ratios) rows.push([`ycsb ${r.workload} x${r.threads} vs lmdb`, `${r.throughputRatio}x`]);
  rows.push(
    ['crash points', c.crashPoints],
    ['crash images checked', c.imagesChecked],
    ['crash violations', c.violations.length],
  );
  process.stdout.write(`${table(rows)}\n`);
  return c.violations.length === 0 ? 0 : 1;
}

process.exitCode = await mainJob();
