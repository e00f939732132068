/**
 * Worker of test/kv/kv-damage-seeded.test.ts: seeded damage trials on one key-value store.
 *
 * The store (built once per worker from the seed) has overwrites, deletes, batches, large
 * values (DAX objects) and a compaction behind it, and is closed cleanly. Each trial takes a
 * copy and damages one region: one byte flipped (xor with a nonzero value) in a superblock
 * copy, an owner record, the log, a large value or an object-table record; one 4 KiB block
 * poisoned (bad-block list, unreadable, garbage in its place) under the log, a large value or
 * the object table; one metadata page lost (a superblock copy, an owner-table page: garbage in
 * its place, unreadable); or ('multi') two to four of these at once, in different places.
 * Then:
 *   - strict open: refused, or every key reads its last written value or throws (EIO/ECORRUPT);
 *   - salvage open: must open; every key reads its last written value, or throws, or is absent
 *     where the report covers it (an unknown sequence range); a lost key's records must
 *     overlap the damage; a deleted key must stay deleted unless a reported range covers it;
 *   - strict reopen after salvage (what check --repair leaves): must open and read the same;
 *   - every `checkEvery`-th trial, on a file: `check` must report a problem whenever the store
 *     could not serve every key, and `check --repair` must leave a store that checks clean.
 * Each trial's counts are posted to the parent; an exception that is not a DaxError counts as
 * a crash (with its stack).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { rng } from '../helpers/seed.js';
import { REGIONS, type Region } from '../helpers/damage-regions.js';
import { Device } from '../../src/device/device.js';
import { DaxError } from '../../src/errors.js';
import { type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { KvDamageError, type KvRecoveryReport } from '../../src/kv/recovery.js';
import {
  ENTRY_DEL,
  ENTRY_HEADER_BYTES,
  KIND_BATCH,
  KIND_PUT,
  OWNER_KV_SEGMENT,
  SEGMENT_BYTES,
} from '../../src/kv/layout.js';
import {
  entryKeyLength,
  entryOp,
  entrySequence,
  entryValueLength,
  forEachRecord,
  mediaViews,
} from '../../src/kv/records.js';
import { KV_OBJECT_ID_BASE, largeRefAt } from '../../src/kv/large-values.js';
import { entryBytes } from '../../src/kv/layout.js';
import { checkStore, repairStore } from '../../src/cli/check.js';

interface Job {
  seed: number;
  trials: number;
  checkEvery: number;
  dir: string;
  /** 'mixed': 300 keys, every region in turn; 'issue': 10,000 keys, one byte anywhere the store wrote */
  store: 'mixed' | 'issue';
  /** the mixed store's regions to damage, in turn (default: every one) */
  regions?: Region[];
}

export interface TrialResult {
  trial: number;
  region: Region;
  offset: number;
  /** every damaged range [start, end) ('multi' damages several) */
  ranges: Array<[number, number]>;
  /** bad outcomes: each must be 0 */
  wrongValues: number;
  /** of wrongValues: an older acknowledged value of the key served as its current one */
  rolledBack: number;
  resurrectedSilently: number;
  lostSilently: number;
  lostOutsideDamage: number;
  unopenableAfterSalvage: number;
  unopenableAfterRepair: number;
  checkMissed: number;
  repairNotClean: number;
  crashes: string[];
  /** what happened (informational) */
  refusedStrict: boolean;
  corrected: boolean;
  lostKeys: number;
  staleReported: number;
  checked: boolean;
}

const td = new TextDecoder();

interface KeyState {
  value: Uint8Array | undefined; // undefined: deleted
  /** every value the key held before its last one */
  older: Uint8Array[];
  footprint: Array<[number, number]>;
}

interface Built {
  media: SimMedia;
  model: Map<string, KeyState>;
  segments: Array<{ base: number; used: number }>;
  largePages: Array<[number, number]>; // [offset, bytes used in the page]
  objectRecords: number[];
  ownerRecords: number[];
  /** the object table's own pages (data blocks) */
  tablePages: number[];
  tableOffset: number;
}

function randomBytes(r: () => number, n: number): Uint8Array {
  return new Uint8Array(n).map(() => Math.floor(r() * 256));
}

