/** daxstore info / dump: read-only views of a store file (on a private copy-on-write mapping: snapshot.ts). */
import { isDaxError } from '../errors.js';
import { BLOCK_BYTES, capacityBlocks, sizeForBlocks } from '../device/layout.js';
import { MsgpackCodec, parseJson, readOrderedKey } from '../kv/encodings.js';
import { hasStructuresArea, SharedStructures } from '../kv/structures.js';
import { readKvRoot, type KvRoot } from '../kv/kv-root.js';
import { SEGMENT_BYTES } from '../kv/layout.js';
import { openSnapshotStore, superblockProblems, takeSnapshot, type SuperblockCopy } from './snapshot.js';
import { EXIT_OK, emit, mib, parseKeyArg, showBytes, table } from './output.js';

/**
 * The store's own state, as its files hold it: format, encodings, space, log and key counts,
 * and what recovering it found. Nothing of the inspecting handle (its durability, its own
 * put counters) is shown: that handle exists only for this command.
 */
export function runInfo(path: string, opts: { json?: boolean }): number {
  const snap = takeSnapshot(path);
  const kv = openSnapshotStore(snap);
  try {
    const device = kv.dax.device.stats();
    const stats = kv.stats();
    const recovery = stats.recovery;
    const root = readKvRoot(kv.dax.device);
    const newest = snap.superblocks
      .filter((c) => c.status === 'ok')
      .reduce<SuperblockCopy | undefined>((a, c) => (a === undefined || c.sequence > a.sequence ? c : a), undefined);
    const logEntries = recovery?.entries ?? 0;
    // The most the store can grow to: what its owner table describes (fixed at create, sized for
    // its maxSize then). An open may cap it lower with its own maxSize; device-DAX never grows.
    const capacity = Math.max(
      snap.info.size,
      sizeForBlocks(kv.dax.device.geometry, capacityBlocks(kv.dax.device.geometry)),
    );
    const canGrow = snap.info.kind !== 'devdax' && capacity > snap.info.size;
    const data = {
      path,
      kind: snap.info.kind,
      emulated: snap.info.kind !== 'devdax' && snap.info.kind !== 'fsdax',
      flushMethod: snap.info.flushMethod,
      mapSync: snap.info.mapSync,
      alignmentBytes: snap.info.alignment,
      sizeBytes: snap.info.size,
      /** the most the store can grow to (its capacity); sizeBytes for one that cannot grow */
      maxSizeBytes: canGrow ? capacity : snap.info.size,
      canGrow,
      formatVersion: newest?.formatVersion,
      superblocks: snap.superblocks,
      superblockProblems: superblockProblems(snap.superblocks),
      lastShutdownClean: device.lastShutdownClean,
      encodings:
        root.state === 'ok'
          ? { state: 'recorded', ...root.root }
          : root.state === 'absent'
            ? { state: 'absent' }
            : { state: 'damaged', reason: root.reason },
      space: {
        blockBytes: BLOCK_BYTES,
        dataOffset: device.dataOffset,
        dataBlocks: device.dataBlocks,
        dataBytes: device.dataBlocks * BLOCK_BYTES,
        ownedBlocks: device.ownedBlocks,
        freeBlocks: device.freeBlocks,
        freeBytes: device.freeBlocks * BLOCK_BYTES,
        poisonedBlocks: device.poisonedBlocks,
        badBlocks: device.badBlocks,
        /** whole 2 MiB extents free: what new log segments can take */
        freeExtentBytes: stats.freeExtentBytes,
        /** of those, kept for deletes and compaction (puts never take them) */
        reserveBytes: stats.reserveBytes,
      },
      kv: {
        keys: stats.keys,
        segments: stats.segments,
        segmentBytes: stats.segments * SEGMENT_BYTES,
        logEntries,
        /** entries that are no key's newest value: superseded values and delete markers */
        deadEntries: Math.max(0, logEntries - stats.keys),
        sequence: stats.sequence,
        largeValueObjects: stats.largeValueObjects,
        lostKeys: recovery?.lostKeys.length ?? 0,
        /** estimates (the segment table as recovery seeds it): live entries, and what compaction can reclaim */
        liveBytes: stats.liveBytes,
        deadBytes: stats.deadBytes,
        /** room of the segment deletes and compaction write to when the store is out of space */
        priorityRoomBytes: stats.priorityRoomBytes,
      },
      recovery,
      spaceRecovery: kv.dax.recovery,
    };
    emit(opts.json === true, data, () => {
      const s = data.space;
      const k = data.kv;
      const rows: [string, string | number][] = [
        ['path', path],
        ['kind', `${snap.info.kind}${data.emulated ? ' (emulated pmem)' : ''}`],
        ['flush', `${snap.info.flushMethod}${snap.info.mapSync ? ' (MAP_SYNC)' : ''}`],
        ['format', newest === undefined ? 'no valid superblock' : `version ${newest.formatVersion}`],
        ['size', `${mib(snap.info.size)} (${snap.info.size} B), data at ${mib(s.dataOffset)}`],
        [
          'max size',
          canGrow
            ? `${mib(capacity)} (${capacity} B): grows online as data arrives`
            : `${mib(snap.info.size)}: ${snap.info.kind === 'devdax' ? 'a device-DAX store is the whole device' : 'created with a fixed size'}, never grows`,
        ],
        ...snap.superblocks.map((c): [string, string] => [
          `superblock ${c.copy}`,
          `${c.status}, sequence ${c.sequence}, ${c.cleanShutdown ? 'closed cleanly' : 'open or crashed'}`,
        ]),
        ['last shutdown', device.lastShutdownClean ? 'clean' : 'not clean (recovered)'],
        [
          'encodings',
          root.state === 'ok'
            ? `keys '${root.root.keyEncoding}', values '${root.root.valueEncoding}'`
            : root.state === 'absent'
              ? 'not recorded (raw bytes)'
              : `record damaged (${root.reason})`,
        ],
        [
          'space',
          `${s.dataBlocks} blocks of ${s.blockBytes / 1024} KiB (${mib(s.dataBytes)}): ${s.ownedBlocks} in use, ${s.freeBlocks} free (${mib(s.freeBytes)}), ${s.poisonedBlocks} poisoned`,
        ],
        ['bad blocks', s.badBlocks],
        [
          'free extents',
          `${mib(s.freeExtentBytes)} in whole 2 MiB extents, ${mib(s.reserveBytes)} of it kept for deletes and compaction`,
        ],
        ['keys', k.keys],
        [
          'log',
          `${k.logEntries} entries in ${k.segments} segment${k.segments === 1 ? '' : 's'} (${mib(k.segmentBytes)}): ${k.keys} live, ${k.deadEntries} superseded or deletes`,
        ],
        [
          'log space',
          `about ${mib(k.liveBytes)} live, ${mib(k.deadBytes)} reclaimable by compaction (estimates)${k.priorityRoomBytes > 0 ? `; ${mib(k.priorityRoomBytes)} left in the priority segment` : ''}`,
        ],
        ['sequence', k.sequence],
        ['large values', `${k.largeValueObjects} objects`],
        ...(k.lostKeys > 0 ? [['lost keys', k.lostKeys] as [string, number]] : []),
        [
          'recovery',
          recovery === undefined
            ? '-'
            : `${recovery.records} records, ${recovery.entries} entries, ${recovery.droppedRecords} dropped, ${recovery.timeMs.toFixed(1)} ms`,
        ],
      ];
      return rows.map(([name, v]) => `${name.padEnd(14)}${v}`).join('\n');
    });
    return EXIT_OK;
  } finally {
    kv.close();
  }
}

