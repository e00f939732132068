/**
 * daxstore crash: a seeded key-value workload on the simulated device, crashed at every
 * fence and every operation boundary. At each crash point the candidates are the 8-byte
 * words not yet durable; the images are every subset when there are at most 10, otherwise
 * none, all, each single word, pairs, forward and reverse prefixes and seeded random
 * subsets (at most --images per point), deduplicated by hash. Each image is recovered and
 * checked:
 *   structure     recovery succeeds and the allocator agrees with the owner table (audit)
 *   data          the recovered contents are the model before or after the operation in
 *                 flight (every acknowledged operation present, the interrupted one all or nothing)
 *   continuation  a seeded delete and a few small puts after recovery (a put may get ENOSPC in
 *                 a full store), then a clean reopen, match the model (every 4th image, for time)
 * A violation saves the image (+ the allowed states) and prints a one-line replay command;
 * --stop-at-first ends the run there (the self-test and the planted-bug tests need one).
 * Images wait for their check until the operation ends (checking inside a fence hook would
 * reuse this thread's per-thread kv state mid-operation), kept as word diffs against the
 * image at the operation's start, not as whole images (those took gigabytes).
 * --self-test re-runs in child processes with each crash-relevant DAXSTORE_TEST_BREAK switch
 * and must see a violation for every one.
 * Recovery is crashed too: on the images that get the continuation check, one seeded fence of
 * the recovery is taken as a crash point, and that image must recover to an allowed state.
 * Owner-table checks read each image's owner records against the live ones (see
 * staleIndexProblem / boundaryOwnerProblem): recovery repairs much of what a broken allocate
 * or free leaves, so those bugs rarely show in the recovered data alone.
 * kv-mixed, kv-batch and kv-txn take an index checkpoint while running every 13 ops
 * (checkpoint(), and every other time a background one: started, then one step before each
 * of the next ops, as the event loop runs them between the thread's writes; crash points inside
 * its writing) and reopens every 13 (close writes one): the
 * images of the ops after either are recovered through it, replaying the log written since,
 * and the recovery crash point above falls inside that replay.
 * Workloads: kv-mixed, kv-batch, kv-txn (transactions, some aborted), kv-compact (segment and
 * block churn), kv-full (a store filled
 * until puts get ENOSPC, then deletes, fills and compactions in it: crash points inside the
 * reclaims and the priority writer's compactions of a store with no free extent), kv-grow (a
 * store that grows from 8 MiB to its maxSize, then fills: crash points inside the growth, in a
 * recovery that grows into a longer file, and in the full store). Images keep their media's
 * size (a growable one's buffers hold its maxSize), in the queue and in saved images' .json.
 * Not covered: multi-threaded workloads (one thread writes); the concurrency switches (R1-R6);
 * thread deaths (kv-thread-death, kv-space-death).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import cliProgress from 'cli-progress';
import { DaxError } from '../errors.js';
import { xxh64 } from '../device/checksum.js';
import { Device } from '../device/device.js';
import { createSimMedia, mulberry32, type SimMedia } from '../device/sim-media.js';
import { diffWords } from '../native/diff-words.js';
import { openMedia, type KvStore } from '../kv/index.js';
import { EXIT_OK, EXIT_PROBLEMS, emit, table } from './output.js';
import { breakEnv, testHooks, type SwitchName } from '../test-break.js';

/**
 * kv-compact needs room for 3 segments (2 MiB extents) beside fragmenting 4 KiB large-value
 * blocks; kv-full fills three extents (two of log, the reserve) until puts get ENOSPC.
 */
const MEDIA_BYTES = {
  'kv-mixed': 10 * 2 ** 20,
  'kv-batch': 10 * 2 ** 20,
  'kv-txn': 10 * 2 ** 20,
  'kv-compact': 14 * 2 ** 20,
  'kv-full': 8 * 2 ** 20,
  'kv-grow': 8 * 2 ** 20,
} as const;
/** kv-grow's media grows (Device.grow) from 8 MiB to at most this: one growth step (the least is 16 MiB), then it is full. */
const GROW_MAX_BYTES = 24 * 2 ** 20;
const ALL_SUBSETS_MAX_WORDS = 10;
/** with at most 6 pending words, all 64 subsets are checked whatever --images says */
const ALL_SUBSETS_MIN_IMAGES = 64;
/** continuation (writes + reopen) costs two more image copies: every 4th image */
const CONTINUATION_EVERY = 4;

export interface CrashOptions {
  workload: 'kv-mixed' | 'kv-batch' | 'kv-txn' | 'kv-compact' | 'kv-full' | 'kv-grow';
  ops: number;
  images: number;
  seed?: number;
  out?: string;
  selfTest?: boolean;
  replay?: string;
  progress: boolean;
  /** crash once inside the recovery of every CONTINUATION_EVERY-th image (default on) */
  recoveryCrash?: boolean;
  /** stop checking at the first violation (the self-test and the planted-bug tests only need one) */
  stopAtFirst?: boolean;
  json?: boolean;
}

export interface Violation {
  kind: 'structure' | 'data' | 'continuation';
  crashPoint: number;
  detail: string;
  image?: string;
  replay?: string;
}

export interface CrashReport {
  workload: string;
  seed: number;
  ops: number;
  crashPoints: number;
  fencePoints: number;
  fenceCallSitesHit: number;
  /** kv-full, kv-grow: operations that added data and were refused with ENOSPC (the store was full) */
  opsRefused: number;
  /** kv-grow: growths of the store, and crash points inside them (from the growth's start to its superblock update) */
  growths: number;
  growthPoints: number;
  imagesGenerated: number;
  imagesUnique: number;
  imagesChecked: number;
  violations: Violation[];
  violationsByKind: Record<string, number>;
  elapsedMs: number;
}

