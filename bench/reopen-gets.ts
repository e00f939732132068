/**
 * Random gets right after a clean reopen, by how the tree image's arena run was populated: A
 * in 2 MiB pages throughout (DAXSTORE_IMAGE_RUN_HUGE=1), B in 4 KiB pages after its first four
 * 2 MiB pages (DAXSTORE_IMAGE_RUN_SMALL_AFTER_US=0, as when huge pages come dear), collapsed into
 * huge ones on a background thread once recovery ends. One store (bench-store.ts, closed with
 * its checkpoint), opened in fresh node processes, A and B alternating round by round. Each
 * child times `--batches` batches of `--gets` random gets (keys of the store, copied out), one
 * after the other from the moment open() returns: the process's CPU ns per get of each batch
 * (the collapse's thread included), so the first batches show the small pages' TLB misses and
 * the collapse, and the later
 * ones what is left once the run is huge again. Prints the medians per batch and the paired B/A.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/reopen-gets.js [--keys 1000000] [--rounds 6]
 *     [--gets 50000] [--batches 8]
 *
 * The store goes in /dev/shm and is removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './ab-report.js';
import { benchKeys, writeBenchStore } from './bench-store.js';
import { arg } from './args.js';
import * as kv from '../src/kv/index.js';

const cpuNs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};

/** The child: opens `file`, times the batches, prints { ns per get by batch, runFill } as JSON. */
async function child(file: string, keys: number, gets: number, batches: number): Promise<void> {
  const { keys: all, random } = await benchKeys(keys);
  const picks = Array.from({ length: gets * batches }, () => all[Math.floor(random() * keys)]);
  const db = kv.open(file, { durability: 'none', keyEncoding: 'binary', valueEncoding: 'binary' });
  const ns: number[] = [];
  let found = 0;
  for (let b = 0; b < batches; b++) {
    const c0 = cpuNs();
    for (let i = b * gets; i < (b + 1) * gets; i++) if (db.get(picks[i]) !== undefined) found++;
    ns.push((cpuNs() - c0) / gets);
  }
  const fill = db.recovery?.checkpoint?.runFill;
  db.close();
  if (found !== gets * batches) throw new Error(`reopen-gets: ${gets * batches - found} keys not found`);
  process.stdout.write(JSON.stringify({ ns, small: (fill?.smallFromBytes ?? -1) >= 0 }));
}

async function main(): Promise<void> {
  const keys = Number(arg('keys', '1000000'));
  const gets = Number(arg('gets', '50000'));
  const batches = Number(arg('batches', '8'));
  if (process.argv[2] === '--child') return child(process.argv[3], keys, gets, batches);
  const rounds = Number(arg('rounds', '6'));
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'reopen-gets-'));
  const file = path.join(dir, 'store');
  const me = fileURLToPath(import.meta.url);
  const envs = {
    A: { ...process.env, DAXSTORE_IMAGE_RUN_HUGE: '1' },
    B: { ...process.env, DAXSTORE_IMAGE_RUN_SMALL_AFTER_US: '0', DAXSTORE_IMAGE_RUN_HUGE: '' },
  };
  try {
    await writeBenchStore(kv, file, keys, 700);
    const runs: Record<'A' | 'B', Array<{ ns: number[]; small: boolean }>> = { A: [], B: [] };
    const loads: number[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const side of round % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)) {
        const out = execFileSync(
          process.execPath,
          [me, '--child', file, '--keys', String(keys), '--gets', String(gets), '--batches', String(batches)],
          { encoding: 'utf8', env: envs[side] },
        );
        runs[side].push(JSON.parse(out) as { ns: number[]; small: boolean });
      }
      loads.push(loadavg()[0]);
    }
    console.log(
      `reopen-gets, ${keys} keys, ${rounds} rounds alternated, ${batches} batches of ${gets} random gets right after open(); ` +
        `A = image run huge, B = small after its first four 2 MiB pages (gone small in ${runs.B.filter((r) => r.small).length} of ${rounds}, A in ${runs.A.filter((r) => r.small).length}); load average ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}`,
    );
    console.log('batch   A CPU ns/get   B CPU ns/get   paired B/A');
    for (let b = 0; b < batches; b++) {
      const a = median(runs.A.map((r) => r.ns[b]));
      const bb = median(runs.B.map((r) => r.ns[b]));
      const paired = median(runs.A.map((r, i) => runs.B[i].ns[b] / r.ns[b]));
      console.log(
        `${String(b + 1).padStart(5)}${a.toFixed(0).padStart(15)}${bb.toFixed(0).padStart(15)}${paired.toFixed(3).padStart(13)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