/** Writes the store of `job.store` from the seed, closes it; a clean copy and where everything lies. */
function build(seed: number, store: Job['store']): Built {
  const r = rng(seed);
  const keys = store === 'issue' ? 10_000 : 300;
  const media = createSimMedia((store === 'issue' ? 64 : 16) * 2 ** 20, { name: `damage-${seed}` });
  const db = openMedia(media, { durability: 'sync' });
  const values = new Map<string, Uint8Array | undefined>();
  const history = new Map<string, Uint8Array[]>();
  const set = (k: string, v: Uint8Array | undefined): void => {
    const was = values.get(k);
    if (was !== undefined) {
      const list = history.get(k) ?? [];
      list.push(was);
      history.set(k, list);
    }
    if (v !== undefined || values.has(k)) values.set(k, v);
  };
  const key = (): string => `user:${String(Math.floor(r() * keys)).padStart(5, '0')}`;
  if (store === 'issue') {
    // every key once (1% of them large), then the mixed workload below over the same keys
    const puts: Array<{ type: 'put'; key: string; value: Uint8Array }> = [];
    for (let i = 0; i < keys; i++) {
      const k = `user:${String(i).padStart(5, '0')}`;
      const v = randomBytes(r, r() < 0.01 ? 17_000 + Math.floor(r() * 24_000) : 8 + Math.floor(r() * 120));
      puts.push({ type: 'put', key: k, value: v });
      set(k, v);
      if (puts.length === 100) db.batch(puts.splice(0));
    }
  }
  const ops = store === 'issue' ? 3000 : 1200;
  for (let i = 0; i < ops; i++) {
    const x = r();
    const k = key();
    if (x < 0.55) {
      const v = randomBytes(r, 1 + Math.floor(r() * 300));
      db.put(k, v);
      set(k, v);
    } else if (x < 0.6) {
      const v = randomBytes(r, 17_000 + Math.floor(r() * 24_000));
      db.put(k, v);
      set(k, v);
    } else if (x < 0.75) {
      db.delete(k);
      set(k, undefined);
    } else {
      const batch: Array<{ type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string }> = [];
      for (let j = 0; j < 2 + Math.floor(r() * 5); j++) {
        const bk = key();
        if (r() < 0.7) batch.push({ type: 'put', key: bk, value: randomBytes(r, 1 + Math.floor(r() * 120)) });
        else batch.push({ type: 'del', key: bk });
      }
      db.batch(batch);
      for (const op of batch) set(op.key, op.type === 'put' ? op.value : undefined);
    }
    if (i === ops >> 1) db.compact({ maxLiveRatio: 0.7 });
  }
  db.close();
  const clean = media.crashImage({ mode: 'none' });
  media.dispose();
  return describe(clean, values, history);
}

/** Where every key's newest records, large value pages and metadata lie (from a clean open). */
function describe(
  media: SimMedia,
  values: Map<string, Uint8Array | undefined>,
  history: Map<string, Uint8Array[]>,
): Built {
  const db = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
  const device = db.dax.device;
  const v = mediaViews(db.dax.device.media.buffer);
  const tableOffset = device.geometry.ownerTableOffset;
  const segments: Built['segments'] = [];
  const newest = new Map<string, { sequence: number; records: Array<[number, number]>; entry: number }>();
  const ownerRecords: number[] = [];
  const objectPages = new Map<number, number[]>(); // object id -> page offsets
  const tablePages: number[] = [];
  device.forEachOwned((block, owner) => {
    ownerRecords.push(tableOffset + 16 * block);
    if (owner === 1) tablePages.push(device.blockOffset(block));
    if (owner >= KV_OBJECT_ID_BASE) {
      const list = objectPages.get(owner) ?? [];
      list.push(device.blockOffset(block));
      objectPages.set(owner, list);
    }
  });
  device.forEachOwned((block, owner, nonce) => {
    if (owner !== OWNER_KV_SEGMENT) return;
    const base = device.blockOffset(block);
    let used = 0;
    forEachRecord(v, base, SEGMENT_BYTES, nonce, undefined, (at, check) => {
      used = at + check.totalBytes - base;
      if (check.kind !== KIND_PUT && check.kind !== KIND_BATCH) return;
      let e = at + 32;
      for (let i = 0; i < check.count; i++) {
        const k = td.decode(v.u8.subarray(e + ENTRY_HEADER_BYTES, e + ENTRY_HEADER_BYTES + entryKeyLength(v, e)));
        const sequence = entrySequence(v, e);
        const cur = newest.get(k);
        if (cur === undefined || sequence > cur.sequence)
          newest.set(k, { sequence, records: [[at, at + check.totalBytes]], entry: e });
        else if (sequence === cur.sequence) cur.records.push([at, at + check.totalBytes]);
        e += entryBytes(entryKeyLength(v, e), entryValueLength(v, e));
      }
    });
    segments.push({ base, used });
  });
  const objectRecords: number[] = [];
  const recordOf = new Map<number, number>();
  for (const page of tablePages)
    for (let at = page; at < page + 4096; at += 16) {
      const id = Number(new BigUint64Array(media.buffer, at, 1)[0] & 0xffff_ffff_ffffn); // bytes 6-7: check bytes
      if (id === 0) continue;
      objectRecords.push(at);
      recordOf.set(id, at);
    }
  const largePages: Built['largePages'] = [];
  const model = new Map<string, KeyState>();
  for (const [k, value] of values) {
    const n = newest.get(k);
    const footprint: Array<[number, number]> = n === undefined ? [] : [...n.records];
    if (n !== undefined && value !== undefined && entryOp(v, n.entry) !== ENTRY_DEL) {
      const ref = largeRefAt(v, n.entry);
      if (ref !== undefined) {
        const pages = objectPages.get(ref.id) ?? [];
        pages.forEach((p, i) => {
          footprint.push([p, p + 4096]);
          const owner = tableOffset + 16 * device.blockAt(p); // the page's owner record names its object
          footprint.push([owner, owner + 16]);
          largePages.push([p, Math.min(4096, ref.length - i * 4096)]);
        });
        const rec = recordOf.get(ref.id);
        if (rec === undefined) throw new Error(`object ${ref.id} of ${k} has no object-table record`);
        footprint.push([rec, rec + 16]);
        const pageOwner = tableOffset + 16 * device.blockAt(rec); // where the table page holding it is found
        footprint.push([pageOwner, pageOwner + 16]);
      }
    }
    model.set(k, { value, older: history.get(k) ?? [], footprint });
  }
  db.close();
  return { media, model, segments, largePages, objectRecords, ownerRecords, tablePages, tableOffset };
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}