type Listing = string;

function listing(kv: KvStore): Listing {
  const out: string[] = [];
  for (const [k, v] of kv.range()) out.push(`${Buffer.from(k).toString('hex')}=${xxHex(v)}`);
  return out.join(',');
}

function xxHex(v: Uint8Array): string {
  return v.length <= 8 ? Buffer.from(v).toString('hex') : `${v.length}:${xxh64(v).toString(16)}`;
}

/** Word subsets to keep at one crash point. */
export function selections(pending: Uint32Array, max: number, random: () => number): number[][] {
  const n = pending.length;
  const words = Array.from(pending);
  // every subset of a few words even past max: a two-copy update tears both copies only in a
  // subset that splits each copy's few words, which the sampled shapes below can miss
  if (n <= ALL_SUBSETS_MAX_WORDS && 2 ** n <= Math.max(max, ALL_SUBSETS_MIN_IMAGES)) {
    return Array.from({ length: 2 ** n }, (_, mask) => words.filter((_, i) => (mask >> i) & 1));
  }
  const out: number[][] = [[], words];
  for (let i = 0; i < n && out.length < max / 2; i++) out.push([words[i]]);
  for (let i = 0; i < n && out.length < (max * 5) / 8; i++)
    for (let j = i + 1; j < n && out.length < (max * 5) / 8; j += Math.max(1, Math.floor(n / 4)))
      out.push([words[i], words[j]]);
  for (let k = 1; k < n && out.length < (max * 3) / 4; k = k * 2) out.push(words.slice(0, k), words.slice(n - k));
  while (out.length < max) out.push(words.filter(() => random() < 0.5));
  return out;
}

interface Pending {
  diff: ImageDiff;
  point: number;
  allowed: Listing[];
}

/**
 * A queued crash image, kept as the 8-byte words where it differs from the snapshot taken when
 * the operation started (images wait in the queue until the operation ends: whole images of a
 * compaction's dozens of fences took gigabytes).
 */
interface ImageDiff {
  base: Uint8Array;
  words: Uint32Array;
  values: BigUint64Array;
  /** the image's size (a media that grows: its buffers hold maxSize, base.length) */
  size: number;
  growable: boolean;
}

const diffOut = new Uint32Array(1 << 16);

function diffAgainst(base: Uint8Array, image: SimMedia): ImageDiff {
  const bytes = new Uint8Array(image.buffer);
  const parts: Uint32Array[] = [];
  for (let start = 0; ;) {
    const n = diffWords(bytes, base, diffOut, start);
    parts.push(diffOut.slice(0, n));
    if (n < diffOut.length) break;
    start = diffOut[n - 1] + 1;
  }
  const words = new Uint32Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    words.set(p, at);
    at += p.length;
  }
  const u64 = new BigUint64Array(image.buffer);
  return {
    base,
    words,
    values: BigUint64Array.from(words, (w) => u64[w]),
    size: image.size,
    growable: image.grow !== undefined,
  };
}

/** The image again, durable as a whole. */
function materialize(d: ImageDiff, name: string): SimMedia {
  const staged = createSimMedia(d.size, { name, maxSize: d.growable ? d.base.length : undefined });
  new Uint8Array(staged.buffer).set(d.base);
  const u64 = new BigUint64Array(staged.buffer);
  for (let i = 0; i < d.words.length; i++) u64[d.words[i]] = d.values[i];
  const image = staged.crashImage({ mode: 'all' });
  staged.dispose();
  return image;
}

