/** daxstore info / dump: read-only views of a store file (on a private copy-on-write mapping: snapshot.ts). */
import { isDaxError } from '../errors.js';
import { BLOCK_BYTES } from '../device/layout.js';
import { readKvRoot } from '../kv/kv-root.js';
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
    const data = {
      path,
      kind: snap.info.kind,
      emulated: snap.info.kind !== 'devdax' && snap.info.kind !== 'fsdax',
      flushMethod: snap.info.flushMethod,
      mapSync: snap.info.mapSync,
      alignmentBytes: snap.info.alignment,
      sizeBytes: snap.info.size,
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
        ['keys', k.keys],
        [
          'log',
          `${k.logEntries} entries in ${k.segments} segment${k.segments === 1 ? '' : 's'} (${mib(k.segmentBytes)}): ${k.keys} live, ${k.deadEntries} superseded or deletes`,
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

export function runDump(path: string, opts: { prefix?: string; limit?: number; json?: boolean }): number {
  const prefix = opts.prefix === undefined ? undefined : parseKeyArg(opts.prefix);
  const snap = takeSnapshot(path);
  const kv = openSnapshotStore(snap);
  try {
    const rows: Array<{ key: string; valueBytes: number; value: string }> = [];
    const bounds = {
      ...(prefix === undefined ? {} : { prefix }),
      ...(opts.limit === undefined ? {} : { limit: opts.limit }),
    };
    try {
      for (const [key, value] of kv.range(bounds))
        rows.push({ key: showBytes(key, 1 << 20), valueBytes: value.length, value: showBytes(value) });
    } catch (e) {
      // A value that cannot be read (a key marked lost by salvage, a damaged large value, a
      // poisoned block) ends range(): list key by key instead, naming each such value's error.
      if (!isDaxError(e, 'EIO') && !isDaxError(e, 'ECORRUPT')) throw e;
      rows.length = 0;
      for (const key of kv.keysForCheck(bounds)) {
        try {
          const value = kv.get(key)!;
          rows.push({ key: showBytes(key, 1 << 20), valueBytes: value.length, value: showBytes(value) });
        } catch (err) {
          if (!isDaxError(err)) throw err;
          rows.push({ key: showBytes(key, 1 << 20), valueBytes: 0, value: `(${err.code}: cannot be read)` });
        }
      }
    }
    emit(opts.json === true, rows, () =>
      rows.length === 0
        ? '(no keys)'
        : table([['key', 'bytes', 'value'], ...rows.map((r) => [r.key, r.valueBytes, r.value])]),
    );
    return EXIT_OK;
  } finally {
    kv.close();
  }
}