/** The regions a 'multi' trial draws its two or three damages from (a superblock copy at most once: both copies bad is ECORRUPT by design). */
const MULTI_PARTS: Region[] = [
  'log',
  'owner-record',
  'large-value',
  'object-record',
  'poison-log',
  'poison-large-value',
];

interface Damaged {
  image: SimMedia;
  /** every damaged range [start, end) */
  ranges: Array<[number, number]>;
}

/** A copy of the clean store with the damage of `region` applied ('multi': two or three damages). */
function damage(built: Built, region: Region, r: () => number): Damaged {
  const image = built.media.crashImage({ mode: 'none' });
  if (region !== 'multi') return damageOne(built, region, r, image);
  const parts: Region[] = [];
  for (let i = 2 + Math.floor(r() * 2); i > 0; i--) parts.push(pick(r, MULTI_PARTS));
  if (r() < 0.25) parts.push('superblock');
  // poisons first: marking a block bad opens the device, which the other damage may refuse
  parts.sort((a, b) => Number(b.startsWith('poison')) - Number(a.startsWith('poison')));
  let d: Damaged = { image, ranges: [] };
  for (const part of parts) {
    const next = damageOne(built, part, r, d.image);
    d = { image: next.image, ranges: [...d.ranges, ...next.ranges] };
  }
  return d;
}

