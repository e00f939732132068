/** daxstore info / dump: read-only views of a store file (on a private copy-on-write mapping: snapshot.ts). */
import { isDaxError } from '../errors.js';
import { openSnapshotStore, superblockProblems, takeSnapshot } from './snapshot.js';
import { EXIT_OK, emit, mib, parseKeyArg, showBytes, table } from './output.js';

export function runInfo(path: string, opts: { json?: boolean }): number {
  const snap = takeSnapshot(path);
  const kv = openSnapshotStore(snap);
  try {
    const device = kv.dax.device.stats();
    const stats = kv.stats();
    const { recovery, ...kvStats } = stats;
    const data = {
      path,
      kind: snap.info.kind,
      emulated: snap.info.kind !== 'devdax' && snap.info.kind !== 'fsdax',
      flushMethod: snap.info.flushMethod,
      mapSync: snap.info.mapSync,
      alignmentBytes: snap.info.alignment,
      sizeBytes: snap.info.size,
      superblocks: snap.superblocks,
      superblockProblems: superblockProblems(snap.superblocks),
      device,
      kv: kvStats,
      recovery,
      spaceRecovery: kv.dax.recovery,
    };
    emit(opts.json === true, data, () => {
      const rows: [string, string | number][] = [
        ['path', path],
        ['kind', `${snap.info.kind}${data.emulated ? ' (emulated pmem)' : ''}`],
        ['flush', `${snap.info.flushMethod}${snap.info.mapSync ? ' (MAP_SYNC)' : ''}`],
        ['size', `${mib(snap.info.size)} (${snap.info.size} B), data at ${device.dataOffset}`],
        ...snap.superblocks.map((c): [string, string] => [
          `superblock ${c.copy}`,
          `${c.status}, sequence ${c.sequence}, ${c.cleanShutdown ? 'closed cleanly' : 'open or crashed'}`,
        ]),
        ['last shutdown', device.lastShutdownClean ? 'clean' : 'not clean (recovered)'],
        ['blocks', JSON.stringify(deviceBlocks(device))],
        ['bad blocks', device.badBlocks],
        ['keys', stats.keys],
        ['segments', stats.segments],
        ['sequence', stats.sequence],
        [
          'recovery',
          recovery === undefined
            ? '-'
            : `${recovery.records} records, ${recovery.entries} entries, ${recovery.droppedRecords} dropped, ${recovery.timeMs.toFixed(1)} ms`,
        ],
      ];
      return rows.map(([k, v]) => `${k.padEnd(14)}${v}`).join('\n');
    });
    return EXIT_OK;
  } finally {
    kv.close();
  }
}

function deviceBlocks(stats: object): Record<string, unknown> {
  const keep = Object.entries(stats).filter(([k]) => /block/i.test(k) && k !== 'badBlocks');
  return Object.fromEntries(keep);
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