export function crashRun(o: CrashOptions, seed: number, onProgress?: (done: number) => void): CrashReport {
  const start = performance.now();
  const rand = mulberry32(seed);
  let media = createSimMedia(MEDIA_BYTES[o.workload], {
    name: `crash-${o.workload}-${seed}`,
    maxSize: o.workload === 'kv-grow' ? GROW_MAX_BYTES : undefined,
  });
  let kv = openMedia(media, { durability: 'sync', checkpoint: true, keyEncoding: 'binary', valueEncoding: 'binary' });
  const model = new Map<string, Uint8Array>();
  const snapshot = (): Listing =>
    [...model.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${xxHex(v)}`)
      .join(',');
  const report: CrashReport = {
    workload: o.workload,
    seed,
    ops: o.ops,
    crashPoints: 0,
    fencePoints: 0,
    fenceCallSitesHit: 0,
    opsRefused: 0,
    growths: 0,
    growthPoints: 0,
    imagesGenerated: 0,
    imagesUnique: 0,
    imagesChecked: 0,
    violations: [],
    violationsByKind: {},
    elapsedMs: 0,
  };
  const seen = new Set<bigint>();
  const sites = new Set<string>();
  const queue: Pending[] = [];
  /** the working image when the current operation started: queued images are kept as diffs to it */
  const base = new Uint8Array(media.maxSize);
  let allowed: Listing[] = [snapshot()];
  const ownerViolation = (point: number, detail: string | undefined): void => {
    if (detail !== undefined) report.violations.push({ kind: 'structure', crashPoint: point, detail });
  };
  let live: OwnerRecords = new Map();
  const crashHere = (atBoundary = false): void => {
    const point = report.crashPoints++;
    // kv.close() fences after the device closed: the records cannot change from there on
    if (!kv.closed) live = ownerRecords(kv.dax.device);
    if (atBoundary) ownerViolation(point, boundaryOwnerProblem(media, live));
    if (inGrowth) report.growthPoints++;
    for (const words of selections(media.pendingWords(), o.images, rand)) {
      const image = media.crashImage({ words });
      report.imagesGenerated++;
      // the size too: a growth's first crash point differs from the one before only in it
      const h = xxh64(new Uint8Array(image.buffer)) ^ BigInt(image.size);
      if (seen.has(h)) {
        image.dispose();
        continue;
      }
      seen.add(h);
      report.imagesUnique++;
      ownerViolation(point, staleIndexProblem(image, live));
      queue.push({ diff: diffAgainst(base, image), point, allowed: [...allowed] });
      image.dispose();
    }
  };
  const hook = (): void => {
    report.fencePoints++;
    sites.add(fenceSite(new Error().stack ?? ''));
    crashHere();
  };
  let unhook = media.onFence(hook);
  // Crash points between a growth's start and its superblock update (the device's test hook).
  let inGrowth = false;
  const previousGrowStep = testHooks.growStep;
  testHooks.growStep = (step: string, grown: object): void => {
    if (grown !== media) return; // an image's recovery growing it, not the workload
    if (step === 'start') {
      inGrowth = true;
      report.growths++;
    } else if (step === 'superblock-written') inGrowth = false;
  };
  try {
    for (let i = 0; i < o.ops; i++) {
      base.set(new Uint8Array(media.buffer)); // the queue is empty here: no diff refers to the old base
      const before = snapshot();
      const apply = planOp(o.workload, i, rand, model);
      allowed = [before, applyToModel(model, apply, true)];
      if (apply.type === 'reopen') {
        // close (crash points inside its superblock update), then open the state it left
        kv.close();
        unhook();
        const next = media.crashImage({ mode: 'all' });
        media.dispose();
        media = next;
        unhook = media.onFence(hook);
        kv = openMedia(media, {
          formatIfEmpty: false,
          durability: 'sync',
          checkpoint: true,
          keyEncoding: 'binary',
          valueEncoding: 'binary',
        });
      } else if (!runOp(kv, apply, o.workload === 'kv-full' || o.workload === 'kv-grow')) {
        // kv-full, kv-grow: a fill the full store refused (ENOSPC after its reclaim: nothing written)
        report.opsRefused++;
        allowed = [before];
        crashHere(true);
        drain(queue, report, o, seed);
        onProgress?.(i + 1);
        if (o.stopAtFirst === true && report.violations.length > 0) break;
        continue;
      }
      applyToModel(model, apply, false);
      allowed = [snapshot()];
      crashHere(true); // operation boundary: everything acknowledged must be there
      drain(queue, report, o, seed);
      onProgress?.(i + 1);
      if (o.stopAtFirst === true && report.violations.length > 0) break;
    }
  } finally {
    testHooks.growStep = previousGrowStep;
    unhook();
    kv.close();
    media.dispose();
  }
  report.fenceCallSitesHit = sites.size;
  for (const v of report.violations) report.violationsByKind[v.kind] = (report.violationsByKind[v.kind] ?? 0) + 1;
  report.elapsedMs = Math.round(performance.now() - start);
  return report;
}

/**
 * Owner records (block -> "owner:index") of a device. The owner table is the allocator's
 * truth at recovery, and recovery repairs much of what a broken allocate or free leaves
 * behind (it frees staging and dead owners' blocks), so a bug there rarely shows in the
 * recovered data: these checks read the records of the crash image itself.
 */
type OwnerRecords = Map<number, string>;

function ownerRecords(device: Device): OwnerRecords {
  const out: OwnerRecords = new Map();
  device.forEachOwned((block, owner, index) => out.set(block, `${owner}:${index}`));
  return out;
}

/** undefined when the image does not open (the recovery check reports that image itself). */
function imageOwnerRecords(image: SimMedia): OwnerRecords | undefined {
  const copy = image.crashImage({ mode: 'none' }); // on a copy: open writes the superblock
  let device: Device;
  try {
    device = Device.open(copy);
  } catch (e) {
    copy.dispose();
    if (e instanceof DaxError) return undefined;
    throw e;
  }
  try {
    return ownerRecords(device);
  } finally {
    device.close();
    copy.dispose(); // back to the pool: a fresh 3x-size buffer per image would make RSS grow with every image
  }
}

/**
 * allocate and free are durable when they return: at an operation boundary the durable
 * owner table equals the live one (a free that stored FREE without persisting it shows here).
 */
function boundaryOwnerProblem(media: SimMedia, live: OwnerRecords): string | undefined {
  const durable = imageOwnerRecords(media);
  if (durable === undefined) return 'the durable image does not open after the operation returned';
  for (const [block, rec] of live)
    if (durable.get(block) !== rec)
      return `owner record of block ${block} not durable after the operation returned: live ${rec}, durable ${durable.get(block) ?? 'free'}`;
  for (const [block, rec] of durable)
    if (!live.has(block))
      return `block ${block} freed but its owner record is still durable as ${rec} after the operation returned`;
  return undefined;
}

/**
 * A durable word0 implies a durable word1: an image whose record names the live owner must
 * carry the live index too (word1 is rewritten only while word0 is durably FREE). An
 * allocation that publishes word0 before word1 is durable, or a block reused before its
 * free was durable, leaves the live owner with a stale index.
 */
function staleIndexProblem(image: SimMedia, live: OwnerRecords): string | undefined {
  for (const [block, rec] of imageOwnerRecords(image) ?? []) {
    const now = live.get(block);
    if (now !== undefined && now !== rec && now.split(':')[0] === rec.split(':')[0])
      return `owner record of block ${block}: word0 durable with a stale index (image ${rec}, live ${now})`;
  }
  return undefined;
}

/** The first stack frame outside the media and store internals' drain/persist helpers. */
function fenceSite(stack: string): string {
  const frames = stack
    .split('\n')
    .slice(1)
    .map((l) => l.trim());
  const at = frames.findIndex((f) => !/sim-media|crash\.js|persist \(|drain \(/.test(f));
  return (frames[at] ?? '?').replace(/:\d+\)?$/, '');
}

type PlannedOp =
  | { type: 'put'; key: string; value: Uint8Array }
  | { type: 'del'; key: string }
  | { type: 'batch'; ops: Array<{ key: string; value?: Uint8Array }> }
  | { type: 'txn'; steps: TxnStep[]; abort: boolean }
  | { type: 'reopen' }
  | { type: 'checkpoint' }
  | { type: 'bg-checkpoint' }
  | { type: 'compact' }
  | { type: 'reclaim' };

/**
 * A step of a kv-txn transaction: copy reads `from` (the transaction's own writes included)
 * and writes what it read to `to` (deletes `to` when `from` is absent); a value-less put is a
 * delete.
 */
type TxnStep = { copy: true; from: string; to: string } | { copy: false; key: string; value?: Uint8Array };

function planOp(
  workload: CrashOptions['workload'],
  i: number,
  rand: () => number,
  model: Map<string, Uint8Array>,
): PlannedOp {
  const key = (): string => `6b${(Math.floor(rand() * 16) + 0x30).toString(16)}`;
  const churn = workload === 'kv-compact';
  // kv-compact: some values above the 16 KiB inline limit (DAX objects: 4 KiB blocks allocated, and freed after the grace period once superseded)
  const value = (): Uint8Array =>
    randomBytes(rand, churn && rand() < 0.25 ? LARGE_VALUE_BYTES : rand() < 0.1 ? 9000 : 1 + Math.floor(rand() * 200));
  if (i % 13 === 12) return { type: 'reopen' };
  if (workload === 'kv-full') return fullStep(i, rand, model);
  if (workload === 'kv-grow') return growStep(i, rand, model);
  // an index checkpoint taken while running (crash points inside its writing; the ops after it
  // are recovered through it, replaying the log written since)
  // Every other one runs as the background one does: started here, a step before each of the
  // next ops (one per event-loop turn), so writes land between its capture, walk and write.
  if (i % 13 === 6 && !churn) return Math.floor(i / 13) % 2 === 0 ? { type: 'bg-checkpoint' } : { type: 'checkpoint' };
  if (churn) {
    // A cycle of 9 that reaches every churn path early: four fill batches (the fourth closes a
    // segment whose older fills are dead), a large value superseded (its object retired),
    // compaction, then a reclaim that frees what compaction and the overwrite retired.
    const step = COMPACT_CYCLE[i % COMPACT_CYCLE.length];
    if (step === 'fill') return fillBatch(rand);
    if (step === 'large') return { type: 'put', key: '6b30', value: randomBytes(rand, LARGE_VALUE_BYTES) };
    if (step === 'compact' || step === 'reclaim') return { type: step };
  }
  const r = rand();
  // kv-txn: transactions of 2 to 5 steps over 16 keys, one in six aborted by an exception
  if (workload === 'kv-txn' && r < 0.7)
    return {
      type: 'txn',
      steps: Array.from({ length: 2 + Math.floor(rand() * 4) }, (): TxnStep => {
        const s = rand();
        if (s < 0.4) return { copy: true, from: key(), to: key() };
        return s < 0.85 ? { copy: false, key: key(), value: value() } : { copy: false, key: key() };
      }),
      abort: rand() < 1 / 6,
    };
  if (workload === 'kv-batch' || r < 0.15)
    return {
      type: 'batch',
      ops: Array.from({ length: 2 + Math.floor(rand() * 4) }, () =>
        rand() < 0.8 ? { key: key(), value: value() } : { key: key() },
      ),
    };
  if (r < 0.3 && model.size > 0) return { type: 'del', key: [...model.keys()][Math.floor(rand() * model.size)] };
  const v = value();
  // kv-compact: large values on 2 keys, which half the puts overwrite (superseded objects retired often)
  return {
    type: 'put',
    key:
      churn && (v.length === LARGE_VALUE_BYTES || rand() < 0.5)
        ? `6b${(0x30 + Math.floor(rand() * 2)).toString(16)}`
        : key(),
    value: v,
  };
}

const COMPACT_CYCLE = ['fill', 'random', 'fill', 'large', 'fill', 'large', 'fill', 'compact', 'reclaim'] as const;

/**
 * kv-full: FULL_FILLS fill batches of new keys (each about a third of a segment) fill the two
 * extents of log until a fill gets ENOSPC (the third extent is the reserve); from then on a
 * cycle of deletes (single and batched: in a full store they go to the priority writer, after
 * reclaiming), a fill (refused, or taking what the deletes and compaction freed) and an
 * explicit compaction. The crash points fall inside reclaims, compactions into the priority
 * writer and its segment switches, in a store with no free extent.
 */
function fullStep(i: number, rand: () => number, model: Map<string, Uint8Array>): PlannedOp {
  const step = i < FULL_FILLS ? 'fill' : FULL_CYCLE[(i - FULL_FILLS) % FULL_CYCLE.length];
  const keys = [...model.keys()].filter((k) => k.startsWith('46'));
  const pick = (): string => keys[Math.floor(rand() * keys.length)];
  if (step === 'fill' || keys.length === 0)
    return {
      type: 'batch',
      ops: Array.from({ length: FILL_KEYS }, (_, k) => ({
        key: `46${i.toString(16).padStart(4, '0')}${k.toString(16).padStart(2, '0')}`,
        value: randomBytes(rand, FILL_VALUE_BYTES),
      })),
    };
  if (step === 'del') return { type: 'del', key: pick() };
  if (step === 'dels')
    return { type: 'batch', ops: Array.from({ length: 2 + Math.floor(rand() * 6) }, () => ({ key: pick() })) };
  return { type: 'compact' };
}

/**
 * kv-grow: fill batches of new keys (GROW_FILL_KEYS values of FILL_VALUE_BYTES: ~1.5 MiB each,
 * all live) grow the store from 8 to 24 MiB (its maxSize) and then fill it, until fills are
 * refused with ENOSPC; between them deletes and overwrites (single and batched) and a
 * compaction. So crash points fall inside the growth (the file grown, both superblock copies),
 * in the writes right after it (the new blocks handed out), in a recovery that grows into a
 * longer file, and in a store at its maxSize.
 */
function growStep(i: number, rand: () => number, model: Map<string, Uint8Array>): PlannedOp {
  const keys = [...model.keys()].filter((k) => k.startsWith('46'));
  const pick = (): string => keys[Math.floor(rand() * keys.length)];
  const step = GROW_CYCLE[i % GROW_CYCLE.length];
  if (step === 'fill' || keys.length === 0)
    return {
      type: 'batch',
      ops: Array.from({ length: GROW_FILL_KEYS }, (_, k) => ({
        key: `46${i.toString(16).padStart(4, '0')}${k.toString(16).padStart(2, '0')}`,
        value: randomBytes(rand, FILL_VALUE_BYTES),
      })),
    };
  if (step === 'mix')
    return rand() < 0.5
      ? { type: 'del', key: pick() }
      : {
          type: 'batch',
          ops: Array.from({ length: 2 + Math.floor(rand() * 4) }, () =>
            rand() < 0.5 ? { key: pick() } : { key: pick(), value: randomBytes(rand, 1 + Math.floor(rand() * 3000)) },
          ),
        };
  return { type: 'compact' };
}

const GROW_CYCLE = ['fill', 'fill', 'mix', 'fill', 'compact'] as const;
/** Keys of a kv-grow fill batch: one batch record of ~1.5 MiB, most of a segment. */
const GROW_FILL_KEYS = 96;

/** Fill batches that make the kv-full store full (FILL_KEYS values of FILL_VALUE_BYTES each: ~640 KiB). */
const FULL_FILLS = 8;
const FULL_CYCLE = ['del', 'dels', 'del', 'fill', 'dels', 'compact', 'fill'] as const;

/** Bytes of a value stored as a DAX object (above the 16 KiB inline limit, 5 blocks). */
const LARGE_VALUE_BYTES = 20 * 1024;
/** Values of a fill batch: just under the inline limit, so they stay in the log segment. */
const FILL_VALUE_BYTES = 16 * 1024 - 64;
/** Keys of a fill batch; the same keys every time, so older fills become dead space for compaction. */
const FILL_KEYS = 40;

const RECLAIM_KEY = Uint8Array.of(0x72);
const RECLAIM_VALUE = Uint8Array.of(1);

function randomBytes(rand: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const fill = (rand() * 256) | 0;
  out.fill(fill);
  for (let i = 0; i < length; i += 61) out[i] = (rand() * 256) | 0; // cheap to make, still distinct per value
  return out;
}

/** One ~650 KiB batch record: three fill a 2 MiB segment, the fourth opens a new one. */
function fillBatch(rand: () => number): PlannedOp {
  return {
    type: 'batch',
    ops: Array.from({ length: FILL_KEYS }, (_, k) => ({
      key: `66${(k + 0x10).toString(16)}`,
      value: randomBytes(rand, FILL_VALUE_BYTES),
    })),
  };
}

/** Applies op to model; with `dryRun` returns the listing after it without changing model. */
function applyToModel(model: Map<string, Uint8Array>, op: PlannedOp, dryRun: boolean): Listing {
  const m = dryRun ? new Map(model) : model;
  if (op.type === 'put') m.set(op.key, op.value);
  else if (op.type === 'reclaim') m.set(Buffer.from(RECLAIM_KEY).toString('hex'), RECLAIM_VALUE);
  else if (op.type === 'del') m.delete(op.key);
  else if (op.type === 'batch') for (const b of op.ops) b.value === undefined ? m.delete(b.key) : m.set(b.key, b.value);
  else if (op.type === 'txn' && !op.abort)
    for (const st of op.steps) {
      const value = st.copy ? m.get(st.from) : st.value;
      const key = st.copy ? st.to : st.key;
      if (value === undefined) m.delete(key);
      else m.set(key, value);
    }
  return [...m.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${xxHex(v)}`)
    .join(',');
}