/** Applies one damage of `region` to `image` (a poisoned data block replaces the image: the result's). */
function damageOne(built: Built, region: Region, r: () => number, image: SimMedia): Damaged {
  const bytes = new Uint8Array(image.buffer);
  const flip = (at: number): Damaged => {
    bytes[at] ^= 1 + Math.floor(r() * 255);
    image.persist(at, 1);
    return { image, ranges: [[at, at + 1]] };
  };
  // A 4 KiB page whose contents are lost: garbage in their place, copies of it fail with EIO.
  const lose = (target: SimMedia, start: number): void => {
    new Uint8Array(target.buffer).fill(0xee, start, start + 4096);
    target.persist(start, 4096);
    target.injectPoison(start, 4096);
  };
  // A data block: also on the bad-block list, as the kernel's badblocks report it.
  const poison = (offset: number): Damaged => {
    const device = Device.open(image);
    const b = device.blockAt(offset);
    const start = device.blockOffset(b);
    device.poison(b);
    device.close();
    const poisoned = image.crashImage({ mode: 'none' });
    image.dispose();
    lose(poisoned, start);
    return { image: poisoned, ranges: [[start, start + 4096]] };
  };
  // A metadata page (not a data block: no bad-block entry can name it).
  const poisonMetadata = (start: number): Damaged => {
    lose(image, start);
    return { image, ranges: [[start, start + 4096]] };
  };
  switch (region) {
    case 'superblock':
      return flip(pick(r, [0, 4096]) + Math.floor(r() * 136));
    case 'owner-record':
      return flip(pick(r, built.ownerRecords) + Math.floor(r() * 16));
    case 'log': {
      const s = pick(r, built.segments);
      return flip(s.base + Math.floor(r() * s.used));
    }
    case 'large-value': {
      const [page, used] = pick(r, built.largePages);
      return flip(page + Math.floor(r() * used));
    }
    case 'object-record':
      return flip(pick(r, built.objectRecords) + Math.floor(r() * 16));
    case 'poison-log': {
      const s = pick(r, built.segments);
      return poison(s.base + Math.floor(r() * s.used));
    }
    case 'poison-large-value':
      return poison(pick(r, built.largePages)[0]);
    case 'poison-superblock':
      return poisonMetadata(pick(r, [0, 4096]));
    case 'poison-owner-table': {
      const record = pick(r, built.ownerRecords);
      return poisonMetadata(record - (record % 4096));
    }
    case 'poison-object-table':
      return poison(pick(r, built.tablePages));
    case 'multi':
      throw new Error('unreachable: damage() splits a multi trial');
    case 'anywhere': {
      const spans: Array<[number, number]> = [
        [0, 136],
        [4096, 136],
        ...built.ownerRecords.map((o): [number, number] => [o, 16]),
        ...built.segments.map((s): [number, number] => [s.base, s.used]),
        ...built.largePages,
        ...built.objectRecords.map((o): [number, number] => [o, 16]),
      ];
      let x = Math.floor(r() * spans.reduce((a, [, n]) => a + n, 0));
      for (const [at, n] of spans) {
        if (x < n) return flip(at + x);
        x -= n;
      }
      throw new Error('unreachable: the byte lies in a span');
    }
  }
}

const overlaps = (fp: Array<[number, number]>, ranges: Array<[number, number]>): boolean =>
  fp.some(([a, b]) => ranges.some(([lo, hi]) => a < hi && lo < b));

/** 'ok' | 'lost' (throws EIO/ECORRUPT) | 'absent' | the wrong bytes. */
function readKey(db: KvStore, key: string): 'ok-absent' | { value: Uint8Array } | { error: string } {
  try {
    const v = db.get(key);
    return v === undefined ? 'ok-absent' : { value: v };
  } catch (e) {
    if (e instanceof DaxError && (e.code === 'EIO' || e.code === 'ECORRUPT')) return { error: e.code };
    throw e;
  }
}

function covered(report: KvRecoveryReport | undefined): boolean {
  return report !== undefined && report.unknownSequences.length > 0;
}

/** Counts the keys of `db` against the model; `report` the salvage report (undefined: strict). */
function judge(
  db: KvStore,
  built: Built,
  ranges: Array<[number, number]>,
  report: KvRecoveryReport | undefined,
  out: TrialResult,
  what: string,
): void {
  for (const [key, state] of built.model) {
    const got = readKey(db, key);
    if (state.value === undefined) {
      if (got !== 'ok-absent' && 'value' in got) {
        if (covered(report)) out.staleReported++;
        else {
          out.resurrectedSilently++;
          if (out.crashes.length < 5) out.crashes.push(`${what}: deleted ${key} served`);
        }
      }
      continue;
    }
    if (got === 'ok-absent') {
      if (!covered(report)) {
        out.lostSilently++;
        if (out.crashes.length < 5) out.crashes.push(`${what}: ${key} absent, no report covers it`);
      } else if (!overlaps(state.footprint, ranges)) out.lostOutsideDamage++;
      continue;
    }
    if ('error' in got) {
      out.lostKeys++;
      if (!overlaps(state.footprint, ranges)) {
        out.lostOutsideDamage++;
        if (out.crashes.length < 5) out.crashes.push(`${what}: ${key} lost (${got.error}) outside the damage`);
      }
      continue;
    }
    if (Buffer.compare(got.value, state.value) !== 0) {
      if (covered(report)) out.staleReported++;
      else {
        out.wrongValues++;
        if (state.older.some((o) => Buffer.compare(o, got.value) === 0)) out.rolledBack++;
        if (out.crashes.length < 5) out.crashes.push(`${what}: ${key} served wrong bytes`);
      }
    }
  }
}