/**
 * Keys and values in key order, decoded by the encodings the store records (ordered keys and
 * json/msgpack values as JSON, utf8 as text); with `raw`, or in a store that records none, the
 * stored bytes (text when printable, else hex:).
 */
export function runDump(
  path: string,
  opts: { prefix?: string; limit?: number; json?: boolean; raw?: boolean },
): number {
  const prefix = opts.prefix === undefined ? undefined : parseKeyArg(opts.prefix);
  const snap = takeSnapshot(path);
  const kv = openSnapshotStore(snap);
  try {
    const root = readKvRoot(kv.dax.device);
    const device = kv.dax.device;
    // The snapshot is this process's own copy: nothing else writes its structures (no lock).
    const codec = new MsgpackCodec(hasStructuresArea(device) ? new SharedStructures(device, null) : undefined);
    const show = shower(opts.raw !== true && root.state === 'ok' ? root.root : undefined, opts.json === true, codec);
    const rows: Array<{ key: unknown; valueBytes: number; value: unknown }> = [];
    const bounds = {
      ...(prefix === undefined ? {} : { prefix }),
      ...(opts.limit === undefined ? {} : { limit: opts.limit }),
    };
    try {
      for (const [key, value] of kv.range(bounds))
        rows.push({ key: show.key(key), valueBytes: value.length, value: show.value(value) });
    } catch (e) {
      // A value that cannot be read (a key marked lost by salvage, a damaged large value, a
      // poisoned block) ends range(): list key by key instead, naming each such value's error.
      if (!isDaxError(e, 'EIO') && !isDaxError(e, 'ECORRUPT')) throw e;
      rows.length = 0;
      for (const key of kv.keysForCheck(bounds)) {
        try {
          const value = kv.get(key)!;
          rows.push({ key: show.key(key), valueBytes: value.length, value: show.value(value) });
        } catch (err) {
          if (!isDaxError(err)) throw err;
          rows.push({ key: show.key(key), valueBytes: 0, value: `(${err.code}: cannot be read)` });
        }
      }
    }
    emit(opts.json === true, rows, () =>
      rows.length === 0
        ? '(no keys)'
        : table([['key', 'bytes', 'value'], ...rows.map((r) => [String(r.key), r.valueBytes, String(r.value)])]),
    );
    return EXIT_OK;
  } finally {
    kv.close();
  }
}