/**
 * Runs op; false when it was refused with ENOSPC and `mayBeFull` (kv-full: a put or a batch
 * with puts in a full store: nothing written). A delete, a batch of deletes or a compaction
 * never is: its ENOSPC is thrown like any failure.
 */
function runOp(kv: KvStore, op: PlannedOp, mayBeFull = false): boolean {
  const adds = op.type === 'put' || (op.type === 'batch' && op.ops.some((b) => b.value !== undefined));
  try {
    runOpOnce(kv, op);
    return true;
  } catch (e) {
    if (mayBeFull && adds && e instanceof DaxError && e.code === 'ENOSPC') return false;
    throw e;
  }
}

/** Tolerates ENOSPC from a checkpoint (no room for one: nothing written). */
function roomless(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof DaxError) || e.code !== 'ENOSPC') throw e;
  }
}

function runOpOnce(kv: KvStore, op: PlannedOp): void {
  const hex = (k: string): Uint8Array => new Uint8Array(Buffer.from(k, 'hex'));
  roomless(() => kv.stepBackgroundCheckpoint()); // the event loop's turn before this op
  if (op.type === 'put') kv.put(hex(op.key), op.value);
  else if (op.type === 'del') kv.delete(hex(op.key));
  else if (op.type === 'batch')
    kv.batch(
      op.ops.map((b) =>
        b.value === undefined
          ? { type: 'del' as const, key: hex(b.key) }
          : { type: 'put' as const, key: hex(b.key), value: b.value },
      ),
    );
  else if (op.type === 'txn') runTransaction(kv, op.steps, op.abort);
  else if (op.type === 'compact') kv.compact({ maxLiveRatio: 1 });
  else if (op.type === 'checkpoint') roomless(() => kv.checkpoint());
  else if (op.type === 'bg-checkpoint') kv.startBackgroundCheckpoint();
  else if (op.type === 'reclaim') {
    // what a background reclaimer does: end grace periods (device blocks are freed in the
    // collect), then a tiny put, whose epilogue removes the large values that became ready
    for (let i = 0; i < 4; i++) kv.dax.epoch.collect();
    kv.put(RECLAIM_KEY, RECLAIM_VALUE);
  }
}

