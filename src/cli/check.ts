/**
 * daxstore check PATH [--repair]: offline verification of a store file.
 *
 * Checks, all on a private copy-on-write mapping (snapshot.ts), so the file is never changed:
 *   - superblock: both copies carry the magic and a matching checksum, and agree on the sequence
 *   - owner table + bad-block list: opening validates them (ECORRUPT otherwise)
 *   - every key-value record's checksum: recovery on the copy drops records that do not
 *     validate; each dropped record is a problem (after a crash, a torn tail is expected
 *     and reported as a note instead)
 *   - allocator accounting: blocks owned by nothing reachable (dead objects, pages beyond an
 *     object's size, duplicates, unknown owners) are leaks; Device.audit() must then be empty
 * --repair opens the file for real: the open rewrites a bad superblock copy and recovery frees
 * unreachable blocks; blocks of unknown owners are freed; damaged records' bytes are saved to
 * PATH.quarantine/ and the damaged tails are overwritten (see repairStore). Records after a
 * damaged one in its segment were already lost; repair cannot bring them back. Then it
 * checks again.
 */
import fs from 'node:fs';
import { isDaxError } from '../errors.js';
import { open, type KvStore } from '../kv/index.js';
import { closeSnapshot, openSnapshotStore, superblockProblems, takeSnapshot, type Snapshot } from './snapshot.js';
import { EXIT_OK, EXIT_PROBLEMS, emit } from './output.js';

/** Owner ids that a store's own structures use (dax object table, kv segments) or objects (>= 16). */
const OWNER_OBJECT_TABLE = 1;
const OWNER_STAGING = 2;
const OWNER_KV_SEGMENT = 3;
const MIN_OBJECT_ID = 16;
const QUARANTINE_BYTES = 4096;
const REPAIR_MARKER_KEY = new TextEncoder().encode('\u{10ffff}daxstore-check-repair');

export interface CheckResult {
  path: string;
  ok: boolean;
  problems: string[];
  notes: string[];
  damagedRecordOffsets: number[];
  unknownOwnerBlocks: number[];
  repaired?: { quarantined: string[]; freedBlocks: number; compactedSegments: number; after: CheckResult };
}

export function checkStore(path: string): CheckResult {
  const snap = takeSnapshot(path);
  const result: CheckResult = {
    path,
    ok: true,
    problems: superblockProblems(snap.superblocks),
    notes: [],
    damagedRecordOffsets: [],
    unknownOwnerBlocks: [],
  };
  let kv: KvStore;
  try {
    kv = openSnapshotStore(snap);
  } catch (e) {
    if (!isDaxError(e, 'ECORRUPT')) throw e;
    result.problems.push(e.message);
    result.ok = false;
    return result;
  }
  try {
    checkOpened(kv, snap, result);
  } finally {
    kv.close();
  }
  result.ok = result.problems.length === 0;
  return result;
}

function checkOpened(kv: KvStore, snap: Snapshot, result: CheckResult): void {
  const cleanShutdown = snap.superblocks.some((c) => c.status === 'ok' && c.cleanShutdown);
  const recovery = kv.recovery;
  if (recovery !== undefined) {
    for (const reason of recovery.dropped) {
      result.damagedRecordOffsets.push(Number(/offset (\d+)/.exec(reason)?.[1] ?? -1));
      const line = `key-value record at ${reason} (it and the records after it in its segment are lost)`;
      if (cleanShutdown) result.problems.push(`damaged ${line}`);
      else result.notes.push(`torn tail after a crash: ${line}`);
    }
    if (recovery.droppedRecords > recovery.dropped.length)
      result.problems.push(`${recovery.droppedRecords - recovery.dropped.length} more damaged records`);
    if (recovery.poisonedSegments > 0)
      result.problems.push(`${recovery.poisonedSegments} segments stop at a poisoned block`);
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

export function repairStore(path: string, before: CheckResult): CheckResult {
  const snap = takeSnapshot(path);
  const quarantined = quarantine(path, snap, before.damagedRecordOffsets);
  closeSnapshot(snap);
  let freedBlocks = 0;
  let compactedSegments = 0;
  const kv = open(path, { durability: 'sync' });
  try {
    for (const block of before.unknownOwnerBlocks) {
      kv.dax.device.free(block);
      freedBlocks++;
    }
    if (before.damagedRecordOffsets.length > 0) {
      // The reopened writer resumes at the damaged record when its segment has room and
      // zeroes the tail before its first append: one put + delete of a marker key does that
      // (no key is left behind). Other damaged segments leave the log by compaction.
      kv.put(REPAIR_MARKER_KEY, new Uint8Array(0));
      kv.delete(REPAIR_MARKER_KEY);
      compactedSegments = kv.compact({ maxLiveRatio: 1 }).segmentsFreed;
    }
  } finally {
    kv.close();
  }
  return { ...before, repaired: { quarantined, freedBlocks, compactedSegments, after: checkStore(path) } };
}

function quarantine(path: string, snap: Snapshot, offsets: readonly number[]): string[] {
  if (offsets.length === 0) return [];
  const dir = `${path}.quarantine`;
  fs.mkdirSync(dir, { recursive: true });
  const bytes = new Uint8Array(snap.media.buffer);
  return offsets
    .filter((o) => o >= 0)
    .map((offset) => {
      const file = `${dir}/record-at-${offset}.bin`;
      fs.writeFileSync(file, bytes.subarray(offset, Math.min(bytes.length, offset + QUARANTINE_BYTES)));
      return file;
    });
}

export function runCheck(path: string, opts: { repair?: boolean; json?: boolean }): number {
  let result = checkStore(path);
  if (opts.repair === true && !result.ok) result = repairStore(path, result);
  const final = result.repaired?.after ?? result;
  emit(opts.json === true, result, () => renderCheck(result));
  return final.ok ? EXIT_OK : EXIT_PROBLEMS;
}

function renderCheck(r: CheckResult): string {
  const lines = [`${r.path}: ${r.ok ? 'ok' : `${r.problems.length} problem(s)`}`];
  for (const p of r.problems) lines.push(`  problem: ${p}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  if (r.repaired !== undefined) {
    const { quarantined, freedBlocks, compactedSegments, after } = r.repaired;
    lines.push(
      `repair: freed ${freedBlocks} unknown-owner blocks, compacted ${compactedSegments} segments, quarantined ${quarantined.length} records${quarantined.length > 0 ? ` in ${quarantined[0].replace(/\/[^/]*$/, '/')}` : ''}`,
    );
    lines.push(`after repair: ${after.ok ? 'ok' : after.problems.join('; ')}`);
  }
  return lines.join('\n');
}
