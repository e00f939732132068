/**
 * Persist cost per flush method, beside a plain memcpy (Uint8Array.set) into the same
 * mapping, as ratios. Run after tsc: `node dist/bench/persist.bench.js`.
 *
 * Every task writes its bytes first (so the lines are dirty, as in real use) and runs a
 * batch of BATCH operations per sample so the timer's own cost does not dominate ns-scale
 * operations. persist-only = (write + persist) - write, both measured in this run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bench } from 'tinybench';
import { cpuFlushMethods, openRegion, type MappedMedia } from '../src/device/region.js';
import type { FlushMethod } from '../src/device/media.js';

const TMPFS_MAGIC = 0x01021994;
const REGION_BYTES = 1024 * 1024;
const LINE = 64;
const SIZES = [64, 4096] as const;

interface Target {
  readonly label: string;
  readonly media: MappedMedia;
}

function openTargets(dirs: string[]): Target[] {
  const shm = fs.mkdtempSync('/dev/shm/daxstore-bench-');
  dirs.push(shm);
  const targets: Target[] = cpuFlushMethods().map((method: FlushMethod) => ({
    label: `${method} (tmpfs)`,
    media: openRegion(path.join(shm, method), { create: true, sizeBytes: REGION_BYTES, flushMethod: method }),
  }));
  targets.push({
    label: 'msync (tmpfs)',
    media: openRegion(path.join(shm, 'msync'), { create: true, sizeBytes: REGION_BYTES, flushMethod: 'msync' }),
  });
  if (fs.statfsSync(os.tmpdir()).type !== TMPFS_MAGIC) {
    const disk = fs.mkdtempSync(path.join(os.tmpdir(), 'daxstore-bench-'));
    dirs.push(disk);
    targets.push({
      label: `msync (${os.tmpdir()}, page cache)`,
      media: openRegion(path.join(disk, 'msync'), { create: true, sizeBytes: REGION_BYTES }),
    });
  } else {
    console.log(`${os.tmpdir()} is tmpfs: no page-cache msync figure`);
  }
  return targets;
}

/** Mean ns per operation of `op`, run `batch` times per sample. */
function nsPerOp(bench: Bench, name: string): number {
  const task = bench.getTask(name);
  const result = task?.result;
  if (result === undefined || !('latency' in result)) throw new Error(`bench task ${name} did not complete`);
  return (result.latency.mean * 1e6) / batchOf(name);
}

const batches = new Map<string, number>();
function batchOf(name: string): number {
  return batches.get(name) ?? 1;
}

function addBatched(bench: Bench, name: string, batch: number, op: (i: number) => void): void {
  batches.set(name, batch);
  bench.add(name, () => {
    for (let i = 0; i < batch; i++) op(i);
  });
}

function addPersistTasks(bench: Bench, targets: Target[]): void {
  for (const { label, media } of targets) {
    const bytes = new Uint8Array(media.buffer);
    const slow = label.includes('page cache');
    for (const size of SIZES) {
      const src = new Uint8Array(size).fill(0x5a);
      const slots = REGION_BYTES / 4096;
      const at = (i: number): number => (i % slots) * 4096;
      addBatched(bench, `write ${size} ${label}`, 256, (i) => bytes.set(src, at(i)));
      addBatched(bench, `write+persist ${size} ${label}`, slow ? 8 : 256, (i) => {
        bytes.set(src, at(i));
        media.persist(at(i), size);
      });
    }
  }
}

/** 64 dirty lines: one fence per line, vs 64 flush calls and one fence, vs one ranged flush. */
function addLineTasks(bench: Bench, media: MappedMedia): void {
  const bytes = new Uint8Array(media.buffer);
  const src = new Uint8Array(64 * LINE).fill(0xa5);
  addBatched(bench, 'lines: write 64', 64, () => bytes.set(src, 0));
  addBatched(bench, 'lines: 64 x (flush+drain)', 64, () => {
    bytes.set(src, 0);
    for (let l = 0; l < 64; l++) media.persist(l * LINE, LINE);
  });
  addBatched(bench, 'lines: 64 x flush, 1 drain', 64, () => {
    bytes.set(src, 0);
    for (let l = 0; l < 64; l++) media.flush(l * LINE, LINE);
    media.drain();
  });
  addBatched(bench, 'lines: flush(4 KiB), 1 drain', 64, () => {
    bytes.set(src, 0);
    media.flush(0, 64 * LINE);
    media.drain();
  });
  addBatched(bench, 'drain only (empty-ish native call)', 1024, () => media.drain());
}

function report(bench: Bench, targets: Target[]): void {
  const rows: Record<string, Record<string, string>> = {};
  for (const { label } of targets) {
    for (const size of SIZES) {
      const write = nsPerOp(bench, `write ${size} ${label}`);
      const both = nsPerOp(bench, `write+persist ${size} ${label}`);
      const persist = Math.max(0, both - write);
      rows[`${label}, ${size} B`] = {
        'memcpy ns': write.toFixed(1),
        'memcpy+persist ns': both.toFixed(1),
        'persist ns': persist.toFixed(1),
        'persist / memcpy': (persist / write).toFixed(1),
      };
    }
  }
  console.table(rows);
  const write = nsPerOp(bench, 'lines: write 64');
  const lines: Record<string, Record<string, string>> = {};
  for (const name of ['lines: 64 x (flush+drain)', 'lines: 64 x flush, 1 drain', 'lines: flush(4 KiB), 1 drain']) {
    const perLine = (nsPerOp(bench, name) - write) / 64;
    lines[name] = {
      'ns per line (after memcpy)': perLine.toFixed(1),
      'vs memcpy of 4 KiB': ((perLine * 64) / write).toFixed(1),
    };
  }
  lines['drain only (empty-ish native call)'] = {
    'ns per line (after memcpy)': nsPerOp(bench, 'drain only (empty-ish native call)').toFixed(1),
    'vs memcpy of 4 KiB': '-',
  };
  console.table(lines);
}

async function main(): Promise<void> {
  const dirs: string[] = [];
  const targets = openTargets(dirs);
  try {
    const bench = new Bench({ name: 'persist', time: 300, warmupTime: 50 });
    addPersistTasks(bench, targets);
    addLineTasks(bench, targets[0]!.media);
    await bench.run();
    console.log(`persist cost by flush method (node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'})`);
    report(bench, targets);
  } finally {
    for (const t of targets) t.media.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  }
}

await main();