class Aborted extends Error {}

/** A kv-txn transaction; `abort`: its callback throws after its steps, and nothing may be written. */
function runTransaction(kv: KvStore, steps: TxnStep[], abort: boolean): void {
  const hex = (k: string): Uint8Array => new Uint8Array(Buffer.from(k, 'hex'));
  try {
    kv.transactionSync((txn) => {
      for (const st of steps) {
        const value = st.copy ? txn.get(hex(st.from)) : st.value;
        const key = hex(st.copy ? st.to : st.key);
        if (value === undefined) txn.delete(key);
        else txn.put(key, value);
      }
      if (abort) throw new Aborted('aborted by the workload');
    });
  } catch (e) {
    if (!(abort && e instanceof Aborted)) throw e;
  }
}

function drain(queue: Pending[], report: CrashReport, o: CrashOptions, seed: number): void {
  while (queue.length > 0) {
    const p = queue.pop()!;
    if (o.stopAtFirst === true && report.violations.length > 0) continue;
    const image = materialize(p.diff, `crash-${o.workload}-${seed}-point${p.point}`);
    try {
      const problem = checkImage(
        image,
        p.allowed,
        seed + p.point,
        report.imagesChecked % CONTINUATION_EVERY === 0,
        o.recoveryCrash !== false,
      );
      report.imagesChecked++;
      if (problem !== undefined) {
        const v: Violation = { ...problem, crashPoint: p.point };
        if (report.violations.length < 5) saveViolation(v, image, p, o, seed);
        report.violations.push(v);
      }
    } finally {
      image.dispose();
    }
  }
}