/**
 * How dump shows a key and a value: decoded by the store's encodings (undefined: as bytes).
 * In text, decoded keys and json/msgpack values are printed as JSON; in --json output they are
 * the JSON values themselves. What JSON cannot hold: bigint as '<digits>n', bytes as 'hex:…',
 * a Map as its entries, a Set as its members. A value that does not decode is named, not fatal.
 */
function shower(
  enc: KvRoot | undefined,
  json: boolean,
  codec: MsgpackCodec,
): { key: (k: Uint8Array) => unknown; value: (v: Uint8Array) => unknown } {
  const text = (x: unknown, max = 1 << 20): string => {
    const s = JSON.stringify(x, jsonSafe) ?? String(x);
    return s.length > max ? `${s.slice(0, max)}…` : s;
  };
  const key = (k: Uint8Array): unknown => {
    if (enc?.keyEncoding === 'ordered') {
      const decoded = readOrderedKey(k, 0, k.length);
      return json ? JSON.parse(text(decoded)) : text(decoded);
    }
    if (enc?.keyEncoding === 'utf8') return Buffer.from(k).toString('utf8');
    return showBytes(k, 1 << 20);
  };
  const value = (v: Uint8Array): unknown => {
    const buf = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    let decoded: unknown;
    try {
      switch (enc?.valueEncoding) {
        case 'utf8':
          return buf.toString('utf8');
        case 'json':
          decoded = parseJson(buf.toString('utf8'), 'dump');
          break;
        case 'msgpack':
          decoded = codec.unpack(buf, 0, buf.length, 'dump');
          break;
        default:
          return showBytes(v);
      }
    } catch (e) {
      if (!isDaxError(e)) throw e;
      return `(${e.code}: not valid ${enc!.valueEncoding}: ${showBytes(v)})`;
    }
    return json ? JSON.parse(text(decoded)) : text(decoded, 64);
  };
  return { key, value };
}

function jsonSafe(this: unknown, _key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return `${v}n`;
  if (v instanceof Uint8Array) return `hex:${Buffer.from(v).toString('hex')}`;
  if (v instanceof Map) return [...v.entries()];
  if (v instanceof Set) return [...v.values()];
  return v;
}