function trial(built: Built, job: Job, n: number): TrialResult {
  const r = rng((job.seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
  const region = regionOf(job, n);
  const out: TrialResult = {
    trial: n,
    region,
    offset: -1,
    ranges: [],
    wrongValues: 0,
    rolledBack: 0,
    resurrectedSilently: 0,
    lostSilently: 0,
    lostOutsideDamage: 0,
    unopenableAfterSalvage: 0,
    unopenableAfterRepair: 0,
    checkMissed: 0,
    repairNotClean: 0,
    crashes: [],
    refusedStrict: false,
    corrected: false,
    lostKeys: 0,
    staleReported: 0,
    checked: false,
  };
  const { image, ranges } = damage(built, region, r);
  out.offset = ranges[0][0];
  out.ranges = ranges;
  const guard = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      if (e instanceof DaxError) throw e;
      out.crashes.push(`${what}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
  };
  // strict
  guard('strict', () => {
    let db: KvStore;
    try {
      db = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    } catch (e) {
      if (!(e instanceof DaxError)) throw e;
      out.refusedStrict = true;
      return;
    }
    try {
      const rec = db.recovery;
      out.corrected =
        (rec?.corrected.length ?? 0) +
          (rec?.ownerRecords.corrected.length ?? 0) +
          (rec?.objectRecords.corrected.length ?? 0) >
        0;
      judge(db, built, ranges, undefined, out, 'strict');
    } finally {
      db.close();
    }
  });
  // salvage, then the strict reopen a repair leaves
  guard('salvage', () => {
    let db: KvStore;
    try {
      db = openMedia(image, { formatIfEmpty: false, recovery: 'salvage' });
    } catch (e) {
      if (!(e instanceof DaxError)) throw e;
      out.unopenableAfterSalvage++;
      out.crashes.push(`salvage open: ${e.message}`);
      return;
    }
    const report = db.recovery;
    try {
      judge(db, built, ranges, report, out, 'salvage');
    } finally {
      db.close();
    }
    let again: KvStore;
    try {
      again = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    } catch (e) {
      if (!(e instanceof DaxError)) throw e;
      out.unopenableAfterRepair++;
      out.crashes.push(`strict reopen after salvage: ${e.message}`);
      return;
    }
    try {
      const lostBefore = out.lostKeys;
      judge(again, built, ranges, report, out, 'after salvage');
      out.lostKeys = lostBefore; // the same keys again: counted once
    } finally {
      again.close();
    }
  });
  if (job.checkEvery > 0 && n % job.checkEvery === 0) {
    out.checked = true;
    guard('check', () => checkAndRepair(built, job, n, out));
  }
  image.dispose();
  return out;
}

/** check and check --repair on a file holding the damaged store (taken again from the clean copy). */
function checkAndRepair(built: Built, job: Job, n: number, out: TrialResult): void {
  const r = rng((job.seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
  const again = damage(built, regionOf(job, n), r); // the same damage, on a fresh copy
  const file = path.join(job.dir, `trial-${n}.store`);
  fs.writeFileSync(file, new Uint8Array(again.image.durableBytes()));
  again.image.dispose();
  try {
    let servesAll = true;
    try {
      const db = openMedia(createSimMediaFrom(file), { formatIfEmpty: false });
      for (const [key, state] of built.model) {
        const got = readKey(db, key);
        if (state.value === undefined ? got !== 'ok-absent' : got === 'ok-absent' || 'error' in got) servesAll = false;
      }
      db.close();
    } catch (e) {
      if (!(e instanceof DaxError)) throw e;
      servesAll = false;
    }
    const before = checkStore(file);
    if (!servesAll && before.ok) out.checkMissed++;
    if (before.ok) return;
    const after = repairStore(file, before);
    if (after.repaired?.after.ok !== true) {
      out.repairNotClean++;
      out.crashes.push(`check after repair: ${after.repaired?.after.problems.join('; ')}`);
    }
  } finally {
    fs.rmSync(file, { force: true });
    fs.rmSync(`${file}.quarantine`, { recursive: true, force: true });
  }
}

function createSimMediaFrom(file: string): SimMedia {
  const bytes = fs.readFileSync(file);
  const media = createSimMedia(bytes.length, { name: file });
  new Uint8Array(media.buffer).set(bytes);
  media.persist(0, bytes.length);
  return media;
}

function regionOf(job: Job, n: number): Region {
  const regions = job.regions ?? REGIONS;
  return job.store === 'issue' ? 'anywhere' : regions[n % regions.length];
}

const job = workerData as Job;
const built = build(job.seed, job.store);
for (let n = 0; n < job.trials; n++) parentPort!.postMessage(trial(built, job, n));
parentPort!.postMessage('done');