/** Recovers a copy of the image and checks structure, data and continuation. */
export function checkImage(
  image: SimMedia,
  allowed: readonly Listing[],
  seed: number,
  continuation = true,
  recoveryCrash = continuation,
): Omit<Violation, 'crashPoint'> | undefined {
  let kv: KvStore;
  const work = image.crashImage({ mode: 'none' });
  // with continuation, also crash once inside this recovery: at one of its fences (seeded
  // reservoir pick), the durable state plus a seeded half of the pending words
  const recoveryRand = mulberry32(seed ^ 0x5eed);
  let inRecovery: { image: SimMedia; fence: number } | undefined;
  let fences = 0;
  const unhook =
    continuation && recoveryCrash
      ? work.onFence(() => {
          fences++;
          if (recoveryRand() * fences >= 1) return;
          inRecovery?.image.dispose();
          inRecovery = {
            image: work.crashImage({ words: Array.from(work.pendingWords()).filter(() => recoveryRand() < 0.5) }),
            fence: fences,
          };
        })
      : () => undefined;
  try {
    kv = openMedia(work, {
      formatIfEmpty: false,
      durability: 'sync',
      checkpoint: true,
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
  } catch (e) {
    unhook();
    inRecovery?.image.dispose();
    work.dispose();
    return { kind: 'structure', detail: `recovery failed: ${(e as Error).message}` };
  }
  unhook();
  try {
    if (inRecovery !== undefined) {
      // recovery must be idempotent: recovering what a crashed recovery left gives an allowed state too
      const again = checkImage(inRecovery.image, allowed, seed, false);
      if (again !== undefined)
        return {
          kind: again.kind,
          detail: `after a crash inside recovery (fence ${inRecovery.fence} of ${fences}): ${again.detail}`,
        };
    }
    const audit = kv.dax.device.audit();
    if (audit.length > 0)
      return { kind: 'structure', detail: `allocator vs owner table: ${audit.slice(0, 3).join('; ')}` };
    let got: Listing;
    try {
      got = listing(kv);
    } catch (e) {
      return { kind: 'data', detail: `reading the recovered store failed: ${(e as Error).message}` };
    }
    if (!allowed.includes(got))
      return { kind: 'data', detail: `recovered ${short(got)}; allowed ${allowed.map(short).join(' | ')}` };
    if (!continuation) return undefined;
    const rand = mulberry32(seed);
    const model = new Map<string, string>(
      got === '' ? [] : got.split(',').map((kv) => kv.split('=') as [string, string]),
    );
    // One delete of a recovered key (it must succeed in any state, also a full store's), then a
    // few small puts; in a full store (kv-full) a put may be refused with ENOSPC, writing nothing.
    const present = [...model.keys()];
    if (present.length > 0) {
      const gone = present[Math.floor(rand() * present.length)];
      kv.delete(new Uint8Array(Buffer.from(gone, 'hex')));
      model.delete(gone);
    }
    for (let i = 0; i < 3; i++) {
      const k = Uint8Array.of(0x7a, (rand() * 4) | 0);
      const v = Uint8Array.of((rand() * 256) | 0, 1, 2);
      try {
        kv.put(k, v);
      } catch (e) {
        if (e instanceof DaxError && e.code === 'ENOSPC') continue;
        throw e;
      }
      model.set(Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex'));
    }
    kv.close();
    const reopened = work.crashImage({ mode: 'none' });
    let after: Listing;
    try {
      const again = openMedia(reopened, {
        formatIfEmpty: false,
        checkpoint: true,
        keyEncoding: 'binary',
        valueEncoding: 'binary',
      });
      after = listing(again);
      again.close();
    } finally {
      reopened.dispose();
    }
    const expected = [...model.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    if (after !== expected)
      return { kind: 'continuation', detail: `after writes + reopen: ${short(after)}; expected ${short(expected)}` };
    return undefined;
  } catch (e) {
    return { kind: 'continuation', detail: `writing after recovery failed: ${(e as Error).message}` };
  } finally {
    inRecovery?.image.dispose();
    kv.close();
    work.dispose();
  }
}

function short(s: string): string {
  return s.length > 120 ? `${s.slice(0, 120)}…(${s.split(',').length} keys)` : s === '' ? '(empty)' : s;
}

function saveViolation(v: Violation, image: SimMedia, p: Pending, o: CrashOptions, seed: number): void {
  const dir = o.out ?? fs.mkdtempSync(path.join(os.tmpdir(), 'daxstore-crash-'));
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `crash-${o.workload}-seed${seed}-point${p.point}.img`);
  fs.writeFileSync(file, new Uint8Array(image.buffer));
  fs.writeFileSync(
    `${file}.json`,
    JSON.stringify({
      allowed: p.allowed,
      seed: seed + p.point,
      size: image.size,
      maxSize: image.grow !== undefined ? image.maxSize : undefined,
    }),
  );
  v.image = file;
  v.replay = `daxstore crash --replay ${file}`;
}

export function replay(file: string): Omit<Violation, 'crashPoint'> | undefined {
  if (!fs.existsSync(file) || !fs.existsSync(`${file}.json`))
    throw new DaxError('ENOENT', `replay: ${file} or ${file}.json does not exist`);
  const bytes = fs.readFileSync(file);
  const meta = JSON.parse(fs.readFileSync(`${file}.json`, 'utf8')) as {
    allowed: Listing[];
    seed: number;
    size?: number;
    maxSize?: number;
  };
  const image = createSimMedia(meta.size ?? bytes.length, { name: file, maxSize: meta.maxSize });
  new Uint8Array(image.buffer).set(bytes);
  const durable = image.crashImage({ mode: 'all' });
  image.dispose();
  return checkImage(durable, meta.allowed, meta.seed);
}

/** Crash-relevant planted bugs (switches of src/test-break.ts); the concurrency ones (R1-R6 locks) need threads, not crashes. */
export const SELF_TEST_BREAKS = [
  'kv-skip-drain',
  'kv-skip-checksum',
  'kv-compact-no-commit',
  'kv-large-ref-before-data',
  'alloc-publish-before-index',
  'kv-large-free-early',
  'free-skip-persist',
  'superblock-single-persist',
  'kv-checkpoint-trust-stale',
  'grow-superblock-first',
  'kv-txn-record-per-write',
] as const satisfies readonly SwitchName[];
type SelfTestBreak = (typeof SELF_TEST_BREAKS)[number];

/**
 * Which planted bug each switch stands for. Nothing plants "recovery that is not
 * idempotent": the crash inside recovery checks that property on the real code instead.
 */
const PLANTED_AS: Record<SelfTestBreak, string> = {
  'kv-skip-drain': 'a missing fence',
  'kv-skip-checksum': 'torn record accepted (no checksum)',
  'kv-compact-no-commit': 'a missing flush (copies not flushed before the segment is freed)',
  'kv-large-ref-before-data': 'publishing before the data is durable (record durable, large value never flushed)',
  'alloc-publish-before-index':
    'a 16-byte pointer store (owner record (owner, index) as two 8-byte stores, one fence: torn)',
  'kv-large-free-early':
    'a freed block reused inside the grace period (old object removed, blocks reused, before the superseding record is durable)',
  'free-skip-persist': 'a free not durable before the block is reused',
  'superblock-single-persist': 'both superblock copies updated under one fence',
  'kv-checkpoint-trust-stale':
    'a stale index checkpoint trusted (segments it lists compacted away and reused since; coverage not checked)',
  'grow-superblock-first': 'a growth that names the new size in the superblock before the file has it',
  'kv-txn-record-per-write': 'a transaction committed as several records (a crash keeps part of it)',
};

/** Switches a planted bug needs together: the early free returns blocks to the allocator at once (dax-free-now), so the new value reuses them. */
const BREAK_ENV: Partial<Record<SelfTestBreak, SwitchName[]>> = {
  'kv-large-free-early': ['kv-large-free-early', 'dax-free-now'],
};
const WORKLOAD_OF: Partial<Record<SelfTestBreak, CrashOptions['workload']>> = {
  'kv-compact-no-commit': 'kv-compact',
  'free-skip-persist': 'kv-compact',
  'alloc-publish-before-index': 'kv-compact',
  'kv-large-free-early': 'kv-compact',
  'kv-large-ref-before-data': 'kv-compact',
  'kv-checkpoint-trust-stale': 'kv-compact',
  'grow-superblock-first': 'kv-grow',
  'kv-txn-record-per-write': 'kv-txn',
};

export interface SelfTestResult {
  testBreak: string;
  plants: string;
  workload: string;
  violations: number;
  detected: boolean;
  elapsedMs: number;
}

/** One child per switch (at most one per CPU at a time), each stopping at its first violation. */
async function selfTest(o: CrashOptions, seed: number): Promise<{ results: SelfTestResult[]; ok: boolean }> {
  // the violating images each child saves: under --out when given, else in a directory removed at the end
  const scratch = o.out === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), 'daxstore-self-test-')) : undefined;
  try {
    return await selfTestIn(o, seed, o.out ?? scratch!);
  } finally {
    if (scratch !== undefined) fs.rmSync(scratch, { recursive: true, force: true });
  }
}

