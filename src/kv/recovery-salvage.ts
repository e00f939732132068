/**
 * Salvage: what open({ recovery: 'salvage' }) and `daxstore check --repair` do with the damage
 * recovery found (recovery.ts), so the store serves every intact key, never an older version
 * of a lost one, and opens clean (strict) afterwards.
 *
 * Steps, in this order (each durable before the next starts):
 *   1. Quarantine (when a directory is given): the readable bytes of every damaged region and
 *      a report.json naming every lost key and unknown sequence range, written first, before
 *      anything in the store changes.
 *   2. Markers, each an entry with the sequence of the entry it stands for: for a key whose
 *      newest version is a known PUT of a damaged record, a LOST entry (layout.ts
 *      ENTRY_FLAG_LOST: reads of the key throw EIO until it is written again); for a key whose
 *      newest version is a known DEL of a damaged record, an exact copy of that DEL. Then one
 *      commit, and the index entries of lost keys move to their markers.
 *   3. Damage leaves the log: a damaged region whose blocks are readable is overwritten by one
 *      PAD record (persisted); a segment with a poisoned block or an unreadable page is
 *      evacuated (compaction.ts evacuateSegments: its readable live entries moved, then it
 *      is retired; its bad blocks stay quarantined by the device).
 * A crash in between leaves the damage in place and the markers (if any) durable: the next
 * open finds the same damage (strict refuses again, salvage does this again; a marker and
 * the entry it stands for tie on sequence and are the same statement).
 *
 * Concurrency: runs on the opener before the store is shared (no other writer, no reader).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DaxSpace } from '../dax/space.js';
import { grab, replace, unlock } from '../index/entry-lock.js';
import { BLOCK_BYTES } from '../device/layout.js';
import {
  ENTRY_DEL,
  ENTRY_FLAG_LOST,
  ENTRY_PUT,
  KIND_PUT,
  KV_KEY_PREFIX,
  RECORD_HEADER_BYTES,
  entryBytes,
} from './layout.js';
import { setEntrySequence, writeEntry, writePadRecord, type MediaViews } from './records.js';
import { ensureStageBytes, stageViews } from './record-stage.js';
import type { SegmentWriter } from './segment-writer.js';
import { keyText, type KvRecoveryReport } from './recovery.js';

export interface SalvageReport {
  /** LOST markers written (keys that now read as EIO) */
  lostMarkers: number;
  /** DEL entries of damaged records copied out (keys kept deleted) */
  deletesKept: number;
  /** damaged regions overwritten by a PAD record */
  padded: number;
  /** segments with poisoned or unreadable blocks whose live entries were moved out */
  evacuatedSegments: number;
  /** the quarantine directory written, if any */
  quarantine: string | undefined;
}

export interface SalvageContext {
  space: DaxSpace;
  views: MediaViews;
  writer: SegmentWriter;
  /** moves the live entries of these segments out and retires them (compaction.ts evacuateSegments, with the store's words) */
  evacuate: (blocks: number[]) => void;
  quarantineDir: string | undefined;
}

export function salvage(ctx: SalvageContext, report: KvRecoveryReport): SalvageReport {
  const out: SalvageReport = { lostMarkers: 0, deletesKept: 0, padded: 0, evacuatedSegments: 0, quarantine: undefined };
  if (report.damage.length === 0) return out;
  if (ctx.quarantineDir !== undefined) out.quarantine = quarantine(ctx, report, ctx.quarantineDir);
  writeMarkers(ctx, report, out);
  removeDamage(ctx, report, out);
  return out;
}

function indexKeyOf(key: Uint8Array): Uint8Array {
  const k = new Uint8Array(key.length + 1);
  k[0] = KV_KEY_PREFIX;
  k.set(key, 1);
  return k;
}

/** Step 2: one record per marker, one commit for all, then the index moves to the LOST markers. */
function writeMarkers(ctx: SalvageContext, report: KvRecoveryReport, out: SalvageReport): void {
  const { writer, space } = ctx;
  const lostAt: Array<[Uint8Array, number]> = [];
  const write = (key: Uint8Array, op: number, flags: number, sequence: number): number => {
    const k = indexKeyOf(key);
    const total = RECORD_HEADER_BYTES + entryBytes(key.length, 0);
    ensureStageBytes(total);
    writeEntry(stageViews, RECORD_HEADER_BYTES, op, k, undefined, 0, flags);
    setEntrySequence(stageViews, RECORD_HEADER_BYTES, sequence);
    const at = writer.reserve(total, false);
    writer.sealStaged(at, KIND_PUT, 1, total);
    writer.flushPending();
    return at + RECORD_HEADER_BYTES;
  };
  for (const lost of report.lostKeys) {
    lostAt.push([indexKeyOf(lost.key), write(lost.key, ENTRY_PUT, ENTRY_FLAG_LOST, lost.sequence)]);
    out.lostMarkers++;
  }
  for (const del of report.damagedDeletes) {
    write(del.key, ENTRY_DEL, 0, del.sequence);
    out.deletesKept++;
  }
  writer.commit();
  for (const [k, at] of lostAt) {
    const ref = grab(space.tree, k);
    try {
      replace(space.tree, ref, at);
    } finally {
      unlock(space.tree, ref);
    }
  }
}

/** Step 3: PAD over readable damage, evacuation of segments with unreadable blocks. */
function removeDamage(ctx: SalvageContext, report: KvRecoveryReport, out: SalvageReport): void {
  const { space, views } = ctx;
  const device = space.device;
  const evacuate = new Set<number>();
  for (const d of report.damage) {
    if (d.kind !== 'record') {
      evacuate.add(d.segment);
      continue;
    }
    const base = device.blockOffset(d.segment);
    const nonce = device.ownerOf(d.segment).index;
    writePadRecord(views, d.start, d.end - d.start, nonce, d.start - base);
    device.media.persist(d.start, d.end - d.start);
    out.padded++;
  }
  if (evacuate.size > 0) {
    ctx.evacuate([...evacuate].sort((a, b) => a - b));
    out.evacuatedSegments = evacuate.size;
  }
}

/** Step 1: the damaged bytes that can be read, and the report, under `dir`. */
function quarantine(ctx: SalvageContext, report: KvRecoveryReport, dir: string): string {
  const device = ctx.space.device;
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const d of report.damage) {
    if (d.kind === 'media-error') continue; // reading it again could fault
    const chunks: Buffer[] = [];
    for (let at = d.start; at < d.end;) {
      const blockEnd = Math.min(d.end, device.dataOffset + (device.blockAt(at) + 1) * BLOCK_BYTES);
      const w = ctx.views.at(at);
      if (!device.isPoisoned(device.blockAt(at)))
        chunks.push(Buffer.from(w.u8.subarray(at - w.base, blockEnd - w.base)));
      else chunks.push(Buffer.alloc(blockEnd - at)); // poisoned: zeros in its place
      at = blockEnd;
    }
    fs.writeFileSync(path.join(dir, `${stamp}-region-at-${d.start}.bin`), Buffer.concat(chunks));
  }
  const json = {
    damage: report.damage.map((d) => ({
      ...d,
      known: d.known.map((k) => ({ ...k, key: keyText(k.key) })),
    })),
    lostKeys: report.lostKeys.map((k) => ({ key: keyText(k.key), sequence: k.sequence })),
    damagedDeletes: report.damagedDeletes.map((k) => ({ key: keyText(k.key), sequence: k.sequence })),
    unknownSequences: report.unknownSequences,
    corrected: report.corrected,
  };
  fs.writeFileSync(path.join(dir, `${stamp}-report.json`), JSON.stringify(json, null, 2));
  return dir;
}
