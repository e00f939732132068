/**
 * daxstore check PATH [--repair]: offline verification of a store file.
 *
 * Checks, all on a private copy-on-write mapping (snapshot.ts), so the file is never changed:
 *   - superblock: both copies carry the magic and a matching checksum, and agree on the sequence
 *   - owner table + bad-block list: opening validates them (ECORRUPT otherwise)
 *   - every key-value record: recovery (strict) checks each one whole; damage (a record that
 *     had been made durable and fails its check, a poisoned block under records, an
 *     unreadable page) is a problem naming what it held and the keys whose newest version it
 *     held; a record recovery corrected exactly (one wrong byte, proven by its checksums) is
 *     a problem too (the file still holds the wrong byte); a torn tail after a crash is a note
 *   - every large value: read whole and checked against its checksum
 *   - allocator accounting: blocks owned by nothing reachable (dead objects, pages beyond an
 *     object's size, duplicates, unknown owners) are leaks; Device.audit() must then be empty
 * Keys marked LOST by an earlier salvage are listed as notes: they read as EIO until written.
 *
 * --repair (only when check found problems) opens the file for real with recovery 'salvage'
 * (recovery-salvage.ts: the damaged bytes and a report go to PATH.quarantine/ first; every
 * intact key is kept; a key whose newest version was lost is marked LOST; the damage leaves
 * the log), rewrites a bad superblock copy (any open does), marks LOST every key whose large
 * value fails its checksum (its bytes quarantined first), frees blocks of unknown owners,
 * then checks again. After a repair, check is ok exactly when every value the store serves
 * is the one last written or its key is listed as lost.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isDaxError } from '../errors.js';
import { open, type KvStore } from '../kv/index.js';
import { KvDamageError, keyText, type KvRecoveryReport } from '../kv/recovery.js';
import { closeSnapshot, openSnapshotStore, superblockProblems, takeSnapshot, type Snapshot } from './snapshot.js';
import { EXIT_OK, EXIT_PROBLEMS, emit } from './output.js';
import { openMedia } from '../kv/index.js';

/** Owner ids that a store's own structures use (dax object table, kv segments) or objects (>= 16). */
const OWNER_OBJECT_TABLE = 1;
const OWNER_STAGING = 2;
const OWNER_KV_SEGMENT = 3;
const MIN_OBJECT_ID = 16;

export interface CheckResult {
  path: string;
  ok: boolean;
  problems: string[];
  notes: string[];
  /** keys whose newest value is lost: found damaged now, or marked LOST by an earlier salvage */
  lostKeys: string[];
  /** keys whose large value fails its checksum or cannot be read */
  unreadableKeys: string[];
  unknownOwnerBlocks: number[];
  repaired?: {
    quarantine: string | undefined;
    lostKeys: string[];
    unknownSequences: Array<{ after: number; before: number }>;
    freedBlocks: number;
    after: CheckResult;
  };
}

export function checkStore(file: string): CheckResult {
  const snap = takeSnapshot(file);
  const result: CheckResult = {
    path: file,
    ok: true,
    problems: superblockProblems(snap.superblocks),
    notes: [],
    lostKeys: [],
    unreadableKeys: [],
    unknownOwnerBlocks: [],
  };
  let kv: KvStore;
  try {
    kv = openSnapshotStore(snap);
  } catch (e) {
    if (e instanceof KvDamageError) {
      reportDamage(e.report, result);
      kv = salvageSnapshot(file); // the rest of the checks, on a copy with the damage salvaged away
    } else {
      if (!isDaxError(e, 'ECORRUPT') && !isDaxError(e, 'EIO')) throw e;
      result.problems.push(e.message);
      try {
        kv = salvageSnapshot(file); // e.g. an owner record no single byte explains: the rest of the checks
      } catch (again) {
        if (!isDaxError(again, 'ECORRUPT') && !isDaxError(again, 'EIO')) throw again;
        result.ok = false;
        return result;
      }
    }
  }
  try {
    checkOpened(kv, snap, result);
  } finally {
    kv.close();
  }
  result.ok = result.problems.length === 0;
  return result;
}

