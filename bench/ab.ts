/**
 * A/B of one benchmark between two builds of daxstore, in one session: runs
 * `<dir>/dist/bench/<bench>.bench.js` from build A and build B alternately (A B B A A B ...),
 * each in a fresh node process, and reads every row that prints a ratio against its peer
 * ("ratio 2.84x", and "by CPU time 3.10x" where the row has one). Each ratio is already
 * relative to a peer measured in the same process (Map, two CAS, lmdb), and alternating the
 * builds spreads the machine's load over both; what is printed per row is the median over the
 * runs for A and for B, and B / A. Which way is better depends on the row: the index bench's
 * ratios are times against the peer (above 1: B is slower), the kv bench's are throughputs
 * against lmdb (below 1: B is slower).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/ab.js --a /path/to/baseline/checkout --b . --bench index --runs 6
 *   node dist/bench/ab.js --a ../main --b . --bench kv --runs 4 --env KV_BENCH_KEYS=200000
 *
 * Both directories must be built (npm install, or node-gyp rebuild + tsc). The load average is
 * printed before and after: on a shared machine, quote it with the figures.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { loadAverage, printMedians } from './ab-report.js';

interface Options {
  a: string;
  b: string;
  bench: string;
  runs: number;
  env: Record<string, string>;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { a: '', b: '.', bench: 'index', runs: 6, env: {} };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--a':
        o.a = v;
        i++;
        break;
      case '--b':
        o.b = v;
        i++;
        break;
      case '--bench':
        o.bench = v;
        i++;
        break;
      case '--runs':
        o.runs = Number(v);
        i++;
        break;
      case '--env': {
        const [k, ...rest] = v.split('=');
        o.env[k] = rest.join('=');
        i++;
        break;
      }
      default:
        throw new Error(`ab: unknown argument ${argv[i]}`);
    }
  }
  if (o.a === '' || !(o.runs >= 1))
    throw new Error('usage: ab --a <dir> --b <dir> --bench <name> [--runs n] [--env K=V]');
  return o;
}

/** row name (and "(cpu)" for a CPU-time ratio) -> ratio, from one run's output. */
function ratios(output: string): Map<string, number> {
  const out = new Map<string, number>();
  const seen = new Map<string, number>();
  for (const line of output.split('\n')) {
    const m = /^\s*(.*?)\s{2,}.*?ratio ([0-9.]+)x(?:, by CPU time ([0-9.]+)x)?/.exec(line);
    if (m === null) continue;
    let name = m[1].trim();
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    if (n > 1) name = `${name} #${n}`; // the same row printed by tinybench and interleaved
    out.set(name, Number(m[2]));
    if (m[3] !== undefined) out.set(`${name} (cpu)`, Number(m[3]));
  }
  return out;
}

function runOnce(dir: string, o: Options): Map<string, number> {
  const script = path.resolve(dir, 'dist', 'bench', `${o.bench}.bench.js`);
  const output = execFileSync(process.execPath, [script], {
    cwd: path.resolve(dir),
    env: { ...process.env, ...o.env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return ratios(output);
}

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  const before = loadAverage();
  const results: Record<'a' | 'b', Array<Map<string, number>>> = { a: [], b: [] };
  for (let r = 0; r < o.runs; r++) {
    const order: Array<'a' | 'b'> = r % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
    for (const which of order) {
      results[which].push(runOnce(which === 'a' ? o.a : o.b, o));
      process.stderr.write(`run ${r + 1}/${o.runs} ${which} done\n`);
    }
  }
  const after = loadAverage();
  console.log(
    `A/B ${o.bench}.bench: A = ${path.resolve(o.a)}, B = ${path.resolve(o.b)}, ${o.runs} runs each, alternated`,
  );
  console.log(`load average before ${before}, after ${after}`);
  printMedians(results, { nameWidth: 44, valueWidth: 7, unit: 'x' });
}

main();
