/**
 * What a first touch of fresh memory advised into 2 MiB huge pages costs, by what the machine
 * did just before: each round runs, in fresh node processes, (a) a toucher right after another
 * process touched and exited with `--warm` MiB of huge pages (the kernel's free lists then hold
 * recently freed huge pages), and (b) a toucher after `--pause` seconds of this script doing
 * nothing. The toucher maps a SharedArrayBuffer of `--mib` MiB, advises it into huge pages (as an
 * index arena is: src/index/arena.ts) and writes one word per 4 KiB page; it prints the wall and
 * CPU ms of those writes and the huge-page faults the kernel counted meanwhile
 * (/proc/vmstat thp_fault_alloc, system-wide); `--small` leaves the memory in 4 KiB pages (not
 * advised) for comparison. Where the kernel reports free pages to a
 * hypervisor (virtio-balloon free page reporting: /sys/module/page_reporting), a free 2 MiB
 * block left alone for a while is handed back to the host, and the next fault on it waits
 * for the host to back it again; the per-round reported KiB are printed when that counter exists.
 * The open's image run (the clean reopen's arena memory) is such memory.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/fresh-huge-pages.js [--mib 64] [--warm 512] [--pause 4] [--rounds 5] [--small]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { native } from '../src/native/addon.js';
import { arg, flag } from './args.js';

const REPORTED = '/sys/module/page_reporting/parameters/reported_kib';

function vmstat(name: string): number {
  const line = readFileSync('/proc/vmstat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.split(' ')[1]);
}

const reportedKib = (): number => (existsSync(REPORTED) ? Number(readFileSync(REPORTED, 'utf8')) : NaN);

/** A child: touches `mib` MiB of fresh memory (huge-page-advised unless `small`), prints {wallMs, cpuMs, thp}. */
function touch(mib: number, quiet: boolean, small: boolean): void {
  const sab = new SharedArrayBuffer(mib * 2 ** 20);
  if (!small) native().adviseHugePages(sab);
  const i32 = new Int32Array(sab);
  const thp0 = vmstat('thp_fault_alloc');
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let w = 0; w < i32.length; w += 1024) i32[w] = 1;
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  if (!quiet)
    process.stdout.write(
      JSON.stringify({ wallMs, cpuMs: (c.user + c.system) / 1000, thp: vmstat('thp_fault_alloc') - thp0 }),
    );
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main(): void {
  const mib = Number(arg('mib', '64'));
  const warm = Number(arg('warm', '512'));
  const pause = Number(arg('pause', '4'));
  const rounds = Number(arg('rounds', '5'));
  const small = flag('small');
  const me = fileURLToPath(import.meta.url);
  const child = (n: number, quiet: boolean): string =>
    execFileSync(process.execPath, [me, '--child', String(n), quiet ? 'quiet' : 'print', small ? 'small' : 'huge'], {
      encoding: 'utf8',
    });
  type Run = { wallMs: number; cpuMs: number; thp: number; reportedKib: number };
  const runs: Record<'afterFree' | 'afterPause', Run[]> = { afterFree: [], afterPause: [] };
  for (let r = 0; r < rounds; r++) {
    const k0 = reportedKib();
    child(warm, true);
    runs.afterFree.push({ ...(JSON.parse(child(mib, false)) as Run), reportedKib: reportedKib() - k0 });
    const k1 = reportedKib();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pause * 1000);
    runs.afterPause.push({ ...(JSON.parse(child(mib, false)) as Run), reportedKib: reportedKib() - k1 });
  }
  console.log(
    `fresh-huge-pages: ${mib} MiB touched in ${small ? '4 KiB' : 'huge'} pages, ${rounds} rounds; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}; free page reporting ${existsSync(REPORTED) ? 'present' : 'absent'}`,
  );
  for (const [name, rs] of Object.entries(runs)) {
    const m = (f: keyof Run): string => median(rs.map((x) => x[f])).toFixed(1);
    console.log(
      `${name.padEnd(11)} wall ${m('wallMs')} ms, CPU ${m('cpuMs')} ms (${(median(rs.map((x) => x.cpuMs)) / mib).toFixed(3)} ms/MiB), ` +
        `huge-page faults ${m('thp')}, KiB reported to the host meanwhile ${m('reportedKib')}; CPU per round ${rs.map((x) => x.cpuMs.toFixed(0)).join(' ')}`,
    );
  }
}

if (process.argv[2] === '--child')
  touch(Number(process.argv[3]), process.argv[4] === 'quiet', process.argv[5] === 'small');
else main();