async function selfTestIn(
  o: CrashOptions,
  seed: number,
  outDir: string,
): Promise<{ results: SelfTestResult[]; ok: boolean }> {
  const main = new URL('./main.js', import.meta.url).pathname;
  const runOne = (name: SelfTestBreak): Promise<SelfTestResult> => {
    const workload = WORKLOAD_OF[name] ?? o.workload;
    const args = [
      main,
      'crash',
      '--json',
      '--no-progress',
      '--stop-at-first',
      ...(o.recoveryCrash === false ? ['--no-recovery-crash'] : []),
      '--seed',
      String(seed),
      '--ops',
      String(o.ops),
      '--images',
      String(o.images),
      '--workload',
      workload,
      '--out',
      path.join(outDir, name),
    ];
    const start = performance.now();
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, args, {
        env: { ...process.env, ...breakEnv(...(BREAK_ENV[name] ?? [name])) },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.on('error', reject);
      child.on('close', (status) => {
        let violations: number;
        try {
          violations = (JSON.parse(stdout) as CrashReport).violations.length;
        } catch {
          violations = status === 1 || status === 4 ? 1 : 0; // a crash of the checker itself under the bug counts as seen
        }
        resolve({
          testBreak: name,
          plants: PLANTED_AS[name],
          workload,
          violations,
          detected: violations > 0,
          elapsedMs: Math.round(performance.now() - start),
        });
      });
    });
  };
  const results: SelfTestResult[] = [];
  const queue = [...SELF_TEST_BREAKS];
  const lanes = Math.max(1, Math.min(queue.length, os.availableParallelism()));
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) results.push(await runOne(name));
    }),
  );
  results.sort(
    (a, b) =>
      SELF_TEST_BREAKS.indexOf(a.testBreak as SelfTestBreak) - SELF_TEST_BREAKS.indexOf(b.testBreak as SelfTestBreak),
  );
  return { results, ok: results.every((r) => r.detected) };
}