/** The store opened with recovery 'salvage' on a fresh private snapshot (nothing reaches the file). */
function salvageSnapshot(file: string): KvStore {
  const snap = takeSnapshot(file);
  try {
    return openMedia(snap.media, {
      formatIfEmpty: false,
      durability: 'none',
      recovery: 'salvage',
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
  } catch (e) {
    closeSnapshot(snap);
    throw e;
  }
}

function reportDamage(report: KvRecoveryReport, result: CheckResult): void {
  for (const d of report.damage) {
    const held = d.known.map((k) => `${k.op} ${keyText(k.key)} @${k.sequence}`);
    const what = {
      record: 'damaged key-value record',
      poison: 'poisoned block under key-value records',
      'media-error': 'unreadable key-value log (media error)',
    }[d.kind];
    result.problems.push(
      `${what} at offset ${d.start}..${d.end} (segment at block ${d.segment}): ${d.reason}` +
        (held.length > 0 ? `; it held ${held.slice(0, 10).join(', ')}${held.length > 10 ? ' …' : ''}` : '') +
        (d.unknown !== undefined ? `; ${d.unknown.end - d.unknown.start} bytes of it hold unknown entries` : ''),
    );
  }
  for (const k of report.lostKeys) result.lostKeys.push(keyText(k.key));
  if (report.lostKeys.length > 0)
    result.problems.push(`keys whose newest value is in the damage (lost): ${result.lostKeys.join(', ')}`);
  for (const u of report.unknownSequences)
    result.problems.push(
      `writes of unknown keys lost between sequences ${u.after || 'the start'} and ${u.before || 'the end'}: a key whose newest surviving version is older may be stale`,
    );
}

function checkOpened(kv: KvStore, snap: Snapshot, result: CheckResult): void {
  const cleanShutdown = snap.superblocks.some((c) => c.status === 'ok' && c.cleanShutdown);
  const recovery = kv.recovery;
  if (recovery !== undefined) {
    for (const c of recovery.ownerRecords.corrected) result.problems.push(`${c}, on open`);
    for (const c of recovery.objectRecords.corrected) result.problems.push(`${c} on open`);
    for (const b of recovery.restoredSegments)
      result.notes.push(`the log segment at block ${b} was restored from its SEAL (its owner record was damaged)`);
    for (const c of recovery.corrected)
      result.problems.push(
        `damaged key-value record at offset ${c.offset}: one wrong byte (${c.what}), corrected exactly on open`,
      );
    for (const reason of recovery.dropped) {
      const line = `key-value record at ${reason} (a torn tail: it and the records after it in its segment are dropped)`;
      if (cleanShutdown) result.problems.push(`damaged ${line}`);
      else result.notes.push(`torn tail after a crash: ${line}`);
    }
    if (recovery.droppedRecords > recovery.dropped.length)
      result.problems.push(`${recovery.droppedRecords - recovery.dropped.length} more torn tails`);
  }
  const values = kv.auditValues();
  for (const key of values.lost) {
    const name = keyText(key);
    if (!result.lostKeys.includes(name)) {
      result.lostKeys.push(name);
      result.notes.push(`key ${name} is marked lost (by an earlier salvage): it reads as EIO until written again`);
    }
  }
  for (const u of values.unreadable) {
    result.unreadableKeys.push(keyText(u.key));
    result.problems.push(`value of key ${keyText(u.key)}: ${u.message}`);
  }
  const space = kv.dax.recovery;
  if (space !== undefined) {
    const leaked = space.freedDeadObject + space.freedBeyondSize + space.freedDuplicate;
    if (leaked > 0)
      result.problems.push(
        `leaked blocks: ${space.freedDeadObject} owned by dead objects, ${space.freedBeyondSize} beyond their object's size, ${space.freedDuplicate} duplicate pages`,
      );
    if (space.freedStaging > 0)
      result.notes.push(
        `${space.freedStaging} staging blocks (retired, waiting for their grace period at close) are free after recovery`,
      );
  }
  kv.dax.device.forEachOwned((block, owner) => {
    if (owner === OWNER_OBJECT_TABLE || owner === OWNER_STAGING || owner === OWNER_KV_SEGMENT || owner >= MIN_OBJECT_ID)
      return;
    result.unknownOwnerBlocks.push(block);
  });
  if (result.unknownOwnerBlocks.length > 0) {
    result.problems.push(
      `leaked blocks owned by unknown owner ids: ${result.unknownOwnerBlocks.slice(0, 10).join(', ')}${result.unknownOwnerBlocks.length > 10 ? ' …' : ''}`,
    );
  }
  for (const diff of kv.dax.device.audit()) result.problems.push(`allocator vs owner table: ${diff}`);
}

export function repairStore(file: string, before: CheckResult): CheckResult {
  let freedBlocks = 0;
  const quarantineDir = `${file}.quarantine`;
  const kv = open(file, { durability: 'sync', recovery: 'salvage', keyEncoding: 'binary', valueEncoding: 'binary' });
  let recovery: KvRecoveryReport | undefined;
  const lost: string[] = [];
  try {
    recovery = kv.recovery;
    for (const k of recovery?.lostKeys ?? []) lost.push(keyText(k.key));
    for (const u of kv.auditValues().unreadable) {
      quarantineValue(kv, u.key, quarantineDir);
      kv.markLost(u.key);
      lost.push(keyText(u.key));
    }
    for (const block of before.unknownOwnerBlocks) {
      kv.dax.device.free(block);
      freedBlocks++;
    }
  } finally {
    kv.close();
  }
  const quarantine = recovery?.salvaged?.quarantine ?? (fs.existsSync(quarantineDir) ? quarantineDir : undefined);
  return {
    ...before,
    repaired: {
      quarantine,
      lostKeys: lost,
      unknownSequences: recovery?.unknownSequences ?? [],
      freedBlocks,
      after: checkStore(file),
    },
  };
}

/** The bytes of a large value that fails its checksum (as they are), into the quarantine directory. */
function quarantineValue(kv: KvStore, key: Uint8Array, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let bytes: Uint8Array;
  try {
    bytes = kv.rawLargeValue(key);
  } catch {
    return; // unreadable (poisoned): nothing to keep
  }
  fs.writeFileSync(path.join(dir, `${stamp}-value-of-${Buffer.from(key).toString('hex')}.bin`), bytes);
}

export function runCheck(file: string, opts: { repair?: boolean; json?: boolean }): number {
  let result = checkStore(file);
  if (opts.repair === true && !result.ok) result = repairStore(file, result);
  const final = result.repaired?.after ?? result;
  emit(opts.json === true, result, () => renderCheck(result));
  return final.ok ? EXIT_OK : EXIT_PROBLEMS;
}

function renderCheck(r: CheckResult): string {
  const lines = [`${r.path}: ${r.ok ? 'ok' : `${r.problems.length} problem(s)`}`];
  for (const p of r.problems) lines.push(`  problem: ${p}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  if (r.repaired !== undefined) {
    const { quarantine, lostKeys, unknownSequences, freedBlocks, after } = r.repaired;
    lines.push(
      `repair: ${lostKeys.length} key(s) lost${lostKeys.length > 0 ? ` (${lostKeys.join(', ')})` : ''}, freed ${freedBlocks} unknown-owner blocks${quarantine !== undefined ? `, damaged bytes and report in ${quarantine}/` : ''}`,
    );
    for (const u of unknownSequences)
      lines.push(
        `repair: writes of unknown keys lost between sequences ${u.after || 'the start'} and ${u.before || 'the end'} (a key whose newest surviving version is older may be stale)`,
      );
    lines.push(`after repair: ${after.ok ? 'ok' : after.problems.join('; ')}`);
  }
  return lines.join('\n');
}