export async function runCrash(o: CrashOptions): Promise<number> {
  const seed = o.seed ?? Date.now() >>> 0;
  if (o.replay !== undefined) {
    const v = replay(o.replay);
    emit(o.json === true, { image: o.replay, violation: v ?? null }, () =>
      v === undefined ? `${o.replay}: recovers to an allowed state` : `${o.replay}: ${v.kind} violation: ${v.detail}`,
    );
    return v === undefined ? EXIT_OK : EXIT_PROBLEMS;
  }
  if (o.selfTest === true) {
    const st = await selfTest(o, seed);
    emit(
      o.json === true,
      st,
      () =>
        `${table([['planted bug', 'stands for', 'workload', 'violations', 'seen', 'ms'], ...st.results.map((r) => [r.testBreak, r.plants, r.workload, r.violations, r.detected ? 'yes' : 'NO', r.elapsedMs])])}\n${st.ok ? 'self-test: every planted bug was reported' : 'self-test FAILED: a planted bug went unseen'}`,
    );
    return st.ok ? EXIT_OK : EXIT_PROBLEMS;
  }
  const bar =
    o.progress && o.json !== true
      ? new cliProgress.SingleBar(
          { format: 'crash [{bar}] {value}/{total} ops', stream: process.stderr, clearOnComplete: true },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  bar?.start(o.ops, 0);
  const report = crashRun(o, seed, (n) => bar?.update(n));
  bar?.stop();
  if (o.out !== undefined) {
    fs.mkdirSync(o.out, { recursive: true });
    fs.writeFileSync(path.join(o.out, `crash-${o.workload}-seed${seed}.json`), `${JSON.stringify(report, null, 2)}\n`);
  }
  emit(o.json === true, report, () => renderCrash(report));
  return report.violations.length === 0 ? EXIT_OK : EXIT_PROBLEMS;
}

/** '0 violations', or '3 violations (2 lost-ack, 1 wrong-value)'. */
function violationCounts(r: CrashReport): string {
  const n = r.violations.length;
  const kinds = Object.entries(r.violationsByKind)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${count} ${kind}`);
  return `${n} violation${n === 1 ? '' : 's'}${kinds.length === 0 ? '' : ` (${kinds.join(', ')})`}`;
}

export function renderCrash(r: CrashReport): string {
  const lines = [
    `crash ${r.workload}, seed ${r.seed}, ${r.ops} ops: ${r.crashPoints} crash points (${r.fencePoints} fences, ${r.fenceCallSitesHit} fence call sites hit${r.opsRefused > 0 ? `, ${r.opsRefused} ops refused with ENOSPC` : ''}${r.growths > 0 ? `, ${r.growths} growth${r.growths === 1 ? '' : 's'} with ${r.growthPoints} crash points inside` : ''})`,
    `images: ${r.imagesGenerated} generated, ${r.imagesUnique} unique, ${r.imagesChecked} checked; ${violationCounts(r)} in ${r.elapsedMs} ms`,
  ];
  for (const v of r.violations.slice(0, 5))
    lines.push(
      `  ${v.kind} at crash point ${v.crashPoint}: ${v.detail}${v.replay === undefined ? '' : `\n    replay: ${v.replay}`}`,
    );
  if (r.violations.length > 0)
    lines.push(`  rerun: daxstore crash --workload ${r.workload} --ops ${r.ops} --seed ${r.seed}`);
  return lines.join('\n');
}
