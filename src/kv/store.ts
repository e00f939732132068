/**
 * KvStore: a crash-consistent key-value store in persistent memory, shared by worker threads.
 *
 * Invariants
 *   - Every key in [KV_KEY_PREFIX] of the space's radix tree points at the device offset of
 *     its newest entry, a PUT inside a sealed record (layout.ts); a deleted key has no entry.
 *   - Records are freed only by compaction, whose segments are retired through the epoch: an
 *     entry offset read under a pin stays readable until the pin ends, so zero-copy views
 *     taken inside read() stay valid (R6).
 *
 * Concurrency
 *   - Writers of one key serialize on its entry lock (entry-lock.ts): grab, seal the record
 *     with the next global sequence, commit, replace/deleteLocked, unlock. The sequence is
 *     taken under the lock, so per key the log order is the lock order.
 *   - batch() and deleteRange() hold several entry locks, always taken in ascending key
 *     order (no deadlock between them); put/delete hold one. Lock order: the compaction
 *     mutex (compact() only), entry locks, then the tree lock and allocator lock (taken
 *     inside the layers below).
 *   - R4: value bytes (possibly a view of this store) are copied into the new record BEFORE
 *     the destination's entry lock is taken; only our own memory is touched under the lock.
 *   - Readers (get/getView/has/range) are lock-free under an epoch pin.
 *   - Shared words (SharedArrayBuffer `shared`, BigInt64 slot 0, Int32 slots from 2):
 *       SEQUENCE (i64 0)   past SEQ_INT_LIMIT sequences (below): last sequence handed out (Atomics.add)
 *       SEQ_BASE (f64 at byte 40)  the recovered maximum sequence, written once at open
 *       SEQ_COUNT (i32 12) sequences handed out since open while below SEQ_INT_LIMIT: the n-th
 *                          (Atomics.add returned n - 1) is SEQ_BASE + n. Taking one is an Int32
 *                          add, not a BigInt add and a BigInt -> Number runtime call on every
 *                          write. From SEQ_INT_LIMIT on, a taker gives its
 *                          increment back (so the word never wraps) and takes from SEQUENCE,
 *                          which open set to SEQ_BASE + SEQ_INT_LIMIT: every such sequence is
 *                          above every Int32 one, and each counter is monotonic, so sequences
 *                          still increase in the order they are taken (taken under the entry
 *                          lock: per key, log order = lock order).
 *       LIVE_KEYS (i32 2)  keys present        SEGMENTS (i32 3)  segments allocated
 *       DEAD (i32 4)       entries superseded   PUTS, DELETES, BATCHES (i32 5..7)
 *                          LIVE_KEYS, DEAD, PUTS, DELETES and BATCHES are each this base word
 *                          (keys found at open) plus the sum of the per-writer counters in the
 *                          progress lines (below): a writer counts into its own slot's line with
 *                          a plain read and store (count()), never a shared Atomics RMW (a
 *                          builtin call that Node 20 does not inline, and a locked instruction,
 *                          two or three per put). One writer per slot: the slot is held from the
 *                          CAS that claims it to the store that frees it (segment-writer.ts), so
 *                          the next holder's claim is ordered after the last holder's counts,
 *                          which it continues (they are never reset). Every count is made after
 *                          reserve(), so the writer holds a slot. stats() sums them (a snapshot
 *                          as of no single instant while writers run; exact once they stop).
 *       NEXT_OBJECT (i32 8) next large-value object id - KV_OBJECT_ID_BASE (Atomics.add)
 *       COMPACTION (i32 9) compaction mutex: 0 free, 1 held, 2 held with sleepers
 *       STRUCTURES_LOCK (i32 13) lock of the msgpack structures area (structures.ts)
 *       open-segment table (i32 from byte 64) and its progress words (after it): one slot per
 *                          writer, owned by segment-writer.ts (compaction reads them);
 *                          words SLOT_COUNTER_FIRST + (LIVE_KEYS..BATCHES - LIVE_KEYS) of each
 *                          slot's line are that writer's counters (above)
 *   - Large values (> LARGE_VALUE_THRESHOLD_BYTES) are DAX objects: large-values.ts has
 *     their ordering (object durable before the record; old object retired via the epoch).
 *
 * Persistence ordering ('sync'): record written, flushed, ONE drain, then published in the
 * (volatile) index; the sealed checksum is the commit point at recovery. 'group': flushed and
 * drained by a timer every GROUP_COMMIT_MS and by flushed() (batchAsync resolves at that commit); 'none': at close. See
 * segment-writer.ts for segments.
 */
import { existsSync } from 'node:fs';
import { DaxError, type DaxErrorCode, isDaxError } from '../errors.js';
import { checkOptions, describeValue, type OptionSpec } from '../options.js';
import { assert } from '../assert.js';
import { DaxSpace, type DaxSpaceHandle } from '../dax/space.js';
import type { Media } from '../device/media.js';
import { openRegionExplained } from './open-busy.js';
import { planStoreFile } from './store-file.js';
import { closeAndRemoveCreated, type MappedMedia } from '../device/region.js';
import { BLOCK_BYTES, HUGE_BLOCKS } from '../device/layout.js';
import {
  beginReplace,
  deleteLocked,
  finishReplace,
  grab,
  touchPaths,
  replace,
  unlock,
  valueNote,
  type EntryRef,
} from '../index/entry-lock.js';
import {
  ENTRY_DEL,
  ENTRY_PUT,
  KIND_BATCH,
  KIND_PUT,
  KV_KEY_PREFIX,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  ENTRY_HEADER_BYTES,
  LARGE_REF_BYTES,
  LARGE_VALUE_THRESHOLD_BYTES,
  ENTRY_FLAG_LARGE,
  ENTRY_FLAG_LOST,
  MAX_RECORD_BYTES,
  RECORD_HEADER_BYTES,
  SEAL_BYTES,
  SEGMENT_BYTES,
  entryBytes,
} from './layout.js';
import {
  checkRecord,
  entryFlags,
  entryKeyLength,
  entryValueLength,
  entryPrevious,
  entryValueOffset,
  mediaViews,
  setEntryPrevious,
  setEntrySequence,
  writeEntry,
  type MediaViews,
} from './records.js';
import { BORN, DELS, PROGRESS_WORDS, SLOT_COUNTER_FIRST, SegmentWriter, W_OWNER } from './segment-writer.js';
import { SegmentTable, entryCost, entryNote, noteCost, noteFlagged, type SegmentInfo } from './segment-table.js';
import { DEFER_LARGE_OBJECT, DEFER_SEGMENT, SWEEP_MIN, Snapshots } from './snapshots.js';
import { KvSnapshot, forgetCollected, releaseWhenCollected, type CollectClaim, type SnapshotHost } from './snapshot.js';
import { Op, isDeletion, sequenceAt, versionAtPinned } from './versions.js';
import { KvTransaction, TXN_ATTEMPTS, type TransactionHost, type TxnRange, type TxnValue } from './transaction.js';
import {
  DEFAULT_KEY_ENCODING,
  DEFAULT_VALUE_ENCODING,
  KEY_ENCODINGS,
  ORDERED_SCRATCH_BYTES,
  VALUE_ENCODINGS,
  orderedKeyBytes,
  orderedPrefixRange,
  MsgpackCodec,
  parseJson,
  readOrderedKey,
  resetPackScratch,
  valueString,
  writeOrderedKey,
  type KeyEncoding,
  type KeyInput,
  type KeyOf,
  type OrderedKey,
  type OrderedKeyPart,
  type ValueEncoding,
  type ValueInput,
  type ValueOf,
} from './encodings.js';
import { resolveEncodings, type KvRoot } from './kv-root.js';
import { reapKvWriters, type WriterReapContext } from './writer-reaper.js';
import { LAYER_KV, prepareEpochDomains } from '../index/epoch.js';
import { LOOKUP_MANY_MAX } from '../index/radix-tree.js';
import { DEATHS_WORD, holderIdOf, holderWordDead, participantId, participantTable } from '../device/participants.js';
import { ensureStageBytes, stageViews } from './record-stage.js';
import { hasStructuresArea, SharedStructures } from './structures.js';
import { isBroken, testHooks } from '../test-break.js';
import {
  compactSegmentsLocked,
  evacuateSegments,
  measureSegment,
  type CompactOptions,
  type CompactionReport,
} from './compaction.js';
import { lockWord, tryLockWord, unlockWord } from '../device/spin-lock.js';
import { isInjectedFault } from '../device/allocator.js';
import { RETIRE_DEVICE_BLOCK } from '../index/epoch.js';
import {
  CheckpointBody,
  CheckpointWrite,
  ColumnBuilder,
  CoverAhead,
  ImageBuild,
  SegmentHashes,
  CHECKPOINT_ID_FIRST,
  checkpointIds,
  logUnchangedSince,
  coverRunning,
  imageLeadBytes,
  publishBody,
  removeCheckpoint,
  movedAt,
  walkStep,
  writeCheckpoint,
  type BuiltImage,
  type CheckpointSegment,
  type CheckpointWritten,
} from './checkpoint.js';
import { keyText, recoverKv, refuseDamage, type KvRecoveryReport, type RecoveryMode } from './recovery.js';
import { salvage, type SalvageReport } from './recovery-salvage.js';
import {
  KV_OBJECT_ID_BASE,
  isLargeValueId,
  LargeObjectReaper,
  RETIRE_KV_OBJECT,
  collectOrphans,
  copyLargePinned,
  encodeLargeRef,
  largeRefAt,
  removeQuietly,
  type LargeRef,
  valueBytes,
  viewLargePinned,
  writeLargeObject,
  type OrphanReport,
} from './large-values.js';
import {
  boundKeyOf,
  boundsAfter,
  compareBytes,
  indexKeyOf,
  prefixEnd,
  scratchIndexKey,
  valueLengthOf,
  type Key,
  type Value,
} from './keys.js';

export type Durability = 'sync' | 'group' | 'none';
const DURABILITIES: readonly Durability[] = ['sync', 'group', 'none'];
/** Options of put() and delete(). */
export interface WriteOptions {
  /**
   * Write only if the key's version (getEntry().version: the sequence of the write that stored
   * its value) is this one; null: only if the key is absent (put). Else nothing is written and
   * the call returns false.
   */
  ifVersion?: number | null;
}
export interface OpenOptions<KE extends KeyEncoding = KeyEncoding, VE extends ValueEncoding = ValueEncoding> {
  /**
   * A new store: its bytes now (alone, without maxSize: a store of exactly this size that never
   * grows). An existing store: grow it to at least this many bytes at open.
   */
  size?: number;
  /**
   * The most the store may grow to, online, as data arrives (a new store's default: the size of
   * the file system it is on; fixed at create: the owner table is sized for it). An existing
   * store: at most this much of its capacity is used by this open.
   */
  maxSize?: number;
  durability?: Durability;
  /**
   * What open does when recovery finds damage (a record that had been made durable and fails
   * its check, a poisoned block under records): 'strict' (default) refuses with a
   * KvDamageError (ECORRUPT, or EIO for poison) naming the damage and the keys it may affect;
   * 'salvage' serves every intact key, marks the keys whose newest version was lost (reads
   * throw EIO), removes the damage from the log and reports all of it in stats().recovery.
   * 'full': as 'strict', but the whole log is scanned even when a checkpoint of the index
   * (written at the last clean close) could be loaded; salvage always scans the whole log.
   */
  recovery?: RecoveryMode | 'full';
  /** how keys are stored: a new store's default is 'ordered'; an existing store's is the one it was created with */
  keyEncoding?: KE;
  /** how values are stored: a new store's default is 'msgpack'; an existing store's is the one it was created with */
  valueEncoding?: VE;
  /**
   * Reclaim dead space by itself (default true): after a handle's writer opens a new log
   * segment, when free space runs low (an eighth of the store left beyond the reserve) or the
   * closed segments hold twice their live bytes (4 times in a store that cannot grow; and 8 MiB
   * dead), the emptiest segments are
   * compacted, a few at a time. A store with free space and a log within that bound does not
   * compact. false: only a write that runs
   * out of space, and compact(), reclaim. The opener's choice holds for every attached handle.
   */
  autoCompact?: boolean;
  /**
   * Write an index checkpoint at a clean close of this opener (default false): the next open
   * loads it instead of rebuilding the index from the whole log (checkpoint.ts). A checkpoint
   * in the store is loaded (after its checks) whatever this option says.
   */
  checkpoint?: boolean;
  /**
   * Bytes of log written (by every handle) after which the opener takes an index checkpoint
   * in the background, so that an open after a crash replays only the log written since
   * (rounded up to whole 2 MiB segments; 0: none while running). Default: 64 MiB or twice the
   * size the next checkpoint will have, whichever is more (so checkpoints add at most half as
   * many bytes again as the log they follow, however big the store grows). The opener's option
   * holds for the store; checkpoint() takes one at any time.
   */
  checkpointEvery?: number;
}
export interface OpenMediaOptions<
  KE extends KeyEncoding = KeyEncoding,
  VE extends ValueEncoding = ValueEncoding,
> extends Omit<OpenOptions<KE, VE>, 'size' | 'maxSize'> {
  /** format the media when it holds no daxstore (default true) */
  formatIfEmpty?: boolean;
  /** where 'salvage' recovery copies the damaged bytes it removes (default: none kept) */
  quarantineDir?: string;
}
/** The store open() gives for these encoding options (none named: the defaults' types). */
export type KvStoreOf<KE extends KeyEncoding, VE extends ValueEncoding> = KvStore<KeyOf<KE>, ValueOf<VE>>;
export type BatchOp<K = Uint8Array<ArrayBuffer>, V = Uint8Array<ArrayBuffer>> =
  { type: 'put'; key: KeyInput<K>; value: ValueInput<V> } | { type: 'del'; key: KeyInput<K> };
export interface KvRangeOptions<K = Uint8Array<ArrayBuffer>> {
  gt?: KeyInput<K>;
  gte?: KeyInput<K>;
  lt?: KeyInput<K>;
  lte?: KeyInput<K>;
  /** keys starting with these bytes (keyEncoding 'ordered': a string, or an array: a compound key's first parts) */
  prefix?: KeyInput<K> | ([K] extends [OrderedKey] ? OrderedKeyPart[] : never);
  reverse?: boolean;
  /** at most this many entries (a non-negative integer, or Infinity) */
  limit?: number;
}
export interface KvIterateOptions<K = Uint8Array<ArrayBuffer>> extends KvRangeOptions<K> {
  /** false: entries carry no key (undefined in its place; the key is never decoded) */
  keys?: boolean;
  /** false: entries carry no value (undefined in its place; the value is never read) */
  values?: boolean;
}
export interface KvHandle {
  readonly space: DaxSpaceHandle;
  readonly shared: SharedArrayBuffer;
  /** the segment table (segment-table.ts) */
  readonly segments: SharedArrayBuffer;
  /** in-flight sequences and the snapshot registry (snapshots.ts) */
  readonly snapshots: SharedArrayBuffer;
  readonly durability: Durability;
  readonly keyEncoding: KeyEncoding;
  readonly valueEncoding: ValueEncoding;
}
export interface KvStats {
  keys: number;
  segments: number;
  deadEntries: number;
  puts: number;
  deletes: number;
  batches: number;
  sequence: number;
  durability: Durability;
  /** how durability is achieved here: CPU cache flush + fence, msync, or simulated */
  persistMethod: string;
  mediaKind: string;
  freeBlocks: number;
  /** the store's bytes now (the file's size; it grows as data arrives, up to maxSize) */
  sizeBytes: number;
  /** the most the store can grow to (its maxSize; equal to sizeBytes for one that cannot grow) */
  maxSize: number;
  indexBytesPerKey: number;
  lostWakeups: number;
  recovery: KvRecoveryReport | undefined;
  /** live DAX objects holding large values (> 16 KiB), in the whole space */
  largeValueObjects: number;
  /** large-value objects removed by this handle (superseded, after their grace period) */
  largeValueObjectsRemoved: number;
  /** open only: kv objects no live key referenced (crash leftovers), removed */
  largeValueOrphansRemoved: number;
  /** bytes of the store's file or device */
  fileBytes: number;
  /** bytes of live entries in the log (each with its record header: what a copy costs); an estimate */
  liveBytes: number;
  /** bytes of superseded and deleted entries and tombstones still in the log (reclaimable); an estimate */
  deadBytes: number;
  /** log bytes compaction gave back, automatic and explicit, since open (all handles) */
  reclaimedBytes: number;
  /** compactions run since open (automatic steps, reclaims before ENOSPC and compact(); all handles) */
  compactionRuns: number;
  /** of those, automatic steps */
  autoCompactions: number;
  /** bytes of whole 2 MiB extents free now (what new log segments can take) */
  freeExtentBytes: number;
  /** of the free extent bytes, those kept for deletes and compaction (the reserve: puts never take them) */
  reserveBytes: number;
  /** room left in the priority segment, where deletes go when the store is out of space and compaction copies to */
  priorityRoomBytes: number;
  /** holders of the compaction mutex that died and were reaped since open (their writes through the priority writer finished or undone) */
  priorityReaps: number;
  /** snapshots held by every thread: db.snapshot(), open ranges, transactions in progress */
  snapshots: number;
  /** how long the oldest of them has been held (0: none; never more than its true age: snapshots.ts Ages); while held, the versions it sees are kept */
  oldestSnapshotMs: number;
  /** compacted segments and superseded large values kept for snapshots, freed when those close */
  versionsHeldForSnapshots: number;
  /** deleted keys kept in the index as tombstones for snapshots older than the delete */
  tombstones: number;
}

/** Bounds are checked as keys by the key encoding (rangeBounds); here only that they are present. */
const isBound = (): string | undefined => undefined;
const RECOVERY_MODES: readonly (RecoveryMode | 'full')[] = ['strict', 'salvage', 'full'];
const OPEN_OPTIONS: OptionSpec = {
  size: 'positiveInteger',
  autoCompact: 'boolean',
  maxSize: 'positiveInteger',
  checkpoint: 'boolean',
  checkpointEvery: 'nonNegativeInteger',
  durability: DURABILITIES,
  recovery: RECOVERY_MODES,
  keyEncoding: KEY_ENCODINGS,
  valueEncoding: VALUE_ENCODINGS,
};
const OPEN_MEDIA_OPTIONS: OptionSpec = {
  durability: DURABILITIES,
  recovery: RECOVERY_MODES,
  formatIfEmpty: 'boolean',
  autoCompact: 'boolean',
  checkpoint: 'boolean',
  checkpointEvery: 'nonNegativeInteger',
  quarantineDir: 'string',
  keyEncoding: KEY_ENCODINGS,
  valueEncoding: VALUE_ENCODINGS,
};
/** The range bounds: a delete refuses one present but undefined (checkOptions: definedIfPresent). */
const BOUND_NAMES = ['gt', 'gte', 'lt', 'lte', 'prefix'] as const;
const DELETE_RANGE_OPTIONS: OptionSpec = {
  ...Object.fromEntries(BOUND_NAMES.map((name) => [name, isBound])),
  reverse: 'boolean',
  limit: 'limit',
};
const RANGE_OPTIONS: OptionSpec = { ...DELETE_RANGE_OPTIONS, keys: 'boolean', values: 'boolean' };
const COUNT_OPTIONS: OptionSpec = DELETE_RANGE_OPTIONS;
const ATTACH_OPTIONS: OptionSpec = { keyEncoding: ['binary'], valueEncoding: ['binary'] };
const COMPACT_OPTIONS: OptionSpec = {
  maxLiveRatio: (v) => (typeof v === 'number' && v >= 0 && v <= 1 ? undefined : 'must be a number in [0, 1]'),
};

const DEFAULT_ENCODINGS: KvRoot = { keyEncoding: DEFAULT_KEY_ENCODING, valueEncoding: DEFAULT_VALUE_ENCODING };

const SEQUENCE = 0; // BigInt64 slot
const SEQ_BASE_BYTE = 40; // Float64
/** Int32 word of SEQ_COUNT in the shared buffer, and the limit of the Int32 sequence path (exported for the test of its crossing). */
export const SEQ_COUNT = 12;
export const SEQ_INT_LIMIT = 2 ** 30;
const LIVE_KEYS = 2;
const SEGMENTS = 3;
const DEAD = 4;
const PUTS = 5;
const DELETES = 6;
const BATCHES = 7;
// count(): LIVE_KEYS..BATCHES map into a slot's progress line after segment-writer.ts's words.
assert(
  SLOT_COUNTER_FIRST + BATCHES - LIVE_KEYS < W_OWNER,
  'kv counters overflow into the thread-death words of the progress line',
);
const NEXT_OBJECT = 8;
const COMPACTION = 9; // compaction mutex (spin-lock.ts word): one compaction at a time (compaction.ts)
/** Int32 word of the msgpack structures area's lock (spin-lock.ts word, structures.ts; exported for the test of a dead holder). */
export const STRUCTURES_LOCK = 13;
const CHECKPOINT_LOCK = 14; // spin-lock.ts word: one checkpoint written at a time (checkpoint())
const SEGMENTS_OPENED = 15; // log segments opened since open, all handles (Atomics.add): the background checkpoint's clock
/** checkpointEvery's default: bytes of log written between background checkpoints, at least. */
export const DEFAULT_CHECKPOINT_EVERY = 64 * 2 ** 20;
/** checkpointEvery's default: at least this many times the size the next checkpoint will have (checkpointBytes). */
const CHECKPOINT_EVERY_SCALE = 2;
/** How often the opener looks whether a background checkpoint is due, ms. */
const CHECKPOINT_POLL_MS = 100;
/** Keys one step of a running checkpoint's index walk visits (between steps the thread serves others). */
const CHECKPOINT_WALK_KEYS = 4096;
/** Log segments a background checkpoint's coverage hops on per step ahead of its capture (CoverAhead). */
const CHECKPOINT_COVER_SEGMENTS = 2;
/** Passes of that hop at most (each from where the last stopped: what writers appended meanwhile). */
const CHECKPOINT_AHEAD_PASSES = 3;
/** Segments per step of the passes after the first (most hop nothing: the step's deadline bounds it). */
const CHECKPOINT_AHEAD_AGAIN_SEGMENTS = 64;
/** Keys whose offsets and lengths a background checkpoint copies into its body per step (10 bytes each). */
const CHECKPOINT_FILL_KEYS = 131072;
/** 2 MiB extents of its body a background checkpoint writes per step (between steps the thread serves others). */
const CHECKPOINT_WRITE_EXTENTS = 1;
/**
 * A background checkpoint's step ends once it has run this long (ms, wall), at the next point
 * it looks at the clock: the walk every 256 keys, the hop ahead every segment, the columns' copy
 * every 16384 keys, the body's write every part (an extent's fault, its collapse into one huge
 * page, 256 KiB copied and flushed). Puts on the opener's thread that
 * arrive during a step wait for its end.
 */
const CHECKPOINT_STEP_MS = 1;
/**
 * Captures one running checkpoint takes at most: a compaction that retires a covered segment
 * before it is read makes it capture again (SegmentHashes.take), and one that moves a version
 * during the walk once more; past this many it gives up with EBUSY (a background one is tried
 * again after checkpointEvery more log).
 */
export const CHECKPOINT_CAPTURES = 4;
const stepDeadline = (): number => performance.now() + CHECKPOINT_STEP_MS;
const OPEN_TABLE_OFFSET = 64; // Int32[OPEN_SLOTS]: segment-writer.ts open-segment table
const MAX_WRITERS = 256;
/** Open-table slots: one per writer, and the last for the priority writer (PRIORITY_SLOT). */
const OPEN_SLOTS = MAX_WRITERS + 1;
const PRIORITY_SLOT = MAX_WRITERS;
// Int32[PROGRESS_WORDS * OPEN_SLOTS]: segment-writer.ts progress words, one cache line per slot.
const PROGRESS_OFFSET = Math.ceil((OPEN_TABLE_OFFSET + 4 * OPEN_SLOTS) / 64) * 64;
/** Float64 words of space management, after the progress lines (header: Shared words). */
const SPACE_OFFSET = PROGRESS_OFFSET + 4 * PROGRESS_WORDS * OPEN_SLOTS;
// 4 words: the priority writer's segment (block + 1, used, nonce) and whether its tail may hold
// bytes of before a crash that the next holder zeroes first (segment-writer.ts resumeShared).
const PRIORITY_STATE = 0;
const RECLAIMED_BYTES = 4;
const COMPACTION_RUNS = 5;
const RESERVE_SET = 6; // the reserve last given to Device.setReserve (under the compaction mutex)
const FRUITLESS_AT = 7; // SegmentTable.diedBytes() when a reclaim's compaction last freed nothing (0: none since)
const NEEDED_ROOM = 8; // neededCompactionRoom()'s last figure, valid while the table's changes + 1 is NEEDED_AT
const NEEDED_AT = 9;
const LOW_SPACE = 10; // 1 after reclaiming gave an ordinary write nothing: deletes go straight to the priority writer
const AUTO_OFF = 11; // 1: open({ autoCompact: false }) (set by the opener before share())
const AUTO_RUNS = 12; // automatic compaction steps taken
const PRIORITY_REAPS = 13; // holders of the priority writer that died and were reaped (writer-reaper.ts)
/** The id of the checkpoint whose body a background checkpoint writes over several steps (0: none); read and written under CHECKPOINT_LOCK. */
const CHECKPOINT_WRITING = 14;
const SPACE_WORDS = 16;
/** 16 bytes: the superblock's uuid, written by the opener (an attached handle's device has none: checkpoint() needs it). */
const UUID_OFFSET = SPACE_OFFSET + 8 * SPACE_WORDS;
const SHARED_BYTES = UUID_OFFSET + 16;
/**
 * Whole 2 MiB extents the device keeps free for priority allocations (Device.setReserve): the
 * priority writer's segments, which hold compaction's copies and the deletes made while
 * ordinary writes get ENOSPC. A put never takes them. One while the priority segment has
 * PRIORITY_SPARE_BYTES of room or more; else two (in stores of RESERVE_TWO_MIN_EXTENTS or
 * more): compaction's room must exceed a whole segment by that spare, or a store filled with
 * fully live segments could not compact any of them, and deletes spread over more segments
 * than an entry's bytes are its tombstone's would fill the room before any segment fits in it.
 */
export const RESERVE_EXTENTS = 1;
const RESERVE_FULL_EXTENTS = 2;
const RESERVE_TWO_MIN_EXTENTS = 6;
const PRIORITY_SPARE_BYTES = SEGMENT_BYTES / 8;
/**
 * Stores with fewer data extents keep no reserve: with one segment and the reserve there would
 * be no extent left for large values. Their deletes still fall back on the priority segment,
 * which then competes with puts for extents (README: Limits).
 */
const RESERVE_MIN_EXTENTS = 3;
/** Reclaim rounds (epoch collection, then compaction) before a write gives up with ENOSPC. */
const RECLAIM_ATTEMPTS = 8;
/** Segments one reclaim round frees at most (the emptiest first). */
const RECLAIM_SEGMENTS = 4;
/** After a reclaim's compaction freed nothing, the next waits until this many more bytes died. */
const RETRY_AFTER_DIED_BYTES = SEGMENT_BYTES / 8;
/** Segments a delete's reclaim round may compact (segment-table order, emptiest first) to get compaction its room back. */
const TREADMILL_SEGMENTS = 64;
/** A reclaim round for a put compacts only segments at most this live (more moves too much for what it frees). */
const RECLAIM_MAX_LIVE_RATIO = 0.9;
/**
 * What the segment table's estimates allow for the end of a segment of copies left unused
 * (the copy that does not fit starts the next segment; compaction itself checks each
 * segment's largest entry).
 */
const COPY_SLACK_BYTES = 1024;
/** Spare compaction room (spareCompactionRoom) a delete keeps, compacting first, before it adds a record to the priority segment. */
const DELETE_SLACK_BYTES = 4096;
/** How long a reclaim round waits for other threads' pins to let retired space go. */
const RECLAIM_WAIT_MS = 50;
/** Segments one automatic compaction step frees at most (the emptiest first): a step costs a bounded copy. */
const AUTO_SEGMENTS = 2;
/** An automatic step compacts segments at most this live when the closed log's amplification is high... */
const AUTO_MAX_LIVE_RATIO = 0.5;
/** ...and at most this live when free extents run low. */
const AUTO_LOW_SPACE_LIVE_RATIO = 0.75;
/**
 * Automatic compaction's triggers (spacePressure). Space pressure: the free extents an
 * ordinary write may take (beyond the reserve) are down to this fraction of the store's
 * extents, or to AUTO_LOW_WATER_MIN. A store with free space does not compact for it.
 */
const LOW_WATER_FRACTION = 1 / 8;
const AUTO_LOW_WATER_MIN = 2;
/**
 * Space amplification: the closed segments hold this many times their live bytes (dead bytes
 * at least AUTO_AMPLIFICATION - 1 times the live ones) and at least AUTO_MIN_DEAD_SEGMENTS
 * segments of dead bytes. In a store that can grow, the log stays within twice its live bytes
 * plus the fixed overhead (those segments, the open ones), and growth with it
 * (GROW_MAX_DEAD_RATIO). A store that cannot grow has all its bytes already: compacting early
 * frees none of them, and its bound (AUTO_AMPLIFICATION_FIXED) only limits what open scans.
 */
export const AUTO_AMPLIFICATION = 2;
export const AUTO_AMPLIFICATION_FIXED = 4;
export const AUTO_MIN_DEAD_SEGMENTS = 4;
/**
 * A full store that can grow compacts first while its closed log's dead bytes are more than
 * this fraction of its live ones (and GROW_MIN_DEAD_SEGMENTS segments): it grows only when
 * its log is at most 1.5 times its live bytes, and a growth step (a quarter of the store,
 * Device.grow) then leaves it below twice them. Garbage does not grow a store.
 */
export const GROW_MAX_DEAD_RATIO = 1 / 2;
const GROW_MIN_DEAD_SEGMENTS = 2;
const GROUP_COMMIT_MS = 2;
/** getMany: keys looked up under one epoch pin (a long array does not hold reclamation back for its whole length). */
/** getCount(): index leaves walked under one epoch pin. */
const COUNT_BATCH = 4096;
const SCAN_BATCH = 128;
/** Leaves a tombstone sweep visits per pin. */
const SWEEP_BATCH = 1024;
/**
 * range() reads ahead in batches that double from the first to the largest: a short or
 * early-abandoned range copies few entries; a long one pays the per-batch costs (a descent to
 * the resume key, one buffer allocation, a pin) once per 512 entries (docs/PERFORMANCE.md). A
 * range with a limit starts with min(limit, the largest): its caller said how far it reads.
 */
const RANGE_BATCH_FIRST = 64;
const RANGE_BATCH_MAX = 512;
const COPY_SLAB_BYTES = 16384;
/** The slab a transaction's buffered keys and values are copied into (txnBytes); larger copies get their own. */
const TXN_SLAB_BYTES = 16384;
const LOWEST = Uint8Array.of(KV_KEY_PREFIX);
const BEYOND = Uint8Array.of(KV_KEY_PREFIX + 1);

export class KvStore<K = Uint8Array<ArrayBuffer>, V = Uint8Array<ArrayBuffer>> {
  private readonly views: MediaViews;
  private readonly writer: SegmentWriter;
  /**
   * This thread's instance of the store's one priority writer (PRIORITY_SLOT): used only with
   * the COMPACTION mutex held (withPriorityWriter), its segment's state handed over in
   * shared words (PRIORITY_STATE).
   */
  private readonly priorityWriter: SegmentWriter;
  /** The writer the operation in progress appends to: `writer`, or `priorityWriter` inside withPriorityWriter. */
  private active: SegmentWriter;
  private readonly spaceWords: Float64Array;
  /** This handle's writer opened a segment since the last automatic compaction check. */
  private segmentOpened = false;
  /** Whether this handle's puts mark the entries they supersede dead (publishPutLocked): once it has compacted. */
  private putsMarkDead = false;
  private readonly table: SegmentTable;
  private readonly i32: Int32Array;
  private readonly openTable: Int32Array;
  private readonly progress: Int32Array;
  private readonly seq: BigInt64Array;
  private readonly seqBaseWord: Float64Array;
  private groupTimer: NodeJS.Timeout | undefined;
  /** batchAsync callers waiting for the next group commit ('group' only). */
  private readonly groupWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  /** Scratch index key for lookups (get/has/getView): no allocation per call; views by length. */
  private readonly lookupScratch = Buffer.allocUnsafeSlow(ORDERED_SCRATCH_BYTES);
  private readonly lookupViews: Uint8Array[] = [];
  /**
   * put's own scratch index key (not the lookup one): grab() may alias it in the EntryRef, so
   * it must stay unchanged while put holds the entry lock; put is synchronous and takes one
   * lock, so the next put (the only other writer of this scratch) starts after the unlock.
   */
  private readonly putScratch = Buffer.allocUnsafeSlow(ORDERED_SCRATCH_BYTES);
  private readonly putViews: Uint8Array[] = [];
  private isClosed = false;
  /**
   * get()'s copies of small values are carved from this slab, like Buffer.allocUnsafe's pool
   * but with ONE typed-array view per copy (allocUnsafe makes a Buffer view, and a plain
   * Uint8Array needs a second). A copy the caller keeps keeps its slab (16 KiB) alive. A slab
   * is an ArrayBuffer of its own (a calloc and V8's bookkeeping, about a microsecond): one per
   * 16 KiB of copies.
   */
  private copySlab = new Uint8Array(COPY_SLAB_BYTES);
  /** copySlab.buffer, kept: the getter is a builtin call, and get makes a view of it per copy. */
  private copySlabBuffer = this.copySlab.buffer;
  private copySlab32 = new Uint32Array(this.copySlabBuffer);
  private copySlabUsed = 0;
  /**
   * The running transaction's copies of the keys and values it buffers (txnBytes): views into
   * this slab, reset at each attempt (they are valid until the transaction ends, as documented).
   * A full slab is replaced, never reused, while views of it may live.
   */
  private txnSlab = new ArrayBuffer(TXN_SLAB_BYTES);
  private txnSlabUsed = 0;
  /**
   * The views txnBytes made of txnSlab, by offset / 8: a later transaction that takes the same
   * bytes at the same offset (the slab is reset at each attempt) gets the same view again
   * instead of a new one. A view is only ever handed to one transaction at a time (offsets
   * grow within an attempt), and what it shows after that transaction ended was never
   * promised (its bytes are the slab's, reused). Replaced with the slab.
   */
  private txnViews: Array<Uint8Array | undefined> = new Array(TXN_SLAB_BYTES >>> 3);
  /** Sink of touchEntriesPinned's loads. */
  private touched = 0;
  /** getMany's batch (made at its first call). */
  private manyBatch: ManyBatch | undefined = undefined;
  private readonly reaper: LargeObjectReaper;
  /** In-flight sequences and this handle's snapshots (snapshots.ts). */
  private readonly snaps: Snapshots;
  /** Deferred frees the shared table had no room for (retireOrDefer), tried again at each drain. */
  private readonly deferredHere: Array<{ kind: number; what: number; stamp: number }> = [];
  /** The reads snapshots, ranges and transactions make through this handle (snapshot.ts, transaction.ts). */
  private readonly host: TransactionHost;
  /**
   * This handle's part of a participant's reap (EpochDomain.onDeath; writer-reaper.ts),
   * unregistered at close(): a thread whose store handles are all closed must not complete a
   * reap without the store's part.
   */
  private readonly onDeath: (id: number) => void;
  /** A transactionSync callback is running on this handle (they do not nest). */
  private inTransaction = false;
  /** lastSequence as a function made once (snaps.register reads it; an arrow per snapshot is an allocation). */
  private readonly readLastSequence = (): number => this.lastSequence();
  private readonly backoff = new Int32Array(new SharedArrayBuffer(4));
  /** @internal What open found about large-value objects (opener only). */
  largeValuesAtOpen: OrphanReport | undefined;

  /** Keys are bytes as given ('binary') / values are bytes as given: the paths with no encoder. */
  private readonly rawKeys: boolean;
  private readonly rawValues: boolean;
  /** this handle's msgpack encoder (valueEncoding 'msgpack' only) */
  private readonly msgpack: MsgpackCodec | undefined;

  private constructor(
    private readonly space: DaxSpace,
    shared: SharedArrayBuffer,
    segments: SharedArrayBuffer,
    snapshots: SharedArrayBuffer,
    readonly durability: Durability,
    private readonly opener: boolean,
    readonly recovery: KvRecoveryReport | undefined,
    /** how this handle encodes keys and values (the store's own, or 'binary' for the raw bytes) */
    readonly keyEncoding: KeyEncoding,
    readonly valueEncoding: ValueEncoding,
  ) {
    this.rawKeys = keyEncoding === 'binary';
    this.rawValues = valueEncoding === 'binary';
    this.views = mediaViews(space.device.media.buffer);
    this.i32 = new Int32Array(shared);
    if (valueEncoding === 'msgpack')
      this.msgpack = new MsgpackCodec(
        hasStructuresArea(space.device)
          ? new SharedStructures(space.device, { words: this.i32, index: STRUCTURES_LOCK })
          : undefined,
      );
    this.seq = new BigInt64Array(shared, 0, 1);
    this.seqBaseWord = new Float64Array(shared, SEQ_BASE_BYTE, 1);
    this.openTable = new Int32Array(shared, OPEN_TABLE_OFFSET, OPEN_SLOTS);
    this.progress = new Int32Array(shared, PROGRESS_OFFSET, PROGRESS_WORDS * OPEN_SLOTS);
    this.spaceWords = new Float64Array(shared, SPACE_OFFSET, SPACE_WORDS);
    this.table = new SegmentTable(space.device.dataOffset, space.device.capacityBlocks, segments);
    const onSegmentOpened = (): void => void Atomics.add(this.i32, SEGMENTS_OPENED, 1);
    const table = this.table;
    const onOwnSegmentOpened = (): void => {
      this.segmentOpened = true;
      onSegmentOpened();
    };
    // The writers count the segments they name (SEGMENTS) as they name them (segment-writer.ts).
    const segmentCount = { words: this.i32, at: SEGMENTS };
    this.writer = new SegmentWriter(space.device, this.views, onOwnSegmentOpened, this.openTable, this.progress, {
      table,
      segmentCount,
    });
    this.priorityWriter = new SegmentWriter(space.device, this.views, onSegmentOpened, this.openTable, this.progress, {
      priority: true,
      fixedSlot: PRIORITY_SLOT,
      table,
      segmentCount,
    });
    this.active = this.writer;
    this.reaper = new LargeObjectReaper(space);
    const reapContext: WriterReapContext = {
      space,
      views: this.views,
      openTable: this.openTable,
      progress: this.progress,
      count: (slot, word, delta) => {
        const i = slot * PROGRESS_WORDS + SLOT_COUNTER_FIRST + word - LIVE_KEYS;
        this.progress[i] = (this.progress[i] + delta) | 0;
      },
      // The superseding record's sequence is not at hand: the last one bounds it from above (kept for every older snapshot).
      retireLarge: (oldAt) => this.supersededLocked(oldAt, this.lastSequence() + 1),
      keepTombstones: () => this.snaps.anyHeld(),
      isDeletion: (at) => isDeletion(this.views, at),
      addTombstones: (delta) => this.snaps.addTombstones(delta),
      prioritySlot: PRIORITY_SLOT,
      priorityParked: () => [
        this.spaceWords[PRIORITY_STATE],
        this.spaceWords[PRIORITY_STATE + 1],
        this.spaceWords[PRIORITY_STATE + 2],
      ],
      priorityReaped: (word, used, nonce) => {
        this.spaceWords[PRIORITY_STATE] = word;
        this.spaceWords[PRIORITY_STATE + 1] = used;
        this.spaceWords[PRIORITY_STATE + 2] = nonce;
        if (word === 0) this.spaceWords[PRIORITY_STATE + 3] = 0; // no segment: no tail (else the flag stays: cleaning it is idempotent)
        this.spaceWords[RESERVE_SET] = -1; // the dead holder may have died setting it: the next park sets it again
        this.spaceWords[PRIORITY_REAPS]++;
      },
      segmentLeft: (slot, block, used) => {
        const line = slot * PROGRESS_WORDS;
        if (block >= 0) {
          const e = block / HUGE_BLOCKS;
          if (!this.table.isSegment(e)) this.table.opened(e); // died before the table learned of it
          this.table.left(e, used, this.progress[line + BORN], this.progress[line + DELS]);
        }
        this.progress[line + BORN] = 0;
        this.progress[line + DELS] = 0;
      },
      unnamedSegmentFreed: (e) => {
        if (this.table.isSegment(e)) this.table.freed(e);
      },
      liveKeys: LIVE_KEYS,
      dead: DEAD,
    };
    this.onDeath = (id) => {
      if (this.isClosed || this.space.closed) return;
      reapKvWriters(reapContext, id);
      // After its record in flight is published or undone: snapshots may read past its mark.
      this.snaps.reapDead(id);
    };
    space.epoch.onDeath(LAYER_KV, 10, this.onDeath);
    this.snaps = new Snapshots(
      snapshots,
      () => this.seqBaseWord[0],
      (id) => this.space.epoch.reap(id),
    );
    this.host = {
      registerSnapshot: (op) => this.registerSnapshot(op),
      releaseSnapshot: (S) => this.releaseSnapshot(S),
      getAt: (key, S, op) => this.getAt(key, S, op, false),
      getKeyAt: (k, S, op, view) => this.getKeyAt(k, S, op, view),
      versionKeyAt: (k, S, op) => this.versionKeyAt(k, S, op),
      viewAt: (key, S, op) => this.getAt(key, S, op, true) as Uint8Array | undefined,
      versionAt: (key, S, op) => this.versionOf(key, S, op),
      rangeIn: (opts, snapshot) => this.rangeAt(opts, snapshot),
      checkOpen: (op) => this.checkOpen(op),
      rangeForTransaction: (opts, S) => this.rangeForTransaction(opts, S),
      encodeKey: (key, op) => this.txnKey(key, op),
      encodeValue: (value, op) => this.valueBytesOf(value, op),
      decodeKey: (bytes) => this.keyOfBytes(bytes),
      decodeValue: (bytes, op) =>
        this.rawValues
          ? new Uint8Array(bytes)
          : this.decodeValue(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), 0, bytes.length, op),
    };
  }

  /** Opens the store at `path`, creating it (opts.size bytes) when absent. A file that is not a store: ENOTSTORE. */
  static open<
    KE extends KeyEncoding = typeof DEFAULT_KEY_ENCODING,
    VE extends ValueEncoding = typeof DEFAULT_VALUE_ENCODING,
  >(path: string, options?: OpenOptions<KE, VE>): KvStoreOf<KE, VE> {
    if (typeof path !== 'string' || path.length === 0)
      throw new DaxError('EINVAL', `open: path must be a non-empty string, got ${describeValue(path)}`);
    const opts = checkOptions<OpenOptions>('open', options, OPEN_OPTIONS);
    const durability = opts.durability ?? 'sync';
    const mode = opts.recovery ?? 'strict';
    const start = performance.now();
    prepareEpochDomains(); // the kernel's wait in it overlaps the map and the device's open
    const create = !existsSync(path);
    const plan = planStoreFile(path, create, opts.size, opts.maxSize, MIN_STORE_BYTES);
    const media = openRegionExplained(path, plan.region);
    const mapMs = performance.now() - start;
    try {
      if (media.created) testHooks.kvCreated?.(path);
      const db = KvStore.fromSpace(
        DaxSpace.openMedia(media, {
          formatIfEmpty: media.created,
          salvage: mode === 'salvage',
          maxBytes: plan.maxBytes,
          minBytes: plan.minBytes,
        }),
        durability,
        opts,
        { mode, quarantineDir: `${path}.quarantine` },
        opts.autoCompact ?? true,
        opts.checkpoint ?? true,
        opts.checkpointEvery,
      ) as KvStore;
      const o = db.recovery!.openMs;
      o.map = mapMs;
      o.total = performance.now() - start;
      return db as KvStoreOf<KE, VE>;
    } catch (e) {
      abandonOpen(media); // a failed create leaves no file behind
      throw e;
    }
  }

  /** Opens (formatting when it holds no store) a store on any Media, e.g. SimMedia in tests. */
  static openMedia<
    KE extends KeyEncoding = typeof DEFAULT_KEY_ENCODING,
    VE extends ValueEncoding = typeof DEFAULT_VALUE_ENCODING,
  >(media: Media, options?: OpenMediaOptions<KE, VE>): KvStoreOf<KE, VE> {
    const opts = checkOptions<OpenMediaOptions>('openMedia', options, OPEN_MEDIA_OPTIONS);
    if (media === null || typeof media !== 'object' || !(media.buffer instanceof SharedArrayBuffer))
      throw new DaxError(
        'EINVAL',
        `openMedia: media must be a Media (openRegion, createSimMedia), got ${describeValue(media)}`,
      );
    return KvStore.fromSpace(
      DaxSpace.openMedia(media, {
        formatIfEmpty: opts.formatIfEmpty ?? true,
        salvage: (opts.recovery ?? 'strict') === 'salvage',
      }),
      opts.durability ?? 'sync',
      opts,
      { mode: opts.recovery ?? 'strict', quarantineDir: opts.quarantineDir },
      opts.autoCompact ?? true,
      opts.checkpoint ?? true,
      opts.checkpointEvery,
    );
  }

  private static fromSpace<KS>(
    space: DaxSpace,
    durability: Durability,
    wanted: Partial<KvRoot>,
    damage: { mode: RecoveryMode | 'full'; quarantineDir: string | undefined },
    autoCompact: boolean,
    checkpoint: boolean,
    checkpointEvery: number | undefined,
  ): KS {
    const start = performance.now();
    try {
      const views = mediaViews(space.device.media.buffer);
      const table = new SegmentTable(space.device.dataOffset, space.device.capacityBlocks); // extents the store may grow to
      const mode: RecoveryMode = damage.mode === 'full' ? 'strict' : damage.mode;
      const report = recoverKv(space, views, mode, table, { uuid: space.device.uuid, full: damage.mode === 'full' });
      // Checkpoints that failed their checks are garbage: removed (durably) before anything is written.
      for (const id of report.checkpoint?.remove ?? []) removeCheckpoint(space, id);
      if (mode === 'strict') refuseDamage(space.device.media.path, report);
      const enc = resolveEncodings(space.device, wanted, DEFAULT_ENCODINGS, true); // before any record is written
      const shared = new SharedArrayBuffer(SHARED_BYTES);
      const store = new KvStore(
        space,
        shared,
        table.state,
        Snapshots.create(),
        durability,
        true,
        report,
        enc.keyEncoding,
        enc.valueEncoding,
      );
      store.seqBaseWord[0] = report.maxSequence; // before share(): attached handles read it after
      store.seq[SEQUENCE] = BigInt(report.maxSequence + SEQ_INT_LIMIT);
      store.i32[LIVE_KEYS] = report.keys;
      store.i32[SEGMENTS] = report.segments;
      store.spaceWords[RESERVE_SET] = -1;
      store.spaceWords[AUTO_OFF] = autoCompact ? 0 : 1;
      const uuid = space.device.uuid;
      if (uuid !== undefined) new Uint8Array(shared, UUID_OFFSET, 16).set(uuid);
      store.checkpointOnClose = checkpoint;
      store.checkpointBasis = loadedBasis(space, report);
      store.startBackgroundCheckpoints(checkpointEvery);
      // The recovered segment with the most room: the opener's writer appends to it when it is
      // at most half used. In a store that keeps a reserve but has fewer free extents than a
      // store without a priority segment keeps (closed or crashed full: the reserve went to the
      // priority segment) it goes to the priority writer instead, whatever its room: that room
      // is what deletes and compaction have, as the reserve was before.
      const resume = report.resume;
      if (
        resume !== undefined &&
        store.dataExtents >= RESERVE_MIN_EXTENTS &&
        space.device.stats().freeExtents < store.reserveFor(0)
      )
        store.priorityWriter.adoptShared(
          resume.base,
          resume.used,
          resume.nonce,
          store.spaceWords.subarray(PRIORITY_STATE, PRIORITY_STATE + 4),
        );
      else if (resume !== undefined && resume.used <= SEGMENT_BYTES / 2)
        store.writer.adopt(resume.base, resume.used, resume.nonce);
      store.setReserve(store.priorityWriter.room);
      if (report.damage.length > 0) report.salvaged = store.salvageDamage(report, damage.quarantineDir);
      const orphans = collectOrphans(space, views); // after salvage: a lost large value's object is an orphan
      store.largeValuesAtOpen = orphans;
      store.i32[NEXT_OBJECT] = orphans.nextId - KV_OBJECT_ID_BASE;
      const end = performance.now();
      report.openMs = {
        total:
          end -
          start +
          (space.recovery?.deviceMs ?? 0) +
          (space.recovery?.structuresMs ?? 0) +
          (space.recovery?.timeMs ?? 0),
        map: 0,
        device: space.recovery?.deviceMs ?? 0,
        structures: space.recovery?.structuresMs ?? 0,
        space: space.recovery?.timeMs ?? 0,
        setup: end - start - report.timeMs,
      };
      return store as KS;
    } catch (e) {
      space.close();
      throw e;
    }
  }

  private salvageDamage(report: KvRecoveryReport, quarantineDir: string | undefined): SalvageReport {
    const result = salvage(
      {
        space: this.space,
        views: this.views,
        writer: this.writer,
        quarantineDir,
        evacuate: (blocks) => {
          const r = this.withPriorityWriter((pw) =>
            evacuateSegments(this.space, this.views, pw, this.openTable, this.progress, this.table, blocks),
          );
          Atomics.sub(this.i32, SEGMENTS, r.segmentsFreed);
          this.reapLarge();
        },
      },
      report,
    );
    return result;
  }

  /** A handle to post to a worker: attach(handle) there gives the same store. */
  share(): KvHandle {
    this.checkOpen('share');
    return {
      space: this.space.share(),
      shared: this.i32.buffer as SharedArrayBuffer,
      segments: this.table.state,
      snapshots: this.snaps.buffer,
      durability: this.durability,
      keyEncoding: this.keyEncoding,
      valueEncoding: this.valueEncoding,
    };
  }

  /**
   * The store behind a handle from share(), in another thread, with the sharer's encodings
   * ('binary' in options: the raw bytes instead). Anything but such a handle: EINVAL.
   */
  static attach<K = any, V = any>(
    handle: KvHandle,
    options?: { keyEncoding?: 'binary'; valueEncoding?: 'binary' },
  ): KvStore<K, V> {
    const opts = checkOptions<{ keyEncoding?: 'binary'; valueEncoding?: 'binary' }>('attach', options, ATTACH_OPTIONS);
    const h = handle as Partial<KvHandle> | null;
    if (
      h === null ||
      typeof h !== 'object' ||
      !(h.shared instanceof SharedArrayBuffer) ||
      h.shared.byteLength !== SHARED_BYTES ||
      !(h.snapshots instanceof SharedArrayBuffer) ||
      h.space === null ||
      typeof h.space !== 'object' ||
      !DURABILITIES.includes(h.durability as Durability) ||
      !KEY_ENCODINGS.includes(h.keyEncoding as KeyEncoding) ||
      !VALUE_ENCODINGS.includes(h.valueEncoding as ValueEncoding)
    )
      throw new DaxError(
        'EINVAL',
        `attach: the argument must be a handle from db.share(), got ${describeValue(handle)}`,
      );
    let space: DaxSpace;
    try {
      space = DaxSpace.attach(h.space);
    } catch (e) {
      if (isDaxError(e)) throw e;
      throw new DaxError('EINVAL', `attach: the handle's space is not one from db.share()`, { cause: e });
    }
    return new KvStore<K, V>(
      space,
      h.shared,
      h.segments!,
      h.snapshots,
      h.durability!,
      false,
      undefined,
      opts.keyEncoding ?? h.keyEncoding!,
      opts.valueEncoding ?? h.valueEncoding!,
    );
  }

  // ---- reads -------------------------------------------------------------------------

  /** A copy of the value of `key`, or undefined. EIO when its record is on a poisoned block. */
  get(key: KeyInput<K>): V | undefined {
    this.checkOpen('get');
    const k = this.lookupKey(key, 'get');
    const epoch = this.space.epoch;
    epoch.pin();
    try {
      const at = this.space.tree.lookupPinned(k);
      return at === undefined ? undefined : this.valuePinned(at, 'get'); // undefined for a tombstone (a DEL)
    } finally {
      epoch.unpin();
    }
  }

  /**
   * The values of `keys`, in their order (undefined where a key is absent): get() of each,
   * with one epoch pin per GET_MANY_BATCH keys, looked up in batches of LOOKUP_MANY_MAX: a
   * batch's index descents walk together (radix-tree.ts lookupManyPinned) and its entry headers
   * are loaded together before any value is decoded, so the cache misses of different keys
   * overlap. Not a snapshot: each value is its key's newest when it is read.
   */
  getMany(keys: readonly KeyInput<K>[]): Array<V | undefined> {
    this.checkOpen('getMany');
    if (!Array.isArray(keys))
      throw new DaxError('EINVAL', `getMany: keys must be an array, got ${describeValue(keys)}`);
    const out: Array<V | undefined> = new Array(keys.length);
    const epoch = this.space.epoch;
    const tree = this.space.tree;
    const batch = (this.manyBatch ??= newManyBatch());
    for (let pinned = 0; pinned < keys.length; pinned += GET_MANY_BATCH) {
      const end = Math.min(keys.length, pinned + GET_MANY_BATCH);
      epoch.pin();
      try {
        for (let from = pinned; from < end; from += LOOKUP_MANY_MAX) {
          const n = Math.min(end - from, LOOKUP_MANY_MAX);
          for (let j = 0; j < n; j++) {
            const k = this.lookupKey(keys[from + j], `getMany key ${from + j}`);
            const to = j * MANY_KEY_ROOM;
            for (let i = 0; i < k.length; i++) batch.slab[to + i] = k[i];
            batch.keys[j] = batch.slab.subarray(to, to + k.length);
          }
          tree.lookupManyPinned(batch.keys, n, batch.found);
          this.touchEntriesAtPinned(batch.found, n);
          for (let j = 0; j < n; j++) {
            const at = batch.found[j];
            out[from + j] = at < 0 ? undefined : this.valuePinned(at, 'getMany');
          }
        }
      } finally {
        epoch.unpin();
      }
    }
    return out;
  }

  /** Loads the header word of each entry at ats[0..n) (-1: none), all before any is used: their misses overlap. Caller pinned. */
  private touchEntriesAtPinned(ats: Float64Array, n: number): void {
    if (this.space.device.poisonedBlocks !== 0) return;
    const views = this.views;
    let touched = 0;
    for (let j = 0; j < n; j++) {
      const at = ats[j];
      if (at < 0) continue;
      const v = views.at(at);
      touched += v.u32[(at - v.base) / 4];
    }
    this.touched = touched; // a use, so the loads are not dead code
  }

  /** The value at entry `at`, decoded by this handle's value encoding (caller pinned). */
  private valuePinned(at: number, op: string): V | undefined {
    // Each reader returns undefined for a tombstone (a DEL kept in the index for snapshots).
    return (this.rawValues ? this.valueCopyPinned(at, op) : this.decodeValuePinned(at, op)) as V;
  }

  /** The value at entry `at` decoded straight from the record (no copy of its bytes is kept), undefined for a DEL. Caller pinned. */
  private decodeValuePinned(at: number, op: string): unknown {
    const v = this.views.at(at);
    const u32 = v.u32;
    const w = (at - v.base) / 4;
    if ((u32[w] & Op.MASK) === Op.DEL) return undefined;
    const start = at - v.base + ENTRY_HEADER_BYTES + (u32[w] & 0xffff); // in the window
    const length = u32[w + 1];
    this.checkPoisonPinned(at, start + v.base + length, op);
    if (u32[w] >>> 24 !== 0) {
      const bytes = copyLargePinned(this.space, this.largeRefPinned(at, op), op);
      return this.decodeValue(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), 0, bytes.length, op);
    }
    if (this.msgpack !== undefined) return this.msgpack.unpackWords(u32, start, length, op);
    return this.decodeValue(v.buf, start, length, op);
  }

  private decodeValue(buf: Buffer, start: number, length: number, op: string): unknown {
    switch (this.valueEncoding) {
      case 'msgpack':
        return this.msgpack!.unpack(buf, start, length, op);
      case 'utf8':
        return buf.toString('utf8', start, start + length);
      case 'json':
        return parseJson(buf.toString('utf8', start, start + length), op);
      default:
        return buf.subarray(start, start + length).slice();
    }
  }

  /** The key of entry `at`, decoded by this handle's key encoding (an own copy). Caller pinned. */
  private keyPinned(at: number): K {
    const v = this.views.at(at);
    const keyLength = v.u32[(at - v.base) / 4] & 0xffff;
    const start = at - v.base + ENTRY_HEADER_BYTES; // in the window
    switch (this.keyEncoding) {
      case 'ordered':
        return readOrderedKey(v.u8, start, keyLength) as K;
      case 'utf8':
        return v.buf.toString('utf8', start, start + keyLength) as K;
      default:
        return v.u8.slice(start, start + keyLength) as K;
    }
  }

  /** Zero-copy view of the value of `key`; only inside read(), valid until read() returns. */
  getView(key: KeyInput<K>): Uint8Array | undefined {
    this.checkOpen('getView');
    if (!this.space.epoch.isPinned())
      throw new DaxError(
        'EINVAL',
        'getView: call it inside db.read(() => ...): a view is valid only while the read guard is held',
      );
    const at = this.space.tree.lookupPinned(this.lookupKey(key, 'getView'));
    return at === undefined ? undefined : this.valueSlicePinned(at, 'getView');
  }

  /**
   * A snapshot of the store as it is now (snapshot.ts KvSnapshot): its reads see every write
   * acknowledged before this call and nothing written after, from any thread. Taking one copies
   * nothing; close() it (or `using`): while held, the versions it can see are kept.
   */
  snapshot(): KvSnapshot<K, V> {
    return new KvSnapshot<K, V>(this.host, this.registerSnapshot('snapshot'));
  }

  /** The value of key and its version (the sequence of the write that stored it), or undefined. */
  getEntry(key: KeyInput<K>): { value: V; version: number } | undefined {
    this.checkOpen('getEntry');
    const k = this.lookupKey(key, 'getEntry');
    const epoch = this.space.epoch;
    epoch.pin();
    try {
      const at = this.space.tree.lookupPinned(k);
      if (at === undefined || isDeletion(this.views, at)) return undefined;
      return { value: this.valuePinned(at, 'getEntry') as V, version: sequenceAt(this.views, at) };
    } finally {
      epoch.unpin();
    }
  }

  /** A registered snapshot of the store as it is now (snapshots.ts): its sequence, once every write up to it is published. */
  private registerSnapshot(op: string): number {
    this.checkOpen(op);
    const S = this.snaps.register(this.readLastSequence);
    if (isBroken('kv-snapshot-no-wait')) return S; // reads at S with writes up to S maybe half published
    try {
      this.snaps.waitPublished(S);
    } catch (e) {
      this.snaps.release(S);
      throw e;
    }
    return S;
  }

  /** Drops one registration of S; when that let the oldest snapshot move on, frees what it was holding. */
  private releaseSnapshot(S: number): void {
    if (this.isClosed) return; // close() released them all
    if (!this.snaps.release(S)) return;
    if (this.snaps.deferred !== 0 || this.deferredHere.length !== 0) this.drainDeferred();
    // The last snapshot gone: every tombstone is now removable, whatever sweeps it held back.
    const tombstones = this.snaps.tombstones;
    const due =
      tombstones >= SWEEP_MIN &&
      (this.snaps.anyHeld() ? this.snaps.sweepDue() : tombstones >= this.counted(LIVE_KEYS) / 4);
    if (due && !this.space.epoch.isPinned()) this.sweepTombstones();
  }

  /** The value of key at snapshot S (a copy, or a view valid while S is held). */
  private getAt(key: unknown, S: number, op: string, view: boolean): unknown {
    this.checkOpen(op);
    return this.getKeyAt(this.lookupKey(key, op), S, op, view);
  }

  /** getAt of an index key (a transaction's, encoded once). */
  private getKeyAt(k: Uint8Array, S: number, op: string, view: boolean): unknown {
    const epoch = this.space.epoch;
    epoch.pin();
    try {
      const newest = this.space.tree.lookupPinned(k);
      if (newest === undefined) return undefined;
      const at = this.versionPinned(newest, S);
      if (at < 0) return undefined;
      return view ? this.valueSlicePinned(at, op) : this.valuePinned(at, op);
    } finally {
      epoch.unpin();
    }
  }

  /** The version (sequence) of key at snapshot S, undefined when absent at S. */
  private versionOf(key: unknown, S: number, op: string): number | undefined {
    this.checkOpen(op);
    return this.versionKeyAt(this.lookupKey(key, op), S, op);
  }

  /** versionOf of an index key (a transaction's, encoded once). */
  private versionKeyAt(k: Uint8Array, S: number, op: string): number | undefined {
    void op;
    const epoch = this.space.epoch;
    epoch.pin();
    try {
      const newest = this.space.tree.lookupPinned(k);
      if (newest === undefined) return undefined;
      const at = this.versionPinned(newest, S);
      return at < 0 ? undefined : sequenceAt(this.views, at);
    } finally {
      epoch.unpin();
    }
  }

  /** Runs fn with the epoch pinned: views from getView stay valid until it returns (R6). */
  read<T>(fn: () => T): T {
    this.checkOpen('read');
    if (typeof fn !== 'function')
      throw new DaxError('EINVAL', `read: argument must be a function, got ${describeValue(fn)}`);
    return this.space.epoch.guard(fn);
  }

  has(key: KeyInput<K>): boolean {
    this.checkOpen('has');
    return this.newestLiveAt(this.lookupKey(key, 'has')) !== undefined;
  }

  /** The offset of the newest entry of index key k when it is a PUT (pins around the lookup); undefined when absent or a tombstone. */
  private newestLiveAt(k: Uint8Array): number | undefined {
    const epoch = this.space.epoch;
    epoch.pin();
    try {
      const at = this.space.tree.lookupPinned(k);
      return at === undefined || isDeletion(this.views, at) ? undefined : at;
    } finally {
      epoch.unpin();
    }
  }

  /** The index key of `key` in this handle's lookup scratch (valid until the next lookupKey call). */
  private lookupKey(key: unknown, op: string): Uint8Array {
    return this.keyInto(this.lookupScratch, this.lookupViews, key, op);
  }

  /** The index key of `key` by this handle's key encoding, written into `scratch` (a view cached by length in `views`). */
  private keyInto(scratch: Buffer, views: Uint8Array[], key: unknown, op: string): Uint8Array {
    if (this.keyEncoding === 'ordered') {
      const n = writeOrderedKey(scratch, key, op);
      scratch[0] = KV_KEY_PREFIX;
      return (views[n] ??= new Uint8Array(scratch.buffer, scratch.byteOffset, n + 1));
    }
    if (this.keyEncoding === 'utf8' && typeof key !== 'string') throw notUtf8Key(key, op);
    return scratchIndexKey(scratch, views, key, op);
  }

  /** An owned index key of `key` (batch ops). */
  private ownedKey(key: unknown, op: string): Uint8Array {
    if (this.keyEncoding === 'ordered') {
      return withPrefix(orderedKeyBytes(key, op));
    }
    if (this.keyEncoding === 'utf8' && typeof key !== 'string') throw notUtf8Key(key, op);
    return indexKeyOf(key, op);
  }

  /** The index key of a range bound (the empty key allowed). */
  private boundKey(key: unknown, op: string): Uint8Array {
    if (this.keyEncoding === 'ordered') return withPrefix(orderedKeyBytes(key, op));
    if (this.keyEncoding === 'utf8' && typeof key !== 'string') throw notUtf8Key(key, op);
    return boundKeyOf(key, op);
  }

  /** A copy of the value at entry `at`, undefined when it is a DEL (Buffer.copy: a memcpy, much cheaper than slicing a shared buffer). */
  private valueCopyPinned(at: number, op: string): Uint8Array | undefined {
    const v = this.views.at(at);
    const u32 = v.u32;
    const w = (at - v.base) / 4;
    if ((u32[w] & Op.MASK) === Op.DEL) return undefined;
    const start = at - v.base + ENTRY_HEADER_BYTES + (u32[w] & 0xffff); // in the window
    const length = u32[w + 1];
    this.checkPoisonPinned(at, start + v.base + length, op);
    if (u32[w] >>> 24 !== 0) return copyLargePinned(this.space, this.largeRefPinned(at, op), op);
    if (length > COPY_SLAB_BYTES / 8) {
      const out = new Uint8Array(length);
      v.buf.copy(out, 0, start, start + length);
      return out;
    }
    if (this.copySlabUsed + length > COPY_SLAB_BYTES) this.newCopySlab();
    const offset = this.copySlabUsed;
    if ((start & 3) === 0) {
      // A value after a key of a multiple of 4 bytes (the bench's 16) starts 4-aligned: copied
      // by words. The last word may run up to 3 bytes past the value: still inside the entry
      // (zero padding to 8, layout.ts) and inside this copy's 8-aligned room in the slab.
      // Buffer.copy would make a temporary Uint8Array and a TypedArray set call per get.
      const from = start >>> 2;
      const to = offset >>> 2;
      const dst = this.copySlab32;
      for (let w = 0; w < (length + 3) >>> 2; w++) dst[to + w] = u32[from + w];
    } else v.buf.copy(this.copySlab, offset, start, start + length);
    this.copySlabUsed = offset + ((length + 7) & ~7);
    return new Uint8Array(this.copySlabBuffer, offset, length); // a plain Uint8Array, as documented
  }

  private newCopySlab(): void {
    this.copySlab = new Uint8Array(COPY_SLAB_BYTES);
    this.copySlabBuffer = this.copySlab.buffer;
    this.copySlab32 = new Uint32Array(this.copySlabBuffer);
    this.copySlabUsed = 0;
  }

  /** A view of the value: over the record, or over a large value's object pages (a copy when they are not one page run); undefined for a DEL. */
  private valueSlicePinned(at: number, op: string): Uint8Array | undefined {
    const v = this.views.at(at);
    const u32 = v.u32;
    const w = (at - v.base) / 4;
    if ((u32[w] & Op.MASK) === Op.DEL) return undefined;
    const start = at + ENTRY_HEADER_BYTES + (u32[w] & 0xffff); // a device offset
    const length = u32[w + 1];
    this.checkPoisonPinned(at, start + length, op);
    if (u32[w] >>> 24 !== 0) return viewLargePinned(this.space, this.largeRefPinned(at, op), op);
    return new Uint8Array(v.buffer, start, length);
  }

  /**
   * The large-value reference of the flagged entry at `at` (flags byte not 0); EIO when the
   * flag is ENTRY_FLAG_LOST instead: salvage found the key's newest value destroyed.
   */
  private largeRefPinned(at: number, op: string): LargeRef {
    const ref = largeRefAt(this.views, at);
    if (ref !== undefined) return ref;
    assert((entryFlags(this.views, at) & ENTRY_FLAG_LOST) !== 0, () => `entry at ${at} has unknown flags`);
    throw new DaxError(
      'EIO',
      `${op}: the value of key ${keyText(this.indexKeyAt(at).subarray(1))} was lost to damage in the log (found and marked by salvage at an open); overwrite or delete the key to clear it`,
    );
  }

  // ---- writes ------------------------------------------------------------------------

  /**
   * Stores value under key; durable on return with 'sync'. Hot path ('sync' put of a small
   * value): no allocation for the key (scratch) or the value (written straight into the
   * record), one checksum, one native persist (flush + fence) per put.
   */
  put(key: KeyInput<K>, value: ValueInput<V>, options?: WriteOptions): boolean {
    this.checkOpen('put');
    const k = this.keyInto(this.putScratch, this.putViews, key, 'put');
    const expect = options === undefined ? UNCONDITIONAL : expectedVersion(options, 'put');
    let written: boolean;
    try {
      written = this.putValue(k, value, expect);
    } catch (e) {
      if (!isDaxError(e, 'ENOSPC')) throw e;
      // Reclaimed, then the value again from the start (a msgpack value is packed again: the
      // stage and the pack scratch are compaction's meanwhile).
      written = this.retryAfterReclaim(e, () => this.putValue(k, value, expect));
    }
    if (!written) return false;
    this.count(PUTS, 1);
    this.reaper.drain();
    if (this.segmentOpened) this.autoCompact();
    return true;
  }

  /** put() of an index key: the value encoded, stored inline or as an object, published; false when ifVersion did not match. */
  private putValue(k: Uint8Array, value: ValueInput<V>, expect: number): boolean {
    let written: boolean;
    if (this.valueEncoding === 'msgpack') written = this.putPacked(k, value, expect);
    else {
      const v = this.rawValues ? (value as Value) : valueString(value, this.valueEncoding as 'utf8' | 'json', 'put');
      const valueLength = valueLengthOf(v, 'put');
      if (isBroken('kv-large-free-early')) this.removeSupersededNow(k);
      if (valueLength <= LARGE_VALUE_THRESHOLD_BYTES) written = this.putEntry(k, v, valueLength, 0, -1, expect);
      else written = this.putLarge(k, v, expect);
    }
    return written;
  }

  /**
   * put() of a msgpack value: packed straight into the record stage where the entry's value
   * goes (encodings.ts packIntoStage), and the entry written around it: no copy of the packed
   * bytes. A value too large for the stage, or for an inline value, takes the copying path.
   */
  private putPacked(k: Uint8Array, value: unknown, expect: number): boolean {
    const at = RECORD_HEADER_BYTES + ENTRY_HEADER_BYTES + (k.length - 1);
    const n = this.msgpack!.packIntoStage(value, at, 'put');
    let bytes: Uint8Array | undefined;
    if (n < 0) {
      resetPackScratch();
      bytes = this.msgpack!.packValue(value, 'put');
    } else if (n > LARGE_VALUE_THRESHOLD_BYTES) bytes = stageViews.u8.slice(at, at + n);
    if (isBroken('kv-large-free-early')) this.removeSupersededNow(k);
    if (bytes === undefined) return this.putEntry(k, undefined, n, 0, -1, expect); // the value is in place
    if (bytes.length <= LARGE_VALUE_THRESHOLD_BYTES) return this.putEntry(k, bytes, bytes.length, 0, -1, expect);
    return this.putLarge(k, bytes, expect);
  }

  /** put() of a value past LARGE_VALUE_THRESHOLD_BYTES: the object first, then the PUT record naming it. */
  private putLarge(k: Uint8Array, value: Value, expect: number): boolean {
    const first = Atomics.add(this.i32, NEXT_OBJECT, 1);
    this.writer.beginObjects(first, 1); // before the object exists: a death from here on removes it
    let item: ReturnType<KvStore['prepareValue']>;
    try {
      item = this.prepareValue(value, 'put', KV_OBJECT_ID_BASE + first);
    } catch (e) {
      this.writer.endObjects();
      throw e;
    }
    return this.putEntry(k, item.value, item.valueLength, item.flags, item.objectId, expect);
  }

  /**
   * Writes, seals, commits and publishes one PUT record (value: inline bytes); a failure gives
   * everything back. The record is composed in the stage (record-stage.ts) before the lock (R4:
   * the value, maybe a view of this store, is read only there); under the lock only our own
   * stage and reservation are touched: sequence, seal (hash in place), one copy, persist.
   * `value` undefined: its valueLength bytes are already in the stage where the entry puts
   * them (putPacked).
   */
  private putEntry(
    k: Uint8Array,
    value: Value | undefined,
    valueLength: number,
    flags: number,
    objectId: number,
    expect: number,
  ): boolean {
    if (isBroken('kv-seq-before-lock')) {
      this.putEntrySequencedBeforeLock(k, value, valueLength, flags, objectId);
      return true;
    }
    if (isBroken('kv-ifversion-unlocked') && expect !== UNCONDITIONAL)
      return this.putEntryCheckedUnlocked(k, value, valueLength, flags, objectId, expect);
    const total = RECORD_HEADER_BYTES + entryBytes(k.length - 1, valueLength);
    let done = false;
    let at = -1;
    try {
      writeEntry(stageViews, RECORD_HEADER_BYTES, ENTRY_PUT, k, value, valueLength, flags);
      at = this.active.reserve(total, true);
      const entryAt = at + RECORD_HEADER_BYTES;
      const ref = grab(this.space.tree, k);
      try {
        if (expect !== UNCONDITIONAL && this.versionLocked(ref) !== expect) return false; // ifVersion: given back below
        const sequence = this.takeSequence(); // under the lock: log order = lock order
        setEntrySequence(stageViews, RECORD_HEADER_BYTES, sequence);
        setEntryPrevious(stageViews, RECORD_HEADER_BYTES, ref.state === 'value' ? ref.value : 0);
        this.active.sealStaged(at, KIND_PUT, 1, total);
        this.commitWrite(); // durable (sync) before publishPutLocked makes it reachable
        this.publishPutLocked(ref, entryAt, sequence);
        done = true;
      } finally {
        this.snaps.published();
        unlock(this.space.tree, ref);
      }
    } finally {
      if (!done) this.abandon(at, total, objectId);
      this.active.endOperation();
    }
    return true;
  }

  /**
   * putEntry under DAXSTORE_TEST_BREAK=kv-ifversion-unlocked: ifVersion is compared with a
   * lock-free read BEFORE the entry lock is taken (check, then act), with a 0-50 us spin
   * standing in for a preemption between the two: another writer's put can land in between
   * and be overwritten although its version was not the one expected.
   */
  private putEntryCheckedUnlocked(
    k: Uint8Array,
    value: Value | undefined,
    valueLength: number,
    flags: number,
    objectId: number,
    expect: number,
  ): boolean {
    const at = this.newestLiveAt(k);
    const version = at === undefined ? ABSENT : this.space.epoch.guard(() => sequenceAt(this.views, at));
    if (version !== expect) {
      if (objectId >= 0) removeQuietly(this.space, objectId);
      return false;
    }
    spinMicros(Math.random() * 50);
    return this.putEntry(k, value, valueLength, flags, objectId, UNCONDITIONAL);
  }

  /** The version of the held entry's key: the sequence of its newest PUT, ABSENT when it has none (absent or a tombstone). */
  private versionLocked(ref: EntryRef): number {
    return ref.state === 'value' && !isDeletion(this.views, ref.value) ? sequenceAt(this.views, ref.value) : ABSENT;
  }

  /**
   * putEntry under DAXSTORE_TEST_BREAK=kv-seq-before-lock: the sequence is taken BEFORE the
   * entry lock, then a 0-200 us spin stands in for a preemption in that window, so two puts of
   * one key can take their sequences in one order and their lock in the other (the log order
   * then disagrees with the published order: kv-workers goes red).
   */
  private putEntrySequencedBeforeLock(
    k: Uint8Array,
    value: Value | undefined,
    valueLength: number,
    flags: number,
    objectId: number,
  ): void {
    const total = RECORD_HEADER_BYTES + entryBytes(k.length - 1, valueLength);
    let done = false;
    let at = -1;
    try {
      writeEntry(stageViews, RECORD_HEADER_BYTES, ENTRY_PUT, k, value, valueLength, flags);
      at = this.writer.reserve(total, false);
      const sequence = this.takeSequence();
      spinMicros(Math.random() * 200);
      const ref = grab(this.space.tree, k);
      try {
        setEntrySequence(stageViews, RECORD_HEADER_BYTES, sequence);
        setEntryPrevious(stageViews, RECORD_HEADER_BYTES, ref.state === 'value' ? ref.value : 0);
        this.writer.sealStaged(at, KIND_PUT, 1, total);
        this.commitWrite();
        this.publishPutLocked(ref, at + RECORD_HEADER_BYTES, sequence);
        done = true;
      } finally {
        this.snaps.published();
        unlock(this.space.tree, ref);
      }
    } finally {
      if (!done) this.abandon(at, total, objectId);
    }
  }

  /**
   * The inline bytes of a value: itself, or for a large value the reference to a new DAX
   * object already written and durable (before any record or lock: R4, persistence order).
   */
  private prepareValue(
    value: Value,
    op: string,
    id: number,
  ): { value: Value; valueLength: number; flags: number; objectId: number } {
    const valueLength = valueLengthOf(value, op);
    if (valueLength <= LARGE_VALUE_THRESHOLD_BYTES) return { value, valueLength, flags: 0, objectId: -1 };
    // Its pages do not grow the store from the fault path: a full store throws ENOSPC here, and
    // the write's retryAfterReclaim releases dead space, grows or compacts, as for the log.
    const device = this.space.device;
    const sum =
      this.largeGrowth || isBroken('kv-large-grows-at-fault')
        ? writeLargeObject(this.space, id, valueBytes(value))
        : device.withoutGrowth(() => writeLargeObject(this.space, id, valueBytes(value)));
    return {
      value: encodeLargeRef(id, valueLength, sum),
      valueLength: LARGE_REF_BYTES,
      flags: ENTRY_FLAG_LARGE,
      objectId: id,
    };
  }

  /** DAXSTORE_TEST_BREAK=kv-large-free-early: the old value's object goes before the superseding (put or delete) record is durable. */
  private removeSupersededNow(k: Uint8Array): void {
    const oldAt = this.space.tree.lookup(k);
    const large = oldAt === undefined ? undefined : largeRefAt(this.views, oldAt);
    if (large !== undefined) removeQuietly(this.space, large.id);
  }

  /** A write that failed: its reserved record space and any object it wrote are given back. */
  private abandon(at: number, total: number, objectId: number): void {
    if (at >= 0) this.active.rollback(at, total);
    if (objectId >= 0) removeQuietly(this.space, objectId);
  }

  /**
   * Removes key; returns whether it existed (and, with ifVersion, was at that version). Its
   * record takes put's path: composed in the stage, hashed in place, one copy. Never fails for
   * lack of space: when this thread's segment is full and reclaiming frees nothing, the record
   * goes to the priority segment (the reserve).
   */
  delete(key: KeyInput<K>, options?: WriteOptions): boolean {
    this.checkOpen('delete');
    const k = this.keyInto(this.putScratch, this.putViews, key, 'delete'); // put's scratch: the same one-lock, synchronous use
    const expect = options === undefined ? UNCONDITIONAL : expectedVersion(options, 'delete');
    if (this.newestLiveAt(k) === undefined) return false; // lock-free: an absent key writes nothing
    if (isBroken('kv-large-free-early')) this.removeSupersededNow(k);
    const deleted = this.deleteWithRoom(
      () => this.deleteEntry(k, expect),
      RECORD_HEADER_BYTES + entryBytes(k.length - 1, 0),
    );
    this.reaper.drain();
    if (this.snaps.sweepDue()) this.sweepTombstones();
    if (this.segmentOpened) this.autoCompact();
    return deleted;
  }

  /** Writes, seals, commits and publishes the DEL record of k into the active writer; false when k went meanwhile. */
  private deleteEntry(k: Uint8Array, expect: number): boolean {
    const total = RECORD_HEADER_BYTES + entryBytes(k.length - 1, 0);
    writeEntry(stageViews, RECORD_HEADER_BYTES, ENTRY_DEL, k, undefined, 0);
    const at = this.active.reserve(total, true);
    let done = false;
    try {
      const ref = grab(this.space.tree, k);
      if (
        ref.state === 'empty' ||
        isDeletion(this.views, ref.value) ||
        (expect !== UNCONDITIONAL && this.versionLocked(ref) !== expect)
      ) {
        unlock(this.space.tree, ref); // removed meanwhile (unlock drops our placeholder), a tombstone, or ifVersion failed
        return false;
      }
      let held = true;
      try {
        const sequence = this.takeSequence();
        setEntrySequence(stageViews, RECORD_HEADER_BYTES, sequence);
        setEntryPrevious(stageViews, RECORD_HEADER_BYTES, ref.value);
        this.active.sealStaged(at, KIND_PUT, 1, total);
        this.commitWrite();
        held = !this.deletePublishedLocked(ref, at + RECORD_HEADER_BYTES, sequence);
      } finally {
        this.snaps.published();
        if (held) unlock(this.space.tree, ref);
      }
      this.active.noteDels(entryCost(k.length - 1, 0));
      done = true;
    } finally {
      if (!done) this.active.rollback(at, total);
      this.active.endOperation();
    }
    this.count(DELETES, 1);
    return true;
  }

  /**
   * Applies every op or none, also across a crash (one record). Later ops on the same key win.
   * A batch of deletes only never fails for lack of space (as delete()).
   */
  batch(ops: readonly BatchOp<K, V>[]): void {
    this.checkOpen('batch');
    if (!Array.isArray(ops)) throw new DaxError('EINVAL', 'batch: argument must be an array of { type, key, value? }');
    const prepare = (): BatchItem[] => {
      if (this.valueEncoding === 'msgpack') resetPackScratch();
      return prepareBatch(
        ops,
        (key, op) => this.ownedKey(key, op),
        (value, op) => this.storedValue(value, op),
      );
    };
    let items = prepare();
    if (items.length === 0) return;
    try {
      this.batchItems(items);
    } catch (e) {
      if (!isDaxError(e, 'ENOSPC')) throw e;
      // A retry starts from the ops again: the failed attempt turned large values into
      // references, and compaction used the stage meanwhile.
      const again = (): void => this.batchItems((items = prepare()));
      if (items.every((item) => item.type === 'del')) this.deleteWithRoom(again, 0);
      else this.retryAfterReclaim(e, again);
    }
    this.reaper.drain();
    if (this.snaps.sweepDue()) this.sweepTombstones();
    if (this.segmentOpened) this.autoCompact();
  }

  /** One batch record for items (prepareBatch) in the active writer; everything rolled back on failure. */
  private batchItems(items: BatchItem[]): void {
    let total = RECORD_HEADER_BYTES;
    for (const item of items)
      total += entryBytes(
        item.key.length - 1,
        item.valueLength > LARGE_VALUE_THRESHOLD_BYTES ? LARGE_REF_BYTES : item.valueLength,
      );
    if (total > MAX_RECORD_BYTES)
      throw new DaxError(
        'EINVAL',
        `batch: ${total} bytes of records exceed the largest record (${MAX_RECORD_BYTES} bytes: one segment less two SEALs)`,
      );
    const refs: EntryRef[] = [];
    let done = false;
    let at = -1;
    try {
      let large = 0;
      for (const item of items) if (item.type === 'put' && item.valueLength > LARGE_VALUE_THRESHOLD_BYTES) large++;
      if (large > 0) this.prepareLargeItems(items, large);
      ensureStageBytes(total);
      let e = RECORD_HEADER_BYTES; // composed in the stage, like put's record: R4, one hash in place
      for (const item of items) {
        item.entryAt = e; // stage offset until the record has its place in the log
        e = writeEntry(
          stageViews,
          e,
          item.type === 'put' ? ENTRY_PUT : ENTRY_DEL,
          item.key,
          item.value,
          item.valueLength,
          item.flags,
        );
      }
      at = this.active.reserve(total, true);
      for (const item of items) refs.push(grab(this.space.tree, item.key)); // ascending key order
      try {
        const sequence = this.takeSequence();
        for (let i = 0; i < items.length; i++) {
          setEntrySequence(stageViews, items[i].entryAt, sequence);
          setEntryPrevious(stageViews, items[i].entryAt, refs[i].state === 'value' ? refs[i].value : 0);
        }
        this.active.sealStaged(at, KIND_BATCH, items.length, total);
        for (const item of items) item.entryAt += at;
        this.commitWrite();
        testHooks.batchSealed?.(
          this.space.tree.arena.i32,
          refs.map((ref) => ref.leaf),
        );
        this.publishBatchLocked(
          refs,
          items.map((item) => item.type === 'put'),
          items.map((item) => item.entryAt),
          sequence,
        );
      } finally {
        this.snaps.published();
      }
      done = true;
    } finally {
      for (const ref of refs) unlock(this.space.tree, ref); // an EMPTY placeholder (a deleted or never-present key) is removed
      if (!done) {
        if (at >= 0) this.active.rollback(at, total);
        for (const item of items) if (item.objectId >= 0) removeQuietly(this.space, item.objectId);
      }
      this.active.endOperation();
    }
    this.count(BATCHES, 1);
  }

  /** The bytes or string a value is stored as (msgpack: bytes in the pack scratch, valid for this batch). */
  private storedValue(value: unknown, op: string): Value {
    switch (this.valueEncoding) {
      case 'msgpack':
        return this.msgpack!.packValue(value, op);
      case 'utf8':
      case 'json':
        return valueString(value, this.valueEncoding, op);
      default:
        return value as Value;
    }
  }

  /** Object ids for the `large` large values of `items`, announced to the segment before any object exists (a death from here on removes them), and each value prepared. */
  private prepareLargeItems(items: BatchItem[], large: number): void {
    let id = Atomics.add(this.i32, NEXT_OBJECT, large);
    this.active.beginObjects(id, large);
    for (const item of items)
      if (item.type === 'put' && item.valueLength > LARGE_VALUE_THRESHOLD_BYTES)
        this.prepareLargeItem(item, KV_OBJECT_ID_BASE + id++);
  }

  private prepareLargeItem(item: BatchItem, id: number): void {
    const p = this.prepareValue(item.value!, 'batch', id);
    item.value = p.value;
    item.valueLength = p.valueLength;
    item.flags = p.flags;
    item.objectId = p.objectId;
  }

  /** Deletes every key in range (truncate): per key, a concurrent put lands before (and is removed) or after (and stays). Returns how many were deleted. */
  deleteRange(options?: KvRangeOptions<K>): number {
    this.checkOpen('deleteRange');
    const opts = checkOptions<KvRangeOptions<K>>('deleteRange', options, DELETE_RANGE_OPTIONS, BOUND_NAMES);
    let bounds = this.rangeBounds(opts, 'deleteRange');
    let remaining = opts.limit ?? Infinity; // limit and reverse choose which keys, as in range()
    let deleted = 0;
    while (remaining > 0) {
      const want = Math.min(SCAN_BATCH, remaining);
      const keys = this.scanKeys(bounds, want);
      if (keys.length === 0) return deleted;
      const last = keys[keys.length - 1];
      const n = this.deleteWithRoom(() => this.deleteKeys(keys), RECORD_HEADER_BYTES);
      deleted += n;
      this.reaper.drain();
      if (this.snaps.sweepDue()) this.sweepTombstones();
      if (this.segmentOpened) this.autoCompact();
      remaining -= keys.length;
      if (keys.length < want) return deleted;
      bounds = boundsAfter(bounds, last, 'deleteRange', this.space.device.media.path);
    }
    return deleted;
  }

  /** Locks keys (ascending), writes one record of DEL entries for those still present, commits, removes them. */
  private deleteKeys(keys: Uint8Array[]): number {
    keys.sort(compareBytes);
    const refs: EntryRef[] = [];
    let at = -1;
    let total = 0;
    let done = false;
    try {
      for (const k of keys) {
        const ref = grab(this.space.tree, k);
        if (ref.state === 'empty' || isDeletion(this.views, ref.value)) unlock(this.space.tree, ref);
        else refs.push(ref);
      }
      if (refs.length === 0) return 0;
      total = RECORD_HEADER_BYTES;
      for (const ref of refs) total += entryBytes(ref.key.length - 1, 0);
      ensureStageBytes(total);
      at = this.active.reserve(total, true);
      let e = RECORD_HEADER_BYTES; // the keys are our own copies (scanKeys): composing under the locks reads no caller memory
      const entryAts: number[] = [];
      try {
        const sequence = this.takeSequence();
        for (const ref of refs) {
          const next = writeEntry(stageViews, e, ENTRY_DEL, ref.key, undefined, 0);
          setEntrySequence(stageViews, e, sequence);
          setEntryPrevious(stageViews, e, ref.value);
          entryAts.push(at + e);
          e = next;
        }
        this.active.sealStaged(at, KIND_BATCH, refs.length, total);
        this.commitWrite();
        this.publishBatchLocked(refs, undefined, entryAts, sequence);
      } finally {
        this.snaps.published();
      }
      done = true;
      const n = refs.length;
      this.count(DELETES, n);
      return n;
    } finally {
      for (const ref of refs) unlock(this.space.tree, ref);
      if (!done && at >= 0) this.active.rollback(at, total);
      if (at >= 0) this.active.endOperation();
    }
  }

  /**
   * Publishes a batch record's entries (refs held, in key order; puts[i] says whether entry i
   * at entryAts[i] is a PUT, else a DEL) as ONE change for lock-free readers: every entry's
   * seqlock is opened before any is finished (entry-lock.ts beginReplace), so no reader of any
   * thread sees one key's new value and then another key's old one. A deleted key becomes a
   * tombstone while snapshots are held (its older versions stay reachable), else an EMPTY
   * placeholder here, which the unlock that follows removes (absent either way). With
   * `markDead` the entries it supersedes are marked dead in the segment table (compaction then
   * need not look them up), under an epoch pin taken before the index leaves them
   * (segment-table.ts). A caller that has not loaded their marks' words passes false: a mark
   * is a cache miss, which a store that does not compact pays for nothing.
   */
  private publishBatchLocked(
    refs: EntryRef[],
    puts: boolean[] | undefined,
    entryAts: number[],
    sequence: number,
    markDead = false,
  ): void {
    if (isBroken('kv-batch-publish-per-key')) return this.publishBatchPerKeyLocked(refs, puts, entryAts, sequence);
    const keepTombstones = this.snaps.anyHeld(); // after the Atomics.add of takeSequence (snapshots.ts)
    const superseded: number[] = []; // offset, note, offset, note, ...
    const epoch = this.space.epoch;
    epoch.pin(); // from before the index leaves the superseded entries until they are marked dead
    try {
      for (const ref of refs) beginReplace(this.space.tree, ref);
      for (let i = 0; i < refs.length; i++)
        this.finishBatchEntryLocked(refs[i], puts !== undefined && puts[i], entryAts[i], keepTombstones, superseded);
      for (let i = 0; i < superseded.length; i += 2) {
        if (markDead) this.table.markDeadPinned(superseded[i]);
        this.supersededLocked(superseded[i], sequence, superseded[i + 1]);
      }
    } finally {
      epoch.unpin();
    }
  }

  /**
   * The live entry at `oldAt` was superseded by a record of `sequence` (its key's lock held): its
   * bytes leave its segment's live count; a large value is retired (retireLargeLocked).
   */
  private supersededLocked(oldAt: number, sequence: number, note = 0): void {
    if (note !== 0) {
      // What the index noted of the old entry when it was published (noteBornAt): its
      // cost and whether it has flags, without a read of its header (a cache miss, as a rule).
      this.table.died(oldAt, noteCost(note));
      if (noteFlagged(note)) this.retireLargeLocked(oldAt, sequence);
      return;
    }
    const v = this.views.at(oldAt);
    const u32 = v.u32;
    const w = (oldAt - v.base) / 4;
    const head = u32[w];
    this.table.died(oldAt, entryCost(head & 0xffff, u32[w + 1]));
    if (head >>> 24 !== 0) this.retireLargeLocked(oldAt, sequence); // entry flags: ENTRY_FLAG_LARGE
  }

  /**
   * The entry at `entryAt` was just written by the active writer: its bytes join its segment's
   * live count. Returns its note for the index (segment-table.ts entryNote).
   */
  private noteBornAt(entryAt: number): number {
    const v = this.views.at(entryAt);
    const u32 = v.u32;
    const w = (entryAt - v.base) / 4;
    const head = u32[w]; // the entry was just written: its header is in cache
    const cost = entryCost(head & 0xffff, u32[w + 1]);
    this.active.noteBorn(cost);
    return entryNote(cost, head >>> 24);
  }

  /**
   * publishBatchLocked under DAXSTORE_TEST_BREAK=kv-batch-publish-per-key: each entry opened and
   * finished before the next is opened, with a 0-20 us spin between two keys standing in for a
   * preemption there: a reader can see one key's new value and then another key's old one.
   */
  private publishBatchPerKeyLocked(
    refs: EntryRef[],
    puts: boolean[] | undefined,
    entryAts: number[],
    sequence: number,
  ): void {
    const keepTombstones = this.snaps.anyHeld();
    const superseded: number[] = [];
    for (let i = 0; i < refs.length; i++) {
      if (i > 0) spinMicros(Math.random() * 20);
      beginReplace(this.space.tree, refs[i]);
      this.finishBatchEntryLocked(refs[i], puts !== undefined && puts[i], entryAts[i], keepTombstones, superseded);
    }
    for (let i = 0; i < superseded.length; i += 2) this.supersededLocked(superseded[i], sequence, superseded[i + 1]);
  }

  /** Finishes one opened entry of a batch: the PUT or DEL at entryAt (counts, tombstones; superseded values collected). */
  private finishBatchEntryLocked(
    ref: EntryRef,
    put: boolean,
    entryAt: number,
    keepTombstones: boolean,
    superseded: number[],
  ): void {
    const tree = this.space.tree;
    const wasTombstone = ref.state === 'value' && this.snaps.tombstones !== 0 && isDeletion(this.views, ref.value);
    const wasLive = ref.state === 'value' && !wasTombstone;
    if (wasLive) superseded.push(ref.value, valueNote(tree, ref)); // the note before finishReplace overwrites it
    if (put) {
      const note = this.noteBornAt(entryAt);
      this.count(wasLive ? DEAD : LIVE_KEYS, 1);
      if (wasTombstone) this.snaps.addTombstones(-1);
      finishReplace(tree, ref, entryAt, 'value', note);
      return;
    }
    this.active.noteDels(entryCost(ref.key.length - 1, 0));
    if (wasLive) {
      this.count(LIVE_KEYS, -1);
      this.count(DEAD, 1);
    }
    if (keepTombstones && ref.state === 'value') {
      if (wasLive) this.snaps.addTombstones(1);
      finishReplace(tree, ref, entryAt); // a tombstone: absent, older versions behind it
    } else {
      if (wasTombstone) this.snaps.addTombstones(-1);
      finishReplace(tree, ref, 0, 'empty'); // absent from here on; unlock removes it
    }
  }

  private publishPutLocked(ref: EntryRef, entryAt: number, sequence: number): void {
    // The old entry's header is read only when tombstones exist (a cache miss on every overwrite otherwise).
    const wasTombstone = ref.state === 'value' && this.snaps.tombstones !== 0 && isDeletion(this.views, ref.value);
    const old = ref.state === 'value' && !wasTombstone ? ref.value : -1;
    if (old >= 0) this.count(DEAD, 1);
    else this.count(LIVE_KEYS, 1);
    if (wasTombstone) this.snaps.addTombstones(-1);
    const note = this.noteBornAt(entryAt);
    const oldNote = old >= 0 ? valueNote(this.space.tree, ref) : 0; // before replace() overwrites it
    if (old >= 0 && this.putsMarkDead) return this.replaceMarkingLocked(ref, entryAt, note, old, sequence, oldNote);
    replace(this.space.tree, ref, entryAt, 'value', note);
    if (old >= 0) this.supersededLocked(old, sequence, oldNote);
  }

  /**
   * publishPutLocked's replace of the live entry at `old`, which is marked dead in the segment
   * table under an epoch pin taken before the index leaves it (segment-table.ts).
   */
  private replaceMarkingLocked(
    ref: EntryRef,
    entryAt: number,
    note: number,
    old: number,
    sequence: number,
    oldNote: number,
  ): void {
    const epoch = this.space.epoch;
    epoch.pin();
    try {
      replace(this.space.tree, ref, entryAt, 'value', note);
      this.table.markDeadPinned(old);
    } finally {
      epoch.unpin();
    }
    this.supersededLocked(old, sequence, oldNote);
  }

  /**
   * The key of `ref` (a PUT) is deleted by the DEL entry at `delAt`, of `sequence`, already
   * durable per the durability mode. While snapshots are held the leaf becomes a tombstone (it
   * points at the DEL, whose back pointer reaches the PUT: snapshots.ts); else it is removed
   * from the index. Returns whether the leaf was removed (its lock is then released).
   */
  private deletePublishedLocked(ref: EntryRef, delAt: number, sequence: number): boolean {
    assert(ref.state === 'value', () => `deleting an entry in state ${ref.state}`);
    const old = ref.value;
    const note = valueNote(this.space.tree, ref);
    const tombstone = this.snaps.anyHeld(); // after the Atomics.add of takeSequence (snapshots.ts)
    if (tombstone) {
      replace(this.space.tree, ref, delAt);
      this.snaps.addTombstones(1);
    } else deleteLocked(this.space.tree, ref);
    this.supersededLocked(old, sequence, note);
    this.count(LIVE_KEYS, -1);
    this.count(DEAD, 1);
    return !tombstone;
  }

  /**
   * The entry at `oldAt` was just superseded by a record of `sequence` (its key's lock held): a
   * large value's object is retired through the epoch (R6), after every snapshot that can
   * still see it (one older than `sequence`) is released (snapshots.ts deferred table). The
   * superseding record must be durable first, or a crash could recover `oldAt` pointing at a
   * removed object: 'group'/'none' commit here.
   */
  private retireLargeLocked(oldAt: number, sequence: number): void {
    if (isBroken('kv-large-retire-uncommitted')) return this.retireLargeUncommittedLocked(oldAt, sequence);
    const large = largeRefAt(this.views, oldAt);
    if (large === undefined) return;
    if (this.durability !== 'sync') this.active.commit();
    this.retireOrDefer(DEFER_LARGE_OBJECT, large.id, sequence);
  }

  /**
   * Frees (through the epoch) a superseded large value's object or a compacted segment, or,
   * while a snapshot older than `stamp` is held, puts it in the deferred table until there is
   * none (snapshots.ts). Snapshots are read after the caller took `stamp` (an Atomics.add) or
   * read it as the last sequence, as the registration protocol needs.
   */
  private retireOrDefer(kind: number, what: number, stamp: number): void {
    if (isBroken('kv-snapshot-no-hold')) return this.releaseDeferred(kind, what);
    if (this.snaps.anyHeld() && this.snaps.oldest() < stamp) {
      if (this.snaps.defer(kind, what, stamp)) return;
      this.deferredHere.push({ kind, what, stamp }); // the shared table is full: kept here, tried again at drains
      return;
    }
    this.releaseDeferred(kind, what);
  }

  private releaseDeferred(kind: number, what: number): void {
    if (kind === DEFER_SEGMENT) this.space.retireBlock(what);
    else this.reaper.retire(what);
  }

  /** Releases the deferred items every snapshot has let go of (the shared table's and this handle's own). */
  private drainDeferred(): void {
    this.snaps.drain((kind, what) => this.releaseDeferred(kind, what));
    if (this.deferredHere.length === 0) return;
    const oldest = this.snaps.oldest();
    const kept = this.deferredHere.splice(0);
    for (const d of kept)
      if (d.stamp <= oldest) this.releaseDeferred(d.kind, d.what);
      else if (!this.snaps.defer(d.kind, d.what, d.stamp)) this.deferredHere.push(d);
  }

  /** retireLargeLocked under DAXSTORE_TEST_BREAK=kv-large-retire-uncommitted: retired with the superseding record maybe not durable. */
  private retireLargeUncommittedLocked(oldAt: number, sequence: number): void {
    const large = largeRefAt(this.views, oldAt);
    if (large !== undefined) this.retireOrDefer(DEFER_LARGE_OBJECT, large.id, sequence);
  }

  /**
   * Adds delta to this writer's counter of shared word `word` (LIVE_KEYS..BATCHES): a plain
   * read and store in its own slot's progress line (header: Shared words). Call after
   * reserve() (the writer then holds a slot).
   */
  private count(word: number, delta: number): void {
    if (isBroken('kv-counters-shared')) return this.countShared(word, delta);
    const slot = this.active.slotIndex;
    assert(slot >= 0, 'count: the writer holds no open-table slot (count before reserve)');
    const i = slot * PROGRESS_WORDS + SLOT_COUNTER_FIRST + word - LIVE_KEYS;
    this.progress[i] = (this.progress[i] + delta) | 0;
  }

  /**
   * count() under DAXSTORE_TEST_BREAK=kv-counters-shared: every writer counts into the ONE shared
   * word with a plain read and store, the lost-update race count() exists to avoid; the spin
   * (0-2 us) stands in for a preemption between the read and the store.
   */
  private countShared(word: number, delta: number): void {
    const seen = this.i32[word];
    spinMicros(Math.random() * 2);
    this.i32[word] = (seen + delta) | 0;
  }

  /** Shared word `word` (LIVE_KEYS..BATCHES): the base plus every slot's counter (stats only: 256 slots). */
  private counted(word: number): number {
    let n = Atomics.load(this.i32, word);
    // Plain loads: a snapshot needs no fence, and each aligned word reads whole (1280 builtin calls otherwise).
    for (let slot = 0; slot < OPEN_SLOTS; slot++)
      n += this.progress[slot * PROGRESS_WORDS + SLOT_COUNTER_FIRST + word - LIVE_KEYS];
    return n | 0;
  }

  /**
   * The next global sequence, announced in flight (snapshots.ts): the caller clears it with
   * snaps.published() once its record is published in the index, or abandoned.
   */
  private takeSequence(): number {
    this.snaps.pending();
    const n = Atomics.add(this.i32, SEQ_COUNT, 1); // nextSequence(), inline: the hot path
    if (n < SEQ_INT_LIMIT) {
      this.snaps.inflight(n + 1);
      return this.seqBaseWord[0] + n + 1;
    }
    Atomics.sub(this.i32, SEQ_COUNT, 1);
    const sequence = Number(Atomics.add(this.seq, SEQUENCE, 1n) + 1n);
    this.snaps.inflight(sequence - this.seqBaseWord[0]);
    return sequence;
  }

  /** The next global sequence (header: SEQ_COUNT, then SEQUENCE past SEQ_INT_LIMIT). */
  private nextSequence(): number {
    const n = Atomics.add(this.i32, SEQ_COUNT, 1);
    if (n < SEQ_INT_LIMIT) return this.seqBaseWord[0] + n + 1;
    Atomics.sub(this.i32, SEQ_COUNT, 1);
    return Number(Atomics.add(this.seq, SEQUENCE, 1n) + 1n);
  }

  /** The last sequence handed out. */
  private lastSequence(): number {
    const n = Atomics.load(this.i32, SEQ_COUNT);
    return n < SEQ_INT_LIMIT ? this.seqBaseWord[0] + n : Number(Atomics.load(this.seq, SEQUENCE));
  }

  /** 'sync': durable now (one fence). 'group': flushed by the group-commit timer or flushed(). 'none': at close. */
  private commitWrite(): void {
    if (this.durability === 'sync') this.active.commit();
    else if (this.durability === 'group' && this.groupTimer === undefined) this.scheduleGroupCommit();
  }

  /**
   * The group commit GROUP_COMMIT_MS from now. Unref'd while no batchAsync waits (a store
   * with only unacknowledged writes does not keep the process alive; close() makes them
   * durable); ref'd while one does, so its promise settles.
   */
  private scheduleGroupCommit(): void {
    this.groupTimer = setTimeout(() => {
      this.groupTimer = undefined;
      try {
        if (!this.closed) this.groupCommitNow();
      } catch {
        // Rejected to the waiters; the bytes stay pending and the next flushed() or close() retries (and throws).
      }
    }, GROUP_COMMIT_MS);
    if (this.groupWaiters.length === 0) this.groupTimer.unref();
  }

  /** One commit (flush + one fence) for everything written so far, then the batchAsync promises it covers resolve. */
  private groupCommitNow(): void {
    const waiters = this.groupWaiters.splice(0);
    try {
      this.writer.commit();
    } catch (e) {
      for (const w of waiters) w.reject(e);
      throw e;
    }
    for (const w of waiters) w.resolve();
  }

  /** Resolves when every write made through this handle before the call is durable. */
  flushed(): Promise<void> {
    try {
      this.checkOpen('flushed');
      this.groupCommitNow();
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * batch(), acknowledged when durable: applies the ops at once (visible to readers, as
   * batch()), and the promise resolves once the batch's record is durable: 'sync' at once;
   * 'group' at the group commit that covers it, so batches issued in one window share ONE
   * fence; 'none' once applied (durable at close or flushed(), as every 'none' write). Bad
   * input, a full store or a closed store reject it with the DaxError batch() would throw,
   * and nothing is applied.
   */
  batchAsync(ops: readonly BatchOp<K, V>[]): Promise<void> {
    if (isBroken('kv-group-resolve-early')) return this.batchResolvedAtOnce(ops);
    try {
      this.batch(ops);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.durable();
  }

  /** put(), acknowledged when durable (as batchAsync: 'group' resolves at the commit that covers it). */
  putAsync(key: KeyInput<K>, value: ValueInput<V>): Promise<void> {
    try {
      this.put(key, value);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.durable();
  }

  /** delete(), acknowledged when durable; resolves to whether the key existed. */
  deleteAsync(key: KeyInput<K>): Promise<boolean> {
    let existed: boolean;
    try {
      existed = this.delete(key);
    } catch (e) {
      return Promise.reject(e);
    }
    return existed ? this.durable().then(() => true) : Promise.resolve(false);
  }

  /** Resolves once every write this handle has applied is durable: at once unless 'group', else at the next group commit. */
  private durable(): Promise<void> {
    if (this.durability !== 'group' || isBroken('kv-group-resolve-early')) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.groupWaiters.push({ resolve, reject });
      if (this.groupTimer === undefined) this.scheduleGroupCommit();
      else this.groupTimer.ref();
    });
  }

  /** batchAsync under DAXSTORE_TEST_BREAK=kv-group-resolve-early: resolved once applied, before any group commit. */
  private batchResolvedAtOnce(ops: readonly BatchOp<K, V>[]): Promise<void> {
    try {
      this.batch(ops);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---- transactions ------------------------------------------------------------------

  /**
   * Runs fn(txn) as a serializable transaction (transaction.ts): txn's reads see a snapshot
   * plus its own writes, its writes are buffered, and on return they are committed as ONE
   * record (all or nothing, also across a crash; durable per `durability`), if nothing it read
   * has changed since its snapshot. On such a conflict fn runs again with a fresh snapshot, up
   * to TXN_ATTEMPTS times, then DaxError('ECONFLICT'). If fn throws, nothing is written and the
   * error is rethrown. Returns what fn returned. fn must be synchronous and must not use txn
   * after it returns; writes through db itself inside fn are not part of the transaction.
   * A commit that finds no room reclaims as a put does (commitWithRoom), its snapshot released
   * first so compaction may free what it held, and fn runs again; after RECLAIM_ATTEMPTS rounds,
   * a store that can grow gets a last try whose large values' pages grow it as they need
   * (retryAfterReclaim's); ENOSPC only when that fails too, or reclaiming frees nothing.
   */
  transactionSync<T>(fn: (txn: KvTransaction<K, V>) => T): T {
    this.checkOpen('transactionSync');
    if (typeof fn !== 'function') throw new DaxError('EINVAL', 'transactionSync: argument must be a function');
    if (this.inTransaction)
      throw new DaxError('EINVAL', 'transactionSync: transactions do not nest (use the outer transaction)');
    this.inTransaction = true;
    let reclaims = 0;
    let lastTry = false;
    try {
      for (let attempt = 1; ; attempt++) {
        const S = this.registerSnapshot('transactionSync');
        this.txnSlabUsed = 0; // the last attempt's copies are dead: it ended
        const txn = new KvTransaction<K, V>(this.host, S);
        let noRoom: unknown = undefined;
        try {
          const result = fn(txn);
          if (result !== null && typeof (result as { then?: unknown })?.then === 'function')
            throw new DaxError(
              'EINVAL',
              'transactionSync: the callback returned a promise: it must be synchronous (nothing was written)',
            );
          txn.end();
          if (!txn.wrote) return result;
          const ranges = txn.rangesRead as Bounds[];
          txn.sortForCommit();
          const keys = txn.writeKeys;
          const values = txn.writeValues;
          const committed = lastTry
            ? this.growingLastTry(() => this.commitWithRoom(keys, values, txn.reads, ranges, S))
            : this.commitWithRoom(keys, values, txn.reads, ranges, S); // no closure made per transaction
          if (committed === true) return result;
          if (committed !== false) noRoom = committed.noRoom;
        } finally {
          txn.end();
          this.releaseSnapshot(S);
        }
        if (noRoom !== undefined) {
          // Out of room with the snapshot released: reclaim as a put does, then run fn again
          // (not a conflict: the attempt is not counted).
          if (isBroken('kv-no-reclaim') || isInjectedFault(noRoom) || lastTry) throw noRoom;
          if (++reclaims > RECLAIM_ATTEMPTS || !this.reclaim(false, reclaims > 1)) {
            // Each round grows the store one step at most, and one whose failed commit removed
            // its large values "made room" without growing: in a store that can grow, a last
            // try lets the values' pages grow it as they need (retryAfterReclaim's last try).
            if (!this.space.device.canGrow || isBroken('kv-txn-no-last-try')) throw noRoom;
            lastTry = true;
          }
          attempt--;
          continue;
        }
        if (attempt >= TXN_ATTEMPTS)
          throw new DaxError(
            'ECONFLICT',
            `transactionSync: ${attempt} attempts conflicted with other writers (keys it read kept changing); nothing was written`,
          );
        // Randomized, growing pauses: contending transactions stop colliding in lockstep.
        if (attempt > 2) Atomics.wait(this.backoff, 0, 0, Math.random() * Math.min(2, 0.01 * 2 ** attempt));
      }
    } finally {
      this.inTransaction = false;
    }
  }

  /** A range of the snapshot at S for a transaction: raw bytes, no limit (it merges its own writes), and the test of its bounds. */
  private rangeForTransaction(options: unknown, S: number): TxnRange {
    const opts = checkOptions<KvRangeOptions<K>>('transaction range', options, DELETE_RANGE_OPTIONS);
    const bounds = this.rangeBounds(opts, 'transaction range');
    return {
      range: this.iterate(bounds, Infinity, (ats, n) => this.copyEntriesPinned(ats, n), S),
      contains: (k) => inBounds(k, bounds),
      reverse: bounds.reverse === true,
      limit: opts.limit ?? Infinity,
      bounds,
    };
  }

  /** The bytes a value is stored as, a copy of the transaction's (txnBytes: valid until it ends). */
  private valueBytesOf(value: unknown, op: string): Uint8Array {
    if (this.valueEncoding === 'msgpack') resetPackScratch();
    const v = this.storedValue(value, op);
    const n = valueLengthOf(v, op);
    const out = this.txnBytes(n);
    if (typeof v === 'string') {
      if (n > 0) Buffer.from(out.buffer, out.byteOffset, n).write(v, 0, n, 'utf8');
    } else out.set(v);
    return out;
  }

  /** The index key of a transaction's key, a copy of the transaction's (txnBytes: valid until it ends). */
  private txnKey(key: unknown, op: string): Uint8Array {
    if (this.rawKeys && key instanceof Uint8Array && key.length <= MAX_KEY_BYTES) {
      // Binary bytes straight into the slab: the prefix byte, then the key (no scratch copy).
      const n = key.length;
      const out = this.txnBytes(n + 1);
      out[0] = KV_KEY_PREFIX;
      for (let i = 0; i < n; i++) out[i + 1] = key[i];
      return out;
    }
    const k = this.lookupKey(key, op);
    const out = this.txnBytes(k.length);
    out.set(k);
    return out;
  }

  /**
   * n bytes of the transaction's slab (8-aligned), a fresh slab when full; more than an eighth
   * of one: their own array. The view is the one made before at that offset and length, when
   * there is one (txnViews): the caller writes all n bytes.
   */
  private txnBytes(n: number): Uint8Array {
    if (n > TXN_SLAB_BYTES / 8) return new Uint8Array(n);
    let at = this.txnSlabUsed;
    if (at + n > TXN_SLAB_BYTES) {
      this.txnSlab = new ArrayBuffer(TXN_SLAB_BYTES);
      if (!isBroken('kv-txn-views-kept')) this.txnViews = new Array(TXN_SLAB_BYTES >>> 3);
      at = 0;
    }
    this.txnSlabUsed = at + ((n + 7) & ~7);
    const made = this.txnViews[at >>> 3];
    if (made !== undefined && made.length === n) return made;
    const view = new Uint8Array(this.txnSlab, at, n);
    this.txnViews[at >>> 3] = view;
    return view;
  }

  /** A key's encoded bytes (no prefix byte) decoded by this handle's key encoding. */
  private keyOfBytes(bytes: Uint8Array): K {
    switch (this.keyEncoding) {
      case 'ordered':
        return readOrderedKey(bytes, 0, bytes.length) as K;
      case 'utf8':
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8') as K;
      default:
        return new Uint8Array(bytes) as K;
    }
  }

  /**
   * commitWrites, with room: a transaction of deletes alone gets it as a batch of deletes does
   * (deleteWithRoom: never ENOSPC while the reserve lasts); any other that fails with ENOSPC is
   * reported as { noRoom } for transactionSync to reclaim with its snapshot released.
   */
  private commitWithRoom(
    keys: readonly Uint8Array[],
    values: readonly TxnValue[],
    reads: readonly Uint8Array[],
    ranges: Bounds[],
    S: number,
  ): boolean | { noRoom: unknown } {
    let deletesOnly = true;
    for (let i = 0; i < values.length; i++) if (values[i] !== undefined) deletesOnly = false;
    if (deletesOnly) return this.deleteWithRoom(() => this.commitWrites(keys, values, reads, ranges, S), 0);
    try {
      return this.commitWrites(keys, values, reads, ranges, S);
    } catch (e) {
      if (!isDaxError(e, 'ENOSPC')) throw e;
      return { noRoom: e };
    }
  }

  /** A transaction's commit: commitTransaction, one record. */
  private commitWrites(
    keys: readonly Uint8Array[],
    values: readonly TxnValue[],
    reads: readonly Uint8Array[],
    ranges: Bounds[],
    S: number,
  ): boolean {
    if (isBroken('kv-txn-record-per-write')) return this.commitTransactionPerWrite(keys, values, reads, ranges, S);
    return this.commitTransaction(keys, values, reads, ranges, S);
  }

  /**
   * commitWrites under DAXSTORE_TEST_BREAK=kv-txn-record-per-write: validated with its first
   * write, then one record per further write, each committed on its own: a crash between two
   * of them keeps part of the transaction.
   */
  private commitTransactionPerWrite(
    keys: readonly Uint8Array[],
    values: readonly TxnValue[],
    reads: readonly Uint8Array[],
    ranges: Bounds[],
    S: number,
  ): boolean {
    if (!this.commitTransaction(keys.slice(0, 1), values.slice(0, 1), reads, ranges, S)) return false;
    for (let i = 1; i < keys.length; i++) this.commitTransaction([keys[i]], [values[i]], [], [], S);
    return true;
  }

  /**
   * Commits a transaction read at snapshot S (transaction.ts): composes its writes as one BATCH
   * record, takes the entry locks of every key it read or wrote in ascending key order,
   * validates its reads (each key read still has no version newer than S; each range read,
   * once every sequence below this commit's is published, has no key with a version between S
   * and it), then seals, commits and publishes the record as one step. Returns false, with
   * nothing written, on a conflict.
   */
  private commitTransaction(
    keys: readonly Uint8Array[],
    values: readonly TxnValue[],
    reads: readonly Uint8Array[],
    ranges: Bounds[],
    S: number,
  ): boolean {
    // Keys and values in step, ascending (sortForCommit); reads ascending too. The entries'
    // offsets in the record (relative until it is reserved) are all a write needs here but
    // for large values, whose BatchItems are made only when there are any.
    const n = keys.length;
    const entryAts: number[] = new Array(n);
    let total = RECORD_HEADER_BYTES;
    let large = 0;
    for (let i = 0; i < n; i++) {
      const value = values[i];
      const valueLength = value === undefined ? 0 : value.length;
      if (valueLength > LARGE_VALUE_THRESHOLD_BYTES) large++;
      total += entryBytes(
        keys[i].length - 1,
        valueLength > LARGE_VALUE_THRESHOLD_BYTES ? LARGE_REF_BYTES : valueLength,
      );
    }
    if (total > SEGMENT_BYTES)
      throw new DaxError(
        'EINVAL',
        `transactionSync: ${total} bytes of writes exceed one record (${SEGMENT_BYTES} bytes); nothing was written`,
      );
    // Every key locked once, ascending (the one lock order): the writes merged with the keys only read.
    const lock = lockSet(keys, reads);
    const refs: EntryRef[] = new Array(lock.count);
    let locked = 0; // refs[0, locked) are held
    let items: BatchItem[] | undefined = undefined;
    let done = false;
    let at = -1;
    try {
      if (large > 0) {
        items = new Array(n);
        for (let i = 0; i < n; i++) {
          const value = values[i];
          const valueLength = value === undefined ? 0 : value.length;
          items[i] = {
            type: value === undefined ? 'del' : 'put',
            key: keys[i],
            value,
            valueLength,
            entryAt: 0,
            flags: 0,
            objectId: -1,
          };
        }
        this.prepareLargeItems(items, large);
      }
      ensureStageBytes(total);
      let e = RECORD_HEADER_BYTES;
      for (let i = 0; i < n; i++) {
        entryAts[i] = e;
        const value = values[i];
        if (items === undefined)
          e = writeEntry(
            stageViews,
            e,
            value === undefined ? ENTRY_DEL : ENTRY_PUT,
            keys[i],
            value,
            value?.length ?? 0,
          );
        else {
          const item = items[i];
          e = writeEntry(
            stageViews,
            e,
            item.type === 'put' ? ENTRY_PUT : ENTRY_DEL,
            item.key,
            item.value,
            item.valueLength,
            item.flags,
          );
        }
      }
      at = this.active.reserve(total, true);
      const tree = this.space.tree;
      touchPaths(tree, lock.keys, lock.writeAt); // the written keys' paths walked together, then each grab's descent is warm
      for (; locked < lock.count; locked++) refs[locked] = grab(tree, lock.keys[locked]);
      this.touchSupersededLocked(refs, lock.writeAt);
      if (!this.readsUnchangedLocked(lock.readAt, refs, S)) return false;
      const sequence = this.takeSequence();
      try {
        if (ranges.length > 0 && !this.rangesUnchanged(ranges, S, sequence)) return false;
        const writeRefs: EntryRef[] = new Array(n);
        const puts: boolean[] = new Array(n);
        for (let i = 0; i < n; i++) {
          const ref = refs[lock.writeAt[i]];
          writeRefs[i] = ref;
          setEntrySequence(stageViews, entryAts[i], sequence);
          setEntryPrevious(stageViews, entryAts[i], ref.state === 'value' ? ref.value : 0);
        }
        this.active.sealStaged(at, KIND_BATCH, n, total);
        for (let i = 0; i < n; i++) {
          puts[i] = values[i] !== undefined;
          entryAts[i] += at;
        }
        this.commitWrite();
        this.publishBatchLocked(writeRefs, puts, entryAts, sequence, true); // their marks' words were touched above
      } finally {
        this.snaps.published();
      }
      done = true;
    } finally {
      for (let i = 0; i < locked; i++) unlock(this.space.tree, refs[i]);
      if (!done) {
        if (at >= 0) this.active.rollback(at, total);
        if (items !== undefined)
          for (const item of items) if (item.objectId >= 0) removeQuietly(this.space, item.objectId);
      }
      this.active.endOperation();
    }
    this.count(BATCHES, 1);
    this.reaper.drain();
    if (this.snaps.sweepDue()) this.sweepTombstones();
    if (this.segmentOpened) this.autoCompact();
    return true;
  }

  /**
   * Loads the header of each written key's newest entry that publishBatchLocked will read (the
   * one the commit supersedes, when the index holds no note of it: supersededLocked), and the
   * word its dead mark goes into, all together: their cache misses overlap, where one by one
   * each would wait for the locked instructions between them (takeSequence's add, the seqlock
   * CASes).
   */
  private touchSupersededLocked(refs: EntryRef[], writeAt: number[]): void {
    if (this.space.device.poisonedBlocks !== 0) return;
    const views = this.views;
    const tree = this.space.tree;
    const table = this.table;
    let touched = 0;
    for (let i = 0; i < writeAt.length; i++) {
      const ref = refs[writeAt[i]];
      if (ref.state !== 'value') continue;
      touched += table.markWord(ref.value); // the word its dead mark goes into
      if (valueNote(tree, ref) !== 0) continue;
      const v = views.at(ref.value);
      touched += v.u32[(ref.value - v.base) / 4];
    }
    this.touched = touched; // a use, so the loads are not dead code
  }

  /** Whether every key read at S is unchanged: its newest version (stable: its lock is held) is still <= S. */
  private readsUnchangedLocked(readAt: number[], refs: EntryRef[], S: number): boolean {
    if (isBroken('kv-txn-no-validate')) return true;
    for (const i of readAt) {
      const ref = refs[i];
      if (ref.state === 'value' && sequenceAt(this.views, ref.value) > S) return false;
    }
    return true;
  }

  /**
   * Whether no key in any of the ranges read at S has a version between S and `sequence` (this
   * commit's). Waits first until every sequence below it is published, so a write ordered
   * before this commit is seen; versions after it belong to later commits and are looked
   * past along the chain (the snapshot at S holds them).
   */
  private rangesUnchanged(ranges: Bounds[], S: number, sequence: number): boolean {
    if (isBroken('kv-txn-no-validate')) return true;
    this.snaps.waitPublished(sequence - 1);
    const tree = this.space.tree;
    let changed = false;
    tree.epoch.pin();
    try {
      for (const bounds of ranges) {
        tree.scanPinned(bounds, (newest) => {
          let e = newest;
          for (;;) {
            const s = sequenceAt(this.views, e);
            if (s < sequence) {
              changed = s > S;
              break;
            }
            e = entryPrevious(this.views, e);
            if (e === 0) break; // the key is newer than this commit
          }
          return !changed;
        });
        if (changed) return false;
      }
    } finally {
      tree.epoch.unpin();
    }
    return true;
  }

  // ---- ranges ------------------------------------------------------------------------

  /**
   * [key, value] entries in key order (the order of the encoded keys' bytes: natural order
   * for 'ordered' keys), decoded copies, read in batches, as of the moment range() is called:
   * an implicit snapshot, whatever any thread writes meanwhile. The iterator holds it until it
   * ends: exhausted, return() (a for-of that breaks calls it), dispose, or garbage collected.
   * keys: false / values: false leave that side undefined and skip its work.
   */
  range(options?: KvIterateOptions<K>): KvIterator<[K, V]> {
    this.checkOpen('range');
    const opts = checkOptions<KvIterateOptions<K>>('range', options, RANGE_OPTIONS);
    const bounds = this.rangeBounds(opts, 'range');
    return this.entries(opts, bounds, this.registerSnapshot('range'), undefined);
  }

  /** A range of `snapshot` (snap.range()): the snapshot's registration, not one of its own. */
  private rangeAt(options: unknown, snapshot: KvSnapshot): KvIterator<[K, V]> {
    this.checkOpen('snapshot range');
    const opts = checkOptions<KvIterateOptions<K>>('snapshot range', options, RANGE_OPTIONS);
    return this.entries(opts, this.rangeBounds(opts, 'snapshot range'), snapshot.sequence, snapshot);
  }

  /** The iterator of range() at S: its own snapshot when `snapshot` is undefined (released when it ends). */
  private entries(
    opts: KvIterateOptions<K>,
    bounds: Bounds,
    S: number,
    snapshot: KvSnapshot | undefined,
  ): KvIterator<[K, V]> {
    const limit = opts.limit ?? Infinity;
    const keys = opts.keys !== false;
    const values = opts.values !== false;
    const owned = snapshot === undefined ? { host: this.host, sequence: S } : undefined;
    if (this.rawKeys && this.rawValues && keys && values)
      return this.iterate(bounds, limit, (ats, n) => this.copyEntriesPinned(ats, n), S, snapshot, owned) as KvIterator<
        [K, V]
      >;
    return this.iterate(
      bounds,
      limit,
      (ats, n) => this.decodeEntriesPinned(ats, n, keys, values, 'range'),
      S,
      snapshot,
      owned,
    );
  }

  /** The keys of a range, in order (range() with values: false, keys alone). */
  keys(options?: KvRangeOptions<K>): KvIterator<K> {
    this.checkOpen('keys');
    const opts = checkOptions<KvRangeOptions<K>>('keys', options, DELETE_RANGE_OPTIONS);
    const bounds = this.rangeBounds(opts, 'keys');
    const S = this.registerSnapshot('keys');
    return this.iterate(
      bounds,
      opts.limit ?? Infinity,
      (ats, n) => {
        const out: K[] = new Array(n);
        for (let i = 0; i < n; i++) {
          this.checkPoisonPinned(ats[i], ats[i] + ENTRY_HEADER_BYTES + entryKeyLength(this.views, ats[i]), 'keys');
          out[i] = this.keyPinned(ats[i]);
        }
        return out;
      },
      S,
      undefined,
      { host: this.host, sequence: S },
    );
  }

  /** The values of a range, in key order (range() with keys: false, values alone). */
  values(options?: KvRangeOptions<K>): KvIterator<V> {
    this.checkOpen('values');
    const opts = checkOptions<KvRangeOptions<K>>('values', options, DELETE_RANGE_OPTIONS);
    const bounds = this.rangeBounds(opts, 'values');
    const S = this.registerSnapshot('values');
    return this.iterate(
      bounds,
      opts.limit ?? Infinity,
      (ats, n) => {
        const out: V[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.valuePinned(ats[i], 'values')!; // resolved at S: never a DEL
        return out;
      },
      S,
      undefined,
      { host: this.host, sequence: S },
    );
  }

  /**
   * How many keys are in the range (all of them without options), at most `limit`. With no
   * bound it is the live-key counter (exact once writers stop, like stats().keys); with
   * bounds, a walk of the index over the range that reads each entry's header only (a
   * tombstone kept for snapshots is not a key). Not a snapshot.
   */
  getCount(options?: KvRangeOptions<K>): number {
    this.checkOpen('getCount');
    const opts = checkOptions<KvRangeOptions<K>>('getCount', options, COUNT_OPTIONS);
    const limit = opts.limit ?? Infinity;
    if (BOUND_NAMES.every((name) => opts[name] === undefined)) return Math.min(limit, this.counted(LIVE_KEYS));
    let bounds = this.rangeBounds(opts, 'getCount');
    let n = 0;
    const tree = this.space.tree;
    while (n < limit) {
      const want = Math.min(COUNT_BATCH, limit - n);
      let seen = 0;
      let last: Uint8Array | undefined;
      tree.epoch.pin();
      try {
        tree.scanPinned(bounds, (at, leaf) => {
          if (isDeletion(this.views, at)) return true;
          if (++seen === want) last = tree.leafKey(leaf);
          return seen < want;
        });
      } finally {
        tree.epoch.unpin();
      }
      n += seen;
      if (last === undefined) return n;
      bounds = boundsAfter(bounds, last, 'getCount', this.space.device.media.path);
    }
    return n;
  }

  /** Deletes every key (or every key in the range given, as deleteRange); returns how many. */
  clear(options?: KvRangeOptions<K>): number {
    this.checkOpen('clear');
    checkOptions<KvRangeOptions<K>>('clear', options, DELETE_RANGE_OPTIONS, BOUND_NAMES);
    return this.deleteRange(options);
  }

  /**
   * The batches of an iterator at snapshot S: up to `batch` leaves of the index (doubling from
   * RANGE_BATCH_FIRST), each resolved to its version at S (versions.ts; absent ones dropped),
   * read by `read`, all under one pin. The walk resumes after the last key visited. With
   * `snapshot` (snap.range()), a closed snapshot ends it with ECLOSED. The KvIterator hands the
   * items of each batch out one by one (a plain object's next(): no generator to resume per item).
   */
  private iterate<T>(
    start: Bounds,
    limit: number,
    read: (ats: Float64Array, n: number) => T[],
    S: number,
    snapshot?: KvSnapshot,
    owned?: { host: SnapshotHost; sequence: number },
  ): KvIterator<T> {
    let bounds = start;
    let remaining = limit;
    const ats = new Float64Array(RANGE_BATCH_MAX);
    // A limit says how much the caller means to read: up to RANGE_BATCH_MAX of it in the first batch.
    let batch = limit === Infinity ? RANGE_BATCH_FIRST : Math.min(RANGE_BATCH_MAX, Math.max(RANGE_BATCH_FIRST, limit));
    const fill = (cursor: RangeBatch): boolean => {
      if (remaining <= 0) return false;
      if (this.closed || (snapshot !== undefined && snapshot.closed)) this.iteratorClosed(S);
      const want = Math.min(batch, remaining);
      batch = Math.min(2 * batch, RANGE_BATCH_MAX);
      let n = 0;
      let m = 0;
      let items: T[] = [];
      let lastKey: Uint8Array | undefined;
      const tree = this.space.tree;
      tree.epoch.pin();
      try {
        tree.scanPinned(bounds, (at) => {
          ats[n++] = at;
          return n < want;
        });
        if (n > 0) {
          lastKey = this.indexKeyAt(ats[n - 1]);
          this.touchEntriesPinned(ats, n);
          m = this.resolveVersionsPinned(ats, n, S);
          if (m > 0) items = read(ats, m);
        }
      } finally {
        tree.epoch.unpin();
      }
      cursor.items = items;
      cursor.count = m;
      cursor.next_ = 0;
      remaining -= m;
      if (n < want || lastKey === undefined) cursor.last = true;
      else bounds = boundsAfter(bounds, lastKey, 'range', this.space.device.media.path);
      return true;
    };
    return new KvIterator(fill, this, snapshot, () => this.iteratorClosed(S), owned);
  }

  /** Ends an iterator whose store or snapshot was closed: ECLOSED, naming which. */
  private iteratorClosed(S: number): never {
    this.checkOpen('range');
    throw new DaxError('ECLOSED', `range: its snapshot (sequence ${S}) is closed`);
  }

  /**
   * The first three cache lines of n entries touched by loads whose addresses are all known up
   * front (none waits for another), so their cache misses overlap instead of stalling one by
   * one in the loops that read them next. Only with no poisoned block on the device: a load
   * past a short entry may land in the next block (never past the buffer: `last`).
   */
  private touchEntriesPinned(ats: Float64Array, n: number): void {
    if (this.space.device.poisonedBlocks !== 0) return;
    const views = this.views;
    let touched = 0;
    for (let i = 0; i < n; i++) {
      const v = views.at(ats[i]);
      const u8 = v.u8;
      const at = ats[i] - v.base;
      const last = u8.length - 1;
      touched += u8[at] + u8[Math.min(at + 64, last)] + u8[Math.min(at + 128, last)];
    }
    this.touched = touched; // a use, so the touching loads are not dead code
  }

  /**
   * Replaces the n newest entries in ats by the entries of their versions visible at S, in
   * place, dropping the keys absent at S; returns how many are left. The common case (the
   * newest entry is visible and a PUT) is one header read per entry, inline. Caller pinned.
   */
  private resolveVersionsPinned(ats: Float64Array, n: number, S: number): number {
    if (isBroken('kv-snapshot-newest')) return this.resolveNewestPinned(ats, n);
    const views = this.views;
    let m = 0;
    for (let i = 0; i < n; i++) {
      const at = ats[i];
      const v = views.at(at);
      const u32 = v.u32;
      const w = (at - v.base) >>> 2; // in the window: below 2^32, a shift keeps it an integer
      const hi = u32[w + 3];
      if ((hi === 0 ? u32[w + 2] : hi * 2 ** 32 + u32[w + 2]) <= S) {
        if ((u32[w] & Op.MASK) !== Op.DEL) ats[m++] = at;
        continue;
      }
      const e = this.versionPinned(at, S);
      if (e >= 0) ats[m++] = e;
    }
    return m;
  }

  /** resolveVersionsPinned under DAXSTORE_TEST_BREAK=kv-snapshot-newest: every key's newest entry, whatever S. */
  private resolveNewestPinned(ats: Float64Array, n: number): number {
    let m = 0;
    for (let i = 0; i < n; i++) if (!isDeletion(this.views, ats[i])) ats[m++] = ats[i];
    return m;
  }

  /** The entry of the version of `newest`'s key visible at S, -1 when absent at S (versions.ts). Caller pinned. */
  private versionPinned(newest: number, S: number): number {
    if (isBroken('kv-snapshot-newest')) return isDeletion(this.views, newest) ? -1 : newest;
    return versionAtPinned(
      this.views,
      newest,
      S,
      this.space.device.poisonedBlocks !== 0 ? this.poisonCheck : undefined,
    );
  }

  private readonly poisonCheck = (from: number, to: number): void => this.checkPoisonPinned(from, to, 'snapshot read');

  /**
   * Copies of the keys and values of n entries (caller pinned). Hot path of range(): the key
   * and value are adjacent in the entry, so each inline entry is ONE copy into one buffer
   * shared by the whole batch (one allocation per batch, two views per entry). A value kept
   * by the caller keeps that batch buffer (up to RANGE_BATCH_MAX entries) alive.
   * The copy is a loop of 32-bit words, not Buffer.copy: an entry's key starts 8-aligned and
   * its key + value are zero-padded to 8 inside the entry (layout.ts), so whole words stay
   * inside it; each copy lands 8-aligned in the batch buffer (up to 7 bytes of padding per
   * entry). Buffer.copy of a ~100-byte range makes a temporary Uint8Array and a
   * TypedArray.prototype.set call per entry (Node 20), a large share of a scan's CPU.
   */
  private copyEntriesPinned(ats: Float64Array, n: number): Array<[Uint8Array, Uint8Array]> {
    const views = this.views;
    const anyPoison = this.space.device.poisonedBlocks !== 0; // once per batch, not per entry
    let total = 0;
    for (let i = 0; i < n; i++) {
      const at = ats[i];
      const v = views.at(at);
      const u32 = v.u32;
      const w = (at - v.base) / 4;
      const keyLength = u32[w] & 0xffff;
      const valueLength = u32[w + 1];
      if (anyPoison) this.checkPoisonPinned(at, at + ENTRY_HEADER_BYTES + keyLength + valueLength, 'range');
      total += u32[w] >>> 24 === 0 ? (keyLength + valueLength + 7) & ~7 : (keyLength + 7) & ~7;
    }
    const ab = Buffer.allocUnsafeSlow(total).buffer; // every byte is written below (no zero fill needed)
    const out32 = new Uint32Array(ab);
    const items: Array<[Uint8Array, Uint8Array]> = new Array(n);
    let o = 0;
    for (let i = 0; i < n; i++) {
      const at = ats[i];
      const v = views.at(at);
      const u32 = v.u32;
      const w = (at - v.base) / 4;
      const keyLength = u32[w] & 0xffff;
      const large = u32[w] >>> 24 !== 0;
      const valueLength = large ? 0 : u32[w + 1];
      const bytes = (keyLength + valueLength + 7) & ~7;
      const from = w + ENTRY_HEADER_BYTES / 4;
      const to = o >>> 2;
      for (let k = 0; k < bytes >>> 2; k++) out32[to + k] = u32[from + k];
      const key = new Uint8Array(ab, o, keyLength);
      items[i] = [
        key,
        large
          ? copyLargePinned(this.space, this.largeRefPinned(at, 'range'), 'range')
          : new Uint8Array(ab, o + keyLength, valueLength),
      ];
      o += bytes;
    }
    return items;
  }

  /** Index-key bounds for a user range: inside [0x01, 0x02), intersected with the prefix's range. */
  private rangeBounds(opts: KvRangeOptions<K>, op: string): Bounds {
    if (opts.gt !== undefined && opts.gte !== undefined) throw new DaxError('EINVAL', `${op}: both gt and gte given`);
    if (opts.lt !== undefined && opts.lte !== undefined) throw new DaxError('EINVAL', `${op}: both lt and lte given`);
    let lo: [Uint8Array, boolean] = [LOWEST, true]; // [key, inclusive]
    let hi: [Uint8Array, boolean] = [BEYOND, false];
    const tighterLo = (k: Uint8Array, incl: boolean): void => {
      const c = compareBytes(k, lo[0]);
      if (c > 0 || (c === 0 && !incl)) lo = [k, incl];
    };
    const tighterHi = (k: Uint8Array, incl: boolean): void => {
      const c = compareBytes(k, hi[0]);
      if (c < 0 || (c === 0 && !incl)) hi = [k, incl];
    };
    if (opts.gt !== undefined) tighterLo(this.boundKey(opts.gt, `${op} gt`), false);
    if (opts.gte !== undefined) tighterLo(this.boundKey(opts.gte, `${op} gte`), true);
    if (opts.lt !== undefined) tighterHi(this.boundKey(opts.lt, `${op} lt`), false);
    if (opts.lte !== undefined) tighterHi(this.boundKey(opts.lte, `${op} lte`), true);
    if (opts.prefix !== undefined) {
      const compound = this.keyEncoding === 'ordered' ? orderedPrefixRange(opts.prefix, op) : undefined;
      if (compound !== undefined) {
        tighterLo(withPrefix(compound.gte), true);
        tighterHi(withPrefix(compound.lt!), false);
      } else {
        const p = this.boundKey(opts.prefix, `${op} prefix`);
        tighterLo(p, true);
        tighterHi(prefixEnd(p) ?? BEYOND, false);
      }
    }
    const b: Bounds = { reverse: opts.reverse === true };
    if (lo[1]) b.gte = lo[0];
    else b.gt = lo[0];
    if (hi[1]) b.lte = hi[0];
    else b.lt = hi[0];
    return b;
  }

  /** Decoded keys and values of n entries (caller pinned): each decoded straight from its record, or left undefined. */
  private decodeEntriesPinned(ats: Float64Array, n: number, keys: boolean, values: boolean, op: string): Array<[K, V]> {
    const items: Array<[K, V]> = new Array(n);
    const msgpack = this.msgpack;
    if (keys && values && msgpack !== undefined && this.keyEncoding === 'ordered') {
      // The defaults' loop: one header read serves key and value (none is a DEL: resolved).
      const views = this.views;
      for (let i = 0; i < n; i++) {
        const at = ats[i];
        const v = views.at(at);
        const u32 = v.u32;
        const w = (at - v.base) / 4;
        const head = u32[w];
        const keyStart = at - v.base + ENTRY_HEADER_BYTES; // in the window
        const start = keyStart + (head & 0xffff);
        const length = u32[w + 1];
        this.checkPoisonPinned(at, start + v.base + length, op);
        const value = head >>> 24 !== 0 ? this.decodeValuePinned(at, op) : msgpack.unpackWords(u32, start, length, op);
        items[i] = [readOrderedKey(v.u8, keyStart, head & 0xffff) as K, value as V];
      }
      return items;
    }
    for (let i = 0; i < n; i++) {
      const at = ats[i];
      if (!values) this.checkPoisonPinned(at, at + ENTRY_HEADER_BYTES + entryKeyLength(this.views, at), op);
      const value = values ? (this.valuePinned(at, op) as V) : (undefined as V); // valuePinned checks the whole entry; never a DEL here
      items[i] = [keys ? this.keyPinned(at) : (undefined as K), value];
    }
    return items;
  }

  /** EIO when [from, to) of a record touches a poisoned block. One load when the device has none (the usual case). */
  private checkPoisonPinned(from: number, to: number, op: string): void {
    const device = this.space.device;
    if (device.poisonedBlocks === 0) return; // racy like any check before a copy: memory failure is asynchronous
    const first = Math.floor((from - device.dataOffset) / BLOCK_BYTES);
    const last = Math.floor((to - 1 - device.dataOffset) / BLOCK_BYTES);
    for (let b = first; b <= last; b++) {
      if (device.isPoisoned(b))
        throw new DaxError(
          'EIO',
          `${op}: the record of a key at offset ${from} is on poisoned block ${b}; overwrite or delete the key to clear it`,
        );
    }
  }

  /** The index key (prefix + key bytes) of the entry at `at`, copied from the record. Caller pinned. */
  private indexKeyAt(at: number): Uint8Array {
    const v = this.views.at(at);
    const keyLength = entryKeyLength(v, at);
    const key = new Uint8Array(keyLength + 1);
    key[0] = KV_KEY_PREFIX;
    v.buf.copy(key, 1, at - v.base + ENTRY_HEADER_BYTES, at - v.base + ENTRY_HEADER_BYTES + keyLength);
    return key;
  }

  /** Up to max keys present in bounds (tombstones skipped), in order. */
  private scanKeys(bounds: Bounds, max: number): Uint8Array[] {
    const keys: Uint8Array[] = [];
    const tree = this.space.tree;
    tree.epoch.pin();
    try {
      tree.scanPinned(bounds, (at, leaf) => {
        if (!isDeletion(this.views, at)) keys.push(tree.leafKey(leaf));
        return keys.length < max;
      });
    } finally {
      tree.epoch.unpin();
    }
    return keys;
  }

  // ---- damage (daxstore check) -------------------------------------------------------

  /**
   * Reads every value the store serves and says which cannot be served: keys marked LOST by a
   * salvage, and keys whose large value fails its checksum (ECORRUPT) or sits on a poisoned
   * block (EIO). Inline values need no pass: recovery checked every record at open. For
   * `daxstore check`; costs a read of every large value.
   */
  auditValues(): { lost: Uint8Array[]; unreadable: Array<{ key: Uint8Array; code: string; message: string }> } {
    this.checkOpen('auditValues');
    const out = {
      lost: [] as Uint8Array[],
      unreadable: [] as Array<{ key: Uint8Array; code: string; message: string }>,
    };
    const ats: number[] = [];
    this.space.epoch.guard(() => this.space.tree.scanPinned({ gte: LOWEST, lt: BEYOND }, (at) => void ats.push(at)));
    for (const at of ats) {
      this.space.epoch.guard(() => {
        if (this.space.tree.lookupPinned(this.indexKeyAt(at)) !== at) return; // changed meanwhile
        const flags = entryFlags(this.views, at);
        if (flags === 0) return;
        const key = this.indexKeyAt(at).subarray(1);
        if ((flags & ENTRY_FLAG_LOST) !== 0) return void out.lost.push(key);
        try {
          this.valueCopyPinned(at, 'check');
        } catch (e) {
          if (!(e instanceof DaxError)) throw e;
          out.unreadable.push({ key, code: e.code, message: e.message });
        }
      });
    }
    return out;
  }

  /**
   * Marks `key` LOST (`daxstore check --repair`: its value fails its checksum): a LOST entry
   * with a new sequence supersedes its newest version (a large value's object is retired as
   * by any overwrite); reads then throw EIO until the key is written again. False when the
   * key is absent.
   */
  markLost(key: Key): boolean {
    this.checkOpen('markLost');
    const k = scratchIndexKey(this.putScratch, this.putViews, key, 'markLost');
    if (this.space.tree.lookup(k) === undefined) return false;
    this.putEntry(k, undefined, 0, ENTRY_FLAG_LOST, -1, UNCONDITIONAL);
    this.reaper.drain();
    return true;
  }

  /** The bytes of `key`'s large value as they are, unchecked (check --repair quarantines a damaged one). EINVAL when it has none. */
  rawLargeValue(key: Key): Uint8Array {
    this.checkOpen('rawLargeValue');
    return this.space.epoch.guard(() => {
      const at = this.space.tree.lookupPinned(
        scratchIndexKey(this.lookupScratch, this.lookupViews, key, 'rawLargeValue'),
      );
      const ref = at === undefined ? undefined : largeRefAt(this.views, at);
      if (ref === undefined) throw new DaxError('EINVAL', 'rawLargeValue: the key has no large value');
      return this.space.object(ref.id).read(0, ref.length);
    });
  }

  /** The keys in a range, without their values (the CLI lists keys whose values cannot be read). */
  keysForCheck(opts: KvRangeOptions<K> = {}): Uint8Array[] {
    this.checkOpen('keysForCheck');
    return this.scanKeys(this.rangeBounds(opts, 'keysForCheck'), opts.limit ?? Infinity).map((k) => k.subarray(1));
  }

  /**
   * Removes the tombstones no snapshot needs any more (snapshots.ts): a tombstone whose DEL has a
   * sequence <= the oldest snapshot's is seen as absent by every snapshot there is or will be.
   * One walk of the key-value range (amortized: it runs when the tombstones have doubled since
   * the last one, snapshots.ts SWEEP_AT), each removal under the key's entry lock.
   */
  private sweepTombstones(): void {
    const horizon = this.snaps.oldest();
    const tree = this.space.tree;
    let bounds: Bounds = { gte: LOWEST, lt: BEYOND };
    for (;;) {
      const keys: Uint8Array[] = [];
      let visited = 0;
      let lastLeafKey: Uint8Array | undefined;
      tree.epoch.pin();
      try {
        tree.scanPinned(bounds, (at, leaf) => {
          visited++;
          if (isDeletion(this.views, at) && sequenceAt(this.views, at) <= horizon) keys.push(tree.leafKey(leaf));
          if (visited === SWEEP_BATCH) lastLeafKey = tree.leafKey(leaf);
          return visited < SWEEP_BATCH;
        });
      } finally {
        tree.epoch.unpin();
      }
      for (const k of keys) {
        const ref = grab(tree, k);
        if (
          ref.state === 'value' &&
          isDeletion(this.views, ref.value) &&
          sequenceAt(this.views, ref.value) <= horizon
        ) {
          deleteLocked(tree, ref);
          this.snaps.addTombstones(-1);
        } else unlock(tree, ref);
      }
      if (lastLeafKey === undefined) break;
      bounds = boundsAfter(bounds, lastLeafKey, 'tombstone sweep', this.space.device.media.path);
    }
    this.snaps.setSweepAt(this.snaps.tombstones, this.counted(LIVE_KEYS));
  }

  // ---- lifecycle ---------------------------------------------------------------------

  /**
   * @internal The space words (tests): holders of the priority writer reaped after they died,
   * whether deletes go straight to the priority writer (the store is known to be out of space),
   * and the reserve last set on the device.
   */
  spaceInternals(): { priorityReaps: number; lowSpace: boolean; reserveSet: number; priority: number[] } {
    return {
      priority: Array.from(this.spaceWords.subarray(PRIORITY_STATE, PRIORITY_STATE + 3)),
      priorityReaps: this.spaceWords[PRIORITY_REAPS],
      lowSpace: this.spaceWords[LOW_SPACE] === 1,
      reserveSet: this.spaceWords[RESERVE_SET],
    };
  }

  /**
   * @internal Whether the priority writer's hand-over words describe its segment (tests): with
   * the compaction mutex taken (a holder that died is reaped first), the records of the segment
   * they name validate from its start up to the `used` they say, and no further. A message
   * naming the difference, or undefined.
   */
  priorityProblem(): string | undefined {
    this.checkOpen('priorityProblem');
    return this.withPriorityWriter(() => {
      const word = this.spaceWords[PRIORITY_STATE];
      const named = Atomics.load(this.openTable, PRIORITY_SLOT);
      if (word === 0)
        return named > 0 ? `the priority slot names block ${named - 1}, the hand-over words none` : undefined;
      if (named !== word) return `the priority slot names ${named}, the hand-over words block ${word - 1}`;
      const base = this.space.device.blockOffset(word - 1);
      const nonce = this.spaceWords[PRIORITY_STATE + 2];
      let end = 0;
      for (;;) {
        const check = checkRecord(this.views, base + end, base + SEGMENT_BYTES, nonce);
        if (check.status !== 'ok') break;
        end += check.totalBytes;
      }
      const used = this.spaceWords[PRIORITY_STATE + 1];
      return end === used
        ? undefined
        : `priority segment at block ${word - 1}: its records validate up to ${end}, the hand-over words say ${used}`;
    });
  }

  stats(): KvStats {
    this.checkOpen('stats');
    const media = this.space.device.media;
    const device = this.space.device.stats();
    const keys = this.counted(LIVE_KEYS);
    const held = this.snaps.stats();
    return {
      keys,
      segments: Atomics.load(this.i32, SEGMENTS),
      deadEntries: this.counted(DEAD),
      puts: this.counted(PUTS),
      deletes: this.counted(DELETES),
      batches: this.counted(BATCHES),
      sequence: this.lastSequence(),
      durability: this.durability,
      persistMethod:
        media.flushMethod === 'msync'
          ? 'msync'
          : media.flushMethod === 'sim'
            ? 'simulated flush + fence'
            : `${media.flushMethod} + sfence`,
      mediaKind: media.kind,
      freeBlocks: device.freeBlocks,
      sizeBytes: this.space.device.geometry.sizeBytes,
      maxSize: Math.max(this.space.device.maxBytes, this.space.device.geometry.sizeBytes),
      indexBytesPerKey: keys === 0 ? 0 : this.space.tree.stats().liveBytes / keys,
      lostWakeups: this.space.tree.stats().lostWakeups,
      recovery: this.recovery,
      largeValueObjects: this.space.objects.liveIds().filter(isLargeValueId).length,
      largeValueObjectsRemoved: this.reaper.removed,
      largeValueOrphansRemoved: this.largeValuesAtOpen?.orphansRemoved ?? 0,
      fileBytes: media.size,
      ...this.table.totals(this.openBorn()),
      reclaimedBytes: this.spaceWords[RECLAIMED_BYTES],
      compactionRuns: this.spaceWords[COMPACTION_RUNS],
      autoCompactions: this.spaceWords[AUTO_RUNS],
      freeExtentBytes: device.freeExtents * SEGMENT_BYTES,
      reserveBytes: Math.min(device.freeExtents, device.reserveExtents) * SEGMENT_BYTES,
      priorityRoomBytes:
        this.spaceWords[PRIORITY_STATE] > 0
          ? Math.max(0, SEGMENT_BYTES - SEAL_BYTES - this.spaceWords[PRIORITY_STATE + 1])
          : 0,
      priorityReaps: this.spaceWords[PRIORITY_REAPS],
      snapshots: held.snapshots,
      oldestSnapshotMs: held.oldestMs,
      versionsHeldForSnapshots: this.snaps.deferred + this.deferredHere.length,
      tombstones: this.snaps.tombstones,
    };
  }

  /**
   * Moves the live entries of segments at most `maxLiveRatio` live (default 0.5) into the
   * store's priority segment, under each key's entry lock with a re-check (R3), then retires
   * the old segments through the epoch (R6: views and scans pinned meanwhile stay valid).
   * Never fails for lack of space: the priority segment comes from the reserve, and when even
   * that is gone compaction stops early and reports what it freed.
   */
  compact(options?: { maxLiveRatio?: number }): CompactionReport {
    this.checkOpen('compact');
    const opts = checkOptions<{ maxLiveRatio?: number }>('compact', options, COMPACT_OPTIONS);
    const ratio = opts.maxLiveRatio ?? 0.5;
    // A nearly full priority segment first becomes an ordinary closed one: what earlier
    // compactions and deletes left there (tombstones kept by the rule, copies) is judged again now.
    const report = this.compactNow({ maxLiveRatio: ratio }, true);
    if (this.snaps.sweepDue()) this.sweepTombstones();
    // The freed segments wait in the epoch's limbo (R6). Collect now: otherwise they return to
    // the allocator only when some other retire happens to collect, and a store whose writes
    // retire nothing else (the index appends in place) runs into ENOSPC with its space in limbo.
    this.reapLarge();
    return report;
  }

  /** close(): `using db = open(...)` closes the store at the end of the block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** close() (which makes every write durable first): `await using db = open(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    try {
      this.close();
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** One compaction (compaction.ts) into the priority writer, with the compaction mutex held; counted in the space words. */
  private compactNow(opts: CompactOptions, leavePriority?: boolean): CompactionReport;
  private compactNow(opts: CompactOptions, leavePriority: boolean, tryOnly: true): CompactionReport | undefined;
  private compactNow(opts: CompactOptions, leavePriority = false, tryOnly = false): CompactionReport | undefined {
    this.putsMarkDead = true; // a store that compacts: its puts' dead marks spare later lookups
    // Never start a segment whose live entries do not fit in what is left (a half-moved
    // segment frees nothing and keeps the copies' room).
    const roomBytes = opts.roomBytes ?? ((): number => this.compactionRoom());
    this.drainDeferred(); // what snapshots released since: back to the allocator first
    // A compacted segment can hold versions a snapshot still reads (through back pointers):
    // freed once none older than the last sequence, read after the segment's moves, is held.
    const retireSegment = (block: number): void => this.retireOrDefer(DEFER_SEGMENT, block, this.lastSequence() + 1);
    const run = (writer: SegmentWriter): CompactionReport => {
      // Only a nearly full one (moving what a segment with room holds is work for nothing),
      // and only with a free extent to go on in (that room is compaction's otherwise).
      if (leavePriority && writer.room < SEGMENT_BYTES / 4 && this.space.device.stats().freeExtents > 0) writer.leave();
      // The copies take the reserve rather than grow the store: what they free gives it back.
      writer.growsWhenFull = false;
      let report: CompactionReport;
      try {
        report = compactSegmentsLocked(this.space, this.views, writer, this.openTable, this.progress, this.table, {
          ...opts,
          roomBytes,
          retireSegment,
        });
      } finally {
        writer.growsWhenFull = true;
      }
      this.spaceWords[RECLAIMED_BYTES] += report.bytesReclaimed; // under the mutex (racy only with kv-compact-no-mutex)
      this.spaceWords[COMPACTION_RUNS]++;
      return report;
    };
    const report = isBroken('kv-compact-no-mutex')
      ? this.compactWithoutMutex(run)
      : this.withPriorityWriter(run, tryOnly);
    if (report !== undefined) Atomics.sub(this.i32, SEGMENTS, report.segmentsFreed);
    return report;
  }

  /**
   * compactNow under DAXSTORE_TEST_BREAK=kv-compact-no-mutex: compactions run side by side, each
   * into its own handle's writer (the shared priority writer cannot be used without the mutex).
   */
  private compactWithoutMutex(run: (writer: SegmentWriter) => CompactionReport): CompactionReport {
    return run(this.writer);
  }

  /**
   * Runs fn with the compaction mutex held and the priority writer as the active writer,
   * resumed from and parked into the shared words (parking commits: its records are durable
   * when the mutex is released). This thread's own writer is committed first, so its records
   * still become durable in the order it wrote them. Caller holds no entry lock (lock order:
   * the compaction mutex, then entry locks).
   */
  private withPriorityWriter<T>(fn: (writer: SegmentWriter) => T): T;
  private withPriorityWriter<T>(fn: (writer: SegmentWriter) => T, tryOnly: boolean): T | undefined;
  private withPriorityWriter<T>(fn: (writer: SegmentWriter) => T, tryOnly = false): T | undefined {
    // tryOnly: undefined at once when a live thread holds the mutex (it is compacting already).
    if (tryOnly) {
      const held = Atomics.load(this.i32, COMPACTION);
      if (held !== 0 && !holderWordDead(held)) return undefined;
    }
    this.writer.commit();
    const pw = this.priorityWriter;
    const state = this.spaceWords.subarray(PRIORITY_STATE, PRIORITY_STATE + 4);
    // A holder that died: reaped (writer-reaper.ts: its compaction's retirement finished, the
    // priority segment cut back to its valid records) before this thread goes on.
    const onSteal = (dead: number): void => void this.space.epoch.reap(holderIdOf(dead));
    if (!tryOnly) lockWord(this.i32, COMPACTION, onSteal);
    else if (!tryLockWord(this.i32, COMPACTION, onSteal)) return undefined;
    const owner = PRIORITY_SLOT * PROGRESS_WORDS + W_OWNER;
    try {
      // The slot names its holder while the mutex is held: a reaper finds it by that if this thread dies.
      if (!isBroken('kv-priority-unreaped')) Atomics.store(this.progress, owner, participantId());
      pw.resumeShared(state);
      this.active = pw;
      try {
        const room = pw.room;
        const out = fn(pw);
        testHooks.priorityHeld?.(pw.room !== room);
        return out;
      } finally {
        this.active = this.writer;
        pw.parkShared(state);
        this.setReserve(pw.room);
        if (this.space.device.stats().freeExtents > this.spaceWords[RESERVE_SET]) this.spaceWords[LOW_SPACE] = 0;
      }
    } finally {
      Atomics.store(this.progress, owner, 0);
      unlockWord(this.i32, COMPACTION);
    }
  }

  /**
   * The device's reserve: none while the priority segment's room already is what compaction
   * needs (neededCompactionRoom, and half a segment): in a small store the extent is then the
   * puts'. Else RESERVE_EXTENTS while that room is PRIORITY_SPARE_BYTES or more, and
   * RESERVE_FULL_EXTENTS below it: compaction's room (the priority segment's and the reserve)
   * stays a segment and a spare above what the fullest segment needs (deleteWithRoom: the
   * deletes of a full store compact before they eat into it). Needs the compaction mutex
   * (RESERVE_SET is written under it).
   */
  private setReserve(priorityRoom: number): void {
    if (isBroken('kv-no-reserve')) return this.setNoReserve();
    const want = this.reserveFor(priorityRoom);
    if (this.spaceWords[RESERVE_SET] === want) return;
    this.space.device.setReserve(want);
    this.spaceWords[RESERVE_SET] = want;
  }

  /** setReserve's figure for a priority segment with `priorityRoom` bytes of room (0: none open). */
  private reserveFor(priorityRoom: number): number {
    const extents = this.dataExtents;
    if (extents < RESERVE_MIN_EXTENTS) return 0;
    if (priorityRoom >= SEGMENT_BYTES / 2 && priorityRoom >= this.neededCompactionRoom()) return 0;
    if (priorityRoom >= PRIORITY_SPARE_BYTES || extents < RESERVE_TWO_MIN_EXTENTS) return RESERVE_EXTENTS;
    return isBroken('kv-one-extent-reserve') ? RESERVE_EXTENTS : RESERVE_FULL_EXTENTS;
  }

  /** setReserve under DAXSTORE_TEST_BREAK=kv-no-reserve: no extent is kept for deletes and compaction. */
  private setNoReserve(): void {
    this.space.device.setReserve(0);
    this.spaceWords[RESERVE_SET] = 0;
  }

  /**
   * The room compaction keeps so it can always make progress: what moving the emptiest
   * closed segment may copy (its live entries and its tombstones, by the segment table),
   * with an eighth of a segment to spare, and never more than a whole segment (any segment
   * fits in one). Deletes compact before they eat into it; puts never touch it. While a
   * closed segment's figures are still recovery's estimate (measureGuesses has not run), a
   * whole segment: an estimate can be far low, and the reserve it would let go (reserveFor)
   * is what the deletes of a reopened full store need.
   */
  private neededCompactionRoom(): number {
    // Cached until a segment opens, closes, goes or is measured: entries only die in between,
    // which only lowers the true figure (the cached one errs on the safe side).
    const changes = this.table.changes;
    if (this.spaceWords[NEEDED_AT] === changes + 1) return this.spaceWords[NEEDED_ROOM];
    const open = this.openExtents();
    const closed = this.table.closedSegments(open);
    const estimated = !isBroken('kv-trust-estimates') && this.table.guesses > 0 && this.table.guessed(open).length > 0;
    const emptiest = closed.length === 0 || estimated ? SEGMENT_BYTES : closed[0].moveBytes;
    const needed = Math.min(SEGMENT_BYTES, emptiest + SEGMENT_BYTES / 8) + COPY_SLACK_BYTES;
    this.spaceWords[NEEDED_ROOM] = needed;
    this.spaceWords[NEEDED_AT] = changes + 1;
    return needed;
  }

  /** BORN of each open segment (its writer's progress line), by extent. */
  private openBorn(): Map<number, number> {
    const out = new Map<number, number>();
    for (let i = 0; i < this.openTable.length; i++) {
      const w = Atomics.load(this.openTable, i);
      if (w > 0) out.set((w - 1) / HUGE_BLOCKS, this.progress[i * PROGRESS_WORDS + BORN]);
    }
    return out;
  }

  /** Extents named in the open-segment table. */
  private openExtents(): Set<number> {
    const open = new Set<number>();
    for (let i = 0; i < this.openTable.length; i++) {
      const w = Atomics.load(this.openTable, i);
      if (w > 0) open.add((w - 1) / HUGE_BLOCKS);
    }
    return open;
  }

  /**
   * Automatic reclamation, one small step (autoCompact): after this handle's writer opened a
   * new segment (every 2 MiB of its writes), when spacePressure says free extents are at the
   * low water mark or the closed log's space amplification is high, compacts
   * the emptiest closed segments (AUTO_SEGMENTS at most) into the priority segment. Skipped
   * when another thread holds the compaction mutex (it is compacting already), inside read()
   * (this thread's pin holds every grace period open) and with autoCompact: false. What it
   * frees goes back to the allocator without waiting for other threads' pins (their grace
   * periods end at a later collect). Caller holds no entry lock.
   */
  private autoCompact(): void {
    this.segmentOpened = false;
    if (this.spaceWords[AUTO_OFF] === 1 || this.space.epoch.isPinned() || isBroken('kv-no-auto-compact')) return;
    const pressure = this.spacePressure();
    if (pressure === 'none') return;
    const report = this.compactNow(
      {
        maxLiveRatio: pressure === 'low-space' ? AUTO_LOW_SPACE_LIVE_RATIO : AUTO_MAX_LIVE_RATIO,
        fromTable: true,
        maxSegments: AUTO_SEGMENTS,
        afterSegment: () => this.releaseRetired(0),
      },
      false,
      true,
    );
    if (report === undefined) return;
    this.spaceWords[AUTO_RUNS]++;
    this.releaseRetired(0);
  }

  /** Whole 2 MiB extents of the store now (it grows; the segment table is sized for its capacity). */
  private get dataExtents(): number {
    return Math.floor(this.space.device.dataBlocks / HUGE_BLOCKS);
  }

  /**
   * Whether an automatic step is due, by the segment table and the allocator's counters (no
   * log read): 'low-space' when the free extents an ordinary write may take (the reserve
   * excluded) are at the low water mark in a store that cannot grow (one that can grows rather
   * than copy: reclaim), 'amplified' when the closed segments hold AUTO_AMPLIFICATION times
   * their live bytes (AUTO_AMPLIFICATION_FIXED in a store that cannot grow) and
   * AUTO_MIN_DEAD_SEGMENTS segments of dead bytes, else 'none' (a store with free space and a
   * log within that bound does not pay).
   */
  private spacePressure(): 'none' | 'amplified' | 'low-space' {
    const closed = this.table.closedSegments(this.openExtents());
    if (closed.length === 0) return 'none';
    const device = this.space.device.stats();
    const canGrow = this.space.device.canGrow;
    const lowWater = Math.max(AUTO_LOW_WATER_MIN, Math.floor(this.dataExtents * LOW_WATER_FRACTION));
    if (device.freeExtents - device.reserveExtents <= lowWater && !canGrow) return 'low-space';
    const { live, dead } = closedLog(closed);
    const bound = canGrow ? AUTO_AMPLIFICATION : AUTO_AMPLIFICATION_FIXED;
    return dead >= (bound - 1) * live && dead >= AUTO_MIN_DEAD_SEGMENTS * SEGMENT_BYTES ? 'amplified' : 'none';
  }

  /**
   * After an allocation failed: makes room, cheapest first. (1) Releases what the epoch holds
   * (retired segments and blocks, superseded large values). (2) A store that can grow (below
   * its maxSize) grows one step, unless its closed log is mostly dead (compactBeforeGrowing):
   * then compaction comes first and growth only when it freed nothing. (3) When the segment
   * table says it is worth it, compacts the emptiest segments whose live entries fit in the
   * room compaction has. True when it made room, so the write that failed is worth retrying:
   * a whole free extent more (for a put), or any room more for the priority writer
   * (`forDelete`: a delete must get its record in, even slowly, so any segment with
   * reclaimable bytes qualifies). Inside read() (this thread's pin holds every grace period
   * open) only (2): a growth needs no grace period. `again`: an earlier reclaim for the same
   * write returned after its cheap steps alone and the write failed once more: what they free
   * no longer ends the reclaim early (a few blocks released as other threads' pins move on,
   * or the reserve let go, are not the free extent a put needs), so compaction or growth runs.
   */
  private reclaim(forDelete = false, again = false): boolean {
    const device = this.space.device;
    const growable = !forDelete && device.canGrow;
    if (this.space.epoch.isPinned()) return growable && this.growForWrite();
    // Counts in place of estimates may let the reserve go (neededCompactionRoom): room for a put.
    const reserve = this.spaceWords[RESERVE_SET];
    this.measureGuesses();
    const cheap = !again || isBroken('kv-reclaim-cheap-again');
    if (!forDelete && this.spaceWords[RESERVE_SET] < reserve && cheap) return this.roomMade();
    const measure = (): number =>
      forDelete ? this.compactionRoom() : device.stats().freeExtents * SEGMENT_BYTES + device.stats().freeBlocks;
    const before = measure();
    // A store that can grow does not wait for other threads' pins: growing is cheaper.
    this.releaseRetired(growable ? 0 : RECLAIM_WAIT_MS);
    if (cheap && measure() > before) return this.roomMade();
    // An index checkpoint only speeds up the next open: its space goes before growth or compaction.
    if (this.dropCheckpoints()) {
      this.releaseRetired(growable ? 0 : RECLAIM_WAIT_MS);
      if (measure() > before) return this.roomMade();
    }
    if (growable && !this.compactBeforeGrowing() && this.growForWrite()) return true;
    if (!this.worthCompacting(forDelete)) return growable && this.growForWrite();
    const report = this.compactNow({
      maxLiveRatio: forDelete ? 1 : RECLAIM_MAX_LIVE_RATIO,
      fromTable: true,
      maxSegments: forDelete ? TREADMILL_SEGMENTS : RECLAIM_SEGMENTS,
      afterSegment: () => this.releaseRetired(),
      // A delete's round goes on until compaction has room to spare again (an eighth of a
      // segment beyond what the emptiest segment needs): the deletes that follow have room
      // for many records before the next round.
      enough: forDelete
        ? (): boolean => this.compactionRoom() >= this.neededCompactionRoom() + SEGMENT_BYTES / 8
        : undefined,
    });
    // The table promised more than the log held (tombstones that must be kept, estimates):
    // no more tries until enough has died since.
    if (report.segmentsFreed === 0) this.spaceWords[FRUITLESS_AT] = this.table.diedBytes();
    this.releaseRetired();
    if (measure() > before) return this.roomMade();
    return growable && this.growForWrite();
  }

  /**
   * Whether a full store that can grow compacts first: its closed log's dead bytes are more
   * than GROW_MAX_DEAD_RATIO of its live ones, and GROW_MIN_DEAD_SEGMENTS segments' worth.
   */
  private compactBeforeGrowing(): boolean {
    if (isBroken('grow-before-compact')) return false; // sabotaged: a mostly dead store grows instead
    const { live, dead } = closedLog(this.table.closedSegments(this.openExtents()));
    return dead > GROW_MAX_DEAD_RATIO * live && dead >= GROW_MIN_DEAD_SEGMENTS * SEGMENT_BYTES;
  }

  /** One growth step of the store (Device.grow) for a write that found it full: true when it grew. */
  private growForWrite(): boolean {
    if (!this.space.device.grow()) return false;
    return this.roomMade();
  }

  /**
   * Removes the index checkpoints in the store (the next open scans the whole log, or loads
   * the one the next clean close writes); true when one was removed. Another thread removing
   * the same one at once is not an error.
   */
  private dropCheckpoints(): boolean {
    // One being written (checkpoint()) is not touched: its writer removes it if it fails.
    if (!tryLockWord(this.i32, CHECKPOINT_LOCK)) return false;
    try {
      return this.dropCheckpointsLocked();
    } finally {
      unlockWord(this.i32, CHECKPOINT_LOCK);
    }
  }

  private dropCheckpointsLocked(): boolean {
    let dropped = false;
    for (const id of checkpointIds(this.space))
      try {
        // one whose body is being written over several steps: its writer removes it if it fails
        if (id === this.checkpointWriting()) continue;
        dropped = removeCheckpoint(this.space, id) || dropped;
      } catch (e) {
        if (!isDaxError(e, 'ENOENT')) throw e;
      }
    return dropped;
  }

  /**
   * Replaces recovery's estimates of the closed segments (segment-table.ts GUESS) by counts read
   * from each (compaction.ts measureSegment), once per segment, the first time space runs short
   * after an open: what compaction needs and whether it pays are decided by the table, and an
   * estimate (winners times the segment's mean entry) is far off in a segment of large copies
   * and small tombstones; too low, and the deletes of a full store eat the room that moving it
   * needs. Takes the compaction mutex; not inside read() (callers check the pin).
   */
  private measureGuesses(): void {
    if (this.table.guesses === 0 || isBroken('kv-trust-estimates')) return;
    this.withPriorityWriter(() => {
      for (const e of this.table.guessed(this.openExtents())) {
        const m = measureSegment(this.space, this.views, this.table, e * HUGE_BLOCKS);
        if (m !== undefined) this.table.measuredAs(e, m.liveBytes, m.delBytes);
      }
    });
  }

  /** Reclaiming made room: ordinary writes (deletes among them) may try their own segments again. */
  private roomMade(): boolean {
    this.spaceWords[LOW_SPACE] = 0;
    return true;
  }

  /** Bytes compaction's copies may still take: the priority segment's room and the free extents it may allocate. */
  private compactionRoom(): number {
    // With the mutex held (active is the priority writer) its instance is current, the shared words are not.
    const block = this.spaceWords[PRIORITY_STATE];
    const shared = block > 0 ? SEGMENT_BYTES - this.spaceWords[PRIORITY_STATE + 1] : 0;
    const room = this.active === this.priorityWriter ? this.priorityWriter.room : shared;
    return room + this.space.device.stats().freeExtents * SEGMENT_BYTES;
  }

  /**
   * Whether compacting can free what a failed write needs, by the segment table (no log
   * read): the emptiest closed segments, each fitting in the room the ones before it leave,
   * give back half a segment or more in all (a put needs a free extent: that, and what the
   * priority segment already has, make one); for a delete, any segment with reclaimable
   * bytes that fits.
   */
  private worthCompacting(forDelete: boolean): boolean {
    const fruitless = this.spaceWords[FRUITLESS_AT];
    if (fruitless > 0 && this.table.diedBytes() < fruitless + RETRY_AFTER_DIED_BYTES) return false;
    this.spaceWords[FRUITLESS_AT] = 0;
    let room = this.compactionRoom() - COPY_SLACK_BYTES;
    let gain = 0;
    let n = 0;
    for (const seg of this.table.closedSegments(this.openExtents())) {
      // A segment with nothing to move (one its writer died opening, say) needs no room at all:
      // in a store out of room it may be the one extent compaction can give back.
      const moves = seg.moveBytes > 0 || isBroken('kv-compact-empty-needs-room');
      if ((moves && seg.moveBytes > room) || n++ >= RECLAIM_SEGMENTS) break;
      if (forDelete) return seg.reclaimableBytes > 0;
      gain += seg.reclaimableBytes;
      room += SEGMENT_BYTES - seg.moveBytes;
      // Half a segment: with the priority segment's room (setReserve) that frees an extent.
      if (gain >= SEGMENT_BYTES / 2) return true;
    }
    return false;
  }

  /**
   * Collects the epoch until its limbo holds no device block, and removes superseded large
   * values. Another thread's pin holds a grace period open: waits for it in 1 ms sleeps, up
   * to RECLAIM_WAIT_MS in all.
   */
  private releaseRetired(waitMs = RECLAIM_WAIT_MS): void {
    const epoch = this.space.epoch;
    const deadline = performance.now() + waitMs;
    for (;;) {
      for (let i = 0; i < 4; i++) epoch.collect();
      const removed = this.reaper.pending > 0;
      this.reaper.drain(); // removing an object retires its blocks: collect again
      if (removed) continue;
      const limbo = epoch.stats().limbo;
      if (limbo[RETIRE_DEVICE_BLOCK] + limbo[RETIRE_KV_OBJECT] === 0 || performance.now() > deadline) return;
      Atomics.wait(this.sleepWord, 0, 0, 1);
    }
  }

  private readonly sleepWord = new Int32Array(new SharedArrayBuffer(4));

  /**
   * The write `op` failed with ENOSPC (`first`): reclaims and retries it while reclaiming
   * frees space, up to RECLAIM_ATTEMPTS times. Caller holds no entry lock; op rolled
   * everything back when it threw.
   */
  private retryAfterReclaim<T>(first: unknown, op: () => T): T {
    if (isInjectedFault(first)) throw first; // a test's fault: report it, do not work around it
    // Sabotaged (kv-no-reclaim): the allocation's failure reported at once, unless the store grows.
    const reclaim = isBroken('kv-no-reclaim')
      ? (): boolean => this.space.device.canGrow && this.growForWrite()
      : (again: boolean) => this.reclaim(false, again);
    let error = first;
    for (let i = 0; i < RECLAIM_ATTEMPTS && reclaim(i > 0); i++) {
      try {
        return op();
      } catch (e) {
        if (!isDaxError(e, 'ENOSPC')) throw e;
        error = e;
      }
    }
    // A large value that still finds no room in a store that can grow (larger than what the
    // rounds gave back: each grows one step at most): its pages grow the store as they need.
    if (!this.space.device.canGrow || isInjectedFault(error)) throw error;
    return this.growingLastTry(op);
  }

  /**
   * A write's last try in a store that can grow: a large value's pages grow the store as they
   * need (prepareValue), and so does the record's new segment when the values filled what the
   * store had (the writer's growsOnLastTry).
   */
  private growingLastTry<T>(op: () => T): T {
    this.largeGrowth = true;
    this.writer.growsOnLastTry = true;
    try {
      return op();
    } finally {
      this.largeGrowth = false;
      this.writer.growsOnLastTry = false;
    }
  }

  /** Set while a write's last try runs (growingLastTry): a large value's pages may grow the store (prepareValue). */
  private largeGrowth = false;

  /**
   * Runs a delete (`op`, a record of about `bytes`) so that it never fails for lack of space:
   * in this thread's segment when it can get one (reclaiming first when its allocation
   * fails); else in the priority writer's segment, whose segments come from the reserve. When
   * the store is known to be out of space (LOW_SPACE) and this thread's segment has no room,
   * straight to the priority writer, without an allocation and a reclaim that would fail.
   */
  private deleteWithRoom<T>(op: () => T, bytes: number): T {
    if (this.spaceWords[LOW_SPACE] === 0 || this.writer.fits(bytes)) {
      try {
        return op();
      } catch (e) {
        if (!isDaxError(e, 'ENOSPC')) throw e;
        try {
          return this.retryAfterReclaim(e, op);
        } catch (again) {
          if (!isDaxError(again, 'ENOSPC') || isInjectedFault(again)) throw again;
        }
        this.spaceWords[LOW_SPACE] = 1;
      }
    }
    this.measureGuesses();
    for (;;) {
      // Leave compaction the room to move the emptiest closed segment (deletes only ever add
      // records): with less, nothing could be compacted any more, and every later delete
      // would fail. Compacting for it always fits (that room was kept) and frees what the
      // deletes so far killed.
      for (
        let i = 0;
        i < RECLAIM_ATTEMPTS &&
        this.compactionRoom() - DELETE_SLACK_BYTES < this.neededCompactionRoom() &&
        this.reclaim(true);
        i++
      );
      try {
        return this.withPriorityWriter(op);
      } catch (e) {
        if (!isDaxError(e, 'ENOSPC') || !this.reclaim(true)) throw e;
      }
    }
  }

  get closed(): boolean {
    return this.isClosed || this.space.closed;
  }

  /** Removes retired large-value objects whose grace period is over (a pinned reader elsewhere keeps its own). */
  private reapLarge(): void {
    if (this.space.epoch.isPinned()) return;
    for (let i = 0; i < 4; i++) this.space.epoch.collect();
    this.reaper.drain();
  }

  /** Makes everything durable, then closes (opener: the device; attached handle: detaches). Idempotent. */
  close(): void {
    if (this.isClosed) return;
    // Refused before anything changes: views from getView would outlive the mapping (R6).
    if (!this.space.closed && this.space.epoch.isPinned())
      throw new DaxError(
        'EBUSY',
        `close: the key-value store on ${this.space.device.media.path} is in use by read() on this thread; close it after read() returns`,
      );
    // Refused too: the transaction would fail its commit with ECLOSED after fn returned.
    if (this.inTransaction && !this.space.closed)
      throw new DaxError(
        'EBUSY',
        `close: the key-value store on ${this.space.device.media.path} is in use by transactionSync() on this thread; close it after the transaction returns`,
      );
    if (this.groupTimer !== undefined) clearTimeout(this.groupTimer);
    this.groupTimer = undefined;
    this.stopBackgroundCheckpoints();
    try {
      if (!this.space.closed) {
        this.groupCommitNow(); // batchAsync waiters resolve: their batches are durable now
        this.writer.sealForClose();
        this.snaps.leave(); // this handle's snapshots and ranges are released
        this.drainDeferred();
        // The priority segment's last records below a watermark too (attached handles that
        // append after it only add records after this SEAL).
        if (this.opener) this.withPriorityWriter((pw) => pw.sealForClose());
        this.reapLarge();
        if (this.opener && this.checkpointOnClose) this.checkpointAtClose();
      }
    } finally {
      for (const w of this.groupWaiters.splice(0))
        w.reject(
          new DaxError(
            'ECLOSED',
            `batchAsync: the key-value store on ${this.space.device.media.path} was closed before the batch was durable`,
          ),
        );
      this.writer.release();
      this.snaps.leave();
      this.isClosed = true;
      if (!isBroken('kv-close-keeps-death-handler')) this.space.epoch.offDeath(this.onDeath);
      this.space.close();
    }
  }

  /**
   * The index checkpoint of a clean close (checkpoint.ts), when nothing else appends to the
   * log: every other writer slot free (a worker still attached keeps its segment open, and
   * then the next open scans the whole log). A failure to write one (no space, a media
   * error) leaves the store as it was: the next open scans the whole log.
   */
  private checkpointAtClose(): void {
    // Another handle writing one now (checkpoint()): it covers as much; no second one beside it.
    if (!tryLockWord(this.i32, CHECKPOINT_LOCK)) return;
    try {
      this.checkpointAtCloseLocked();
    } finally {
      unlockWord(this.i32, CHECKPOINT_LOCK);
    }
  }

  private checkpointAtCloseLocked(): void {
    const own = this.writer.slotIndex;
    for (let i = 0; i < MAX_WRITERS; i++) if (i !== own && Atomics.load(this.openTable, i) !== 0) return;
    const uuid = this.space.device.uuid;
    if (uuid === undefined) return;
    // Never at the log's expense: the whole extents it may take (the index's size bounds it),
    // plus the one kept in reserve and one for the next writer, must be free, else no
    // checkpoint (the next open scans the whole log).
    const free = this.space.device.stats().freeExtents;
    // (Its tree image and its columns are each smaller than the index's words.)
    const needed = Math.max(1, Math.ceil((this.space.tree.arena.liveWords() * 8) / SEGMENT_BYTES)) + 2;
    if (free < needed) {
      this.lastCheckpoint = { error: `not written: ${free} free 2 MiB extents, ${needed} needed` };
      return;
    }
    const r = this.recovery;
    const kept = this.checkpointStillCovers();
    if (kept !== undefined) {
      this.lastCheckpoint = kept;
      return;
    }
    try {
      this.lastCheckpoint = writeCheckpoint(
        this.space,
        this.views,
        uuid,
        {
          maxSequence: this.lastSequence(),
          records: (r?.records ?? 0) + this.counted(PUTS) + this.counted(DELETES) + this.counted(BATCHES),
          entries: 0,
        },
        this.coverage?.segments ?? this.openCoverage().segments,
        // No other writer runs (checked above): the count is every tombstone leaf's.
        this.snaps.tombstones !== 0 && !isBroken('kv-checkpoint-ignore-tombstones'),
        this.checkpointWriting(),
      );
    } catch (e) {
      // ECORRUPT: a record it would cover fails its checks (checkpoint.ts hashSegments)
      if (!(e instanceof DaxError) || (e.code !== 'ENOSPC' && e.code !== 'EIO' && e.code !== 'ECORRUPT')) throw e;
      this.lastCheckpoint = { error: e.message, code: e.code };
    }
  }

  /**
   * The newest checkpoint, when it covers the whole log as it is (nothing written, compacted or
   * freed since: checkpoint.ts logUnchangedSince) and carries a tree image: the one this handle
   * last wrote, or the one open loaded with no tail; the close then writes none (at 5M keys a
   * second copy of the same index costs seconds). Undefined otherwise (another handle's newer
   * one, a tail, a full scan at open, a checkpoint without an image: one is written).
   */
  private checkpointStillCovers(): CheckpointWritten | undefined {
    const start = performance.now();
    const basis = this.checkpointBasis;
    if (basis === undefined || isBroken('kv-checkpoint-close-kept-unchecked')) return basis && this.keptBroken(basis);
    const ids = checkpointIds(this.space);
    if (ids.length === 0 || Math.max(...ids) !== CHECKPOINT_ID_FIRST + basis.written.generation) return undefined;
    if (!logUnchangedSince(this.space, this.views, basis.segments)) return undefined;
    return { ...basis.written, segmentsChecked: 0, timeMs: performance.now() - start, kept: true };
  }

  /** Switch kv-checkpoint-close-kept-unchecked: the newest checkpoint kept at close without looking at the log. */
  private keptBroken(basis: NonNullable<KvStore['checkpointBasis']>): CheckpointWritten {
    return { ...basis.written, segmentsChecked: 0, timeMs: 0, kept: true };
  }

  /**
   * Takes an index checkpoint now, while other threads (and this one, between the steps of a
   * background one) keep writing: the next open, after a crash too, loads it and replays only
   * the log written after it. Covers every write acknowledged before the call. Writers are
   * never blocked by it: it reads the index at a snapshot (MVCC) and writes the checkpoint
   * beside the old one, which stays valid until the new one is durable. ENOSPC when the store
   * lacks the room for it (the whole extents it takes, the reserve and one more).
   */
  checkpoint(): CheckpointWritten {
    this.checkOpen('checkpoint');
    if (this.space.epoch.isPinned())
      throw new DaxError(
        'EBUSY',
        `checkpoint: the key-value store on ${this.space.device.media.path} is in use by read() on this thread; checkpoint after read() returns`,
      );
    // A background one of this handle in progress: abandoned (its snapshot may be older than this call).
    this.abandonBackgroundCheckpoint();
    const steps = this.checkpointSteps('checkpoint');
    for (;;) {
      const r = steps.next();
      if (r.done === true) return (this.lastCheckpoint = r.value);
    }
  }

  /**
   * The steps of a running checkpoint (the caller holds the checkpoint lock; each yield is a
   * point where the thread may serve others):
   *   1. a snapshot at S (every record of sequence <= S published);
   *   2. under the compaction mutex (no segment freed or moved meanwhile; writers go on), what it
   *      covers: each segment's whole records of sequences <= S (checkpoint.ts coverRunning),
   *      made durable;
   *   3. the index walked at S, a step of CHECKPOINT_WALK_KEYS keys at a time, each key's version
   *      at S, which must lie in what step 2 covers: one compaction moved since lies outside,
   *      and the walk starts again, the second time inside the compaction mutex in one step;
   *   4. the tree image of what the walk found built on a thread of its own (checkpoint.ts
   *      ImageBuild), and the covered segments checked and hashed on another (SegmentHashes);
   *      each step that takes their outcome waits for it (a background one's turn runs only
   *      once it has ended: backgroundCheckpointReady);
   *   5. written beside the older checkpoints, durable, body before header; then the older
   *      ones removed (checkpoint.ts publishBody): checkpoint() in one step, the background
   *      one's columns copied in CHECKPOINT_FILL_KEYS keys a step (CheckpointBody), its checksum
   *      taken on a thread of its own while its body is written CHECKPOINT_WRITE_EXTENTS a step
   *      (CheckpointWrite, named in CHECKPOINT_WRITING so that no removal takes it meanwhile). The snapshot is released last: what
   *      compaction frees meanwhile waits for it, so what the checkpoint covers is there until
   *      it is durable.
   */
  private *checkpointSteps(op: string): Generator<NativeWork | undefined, CheckpointWritten, void> {
    const start = performance.now();
    const uuid = this.space.device.uuid ?? new Uint8Array(this.i32.buffer, UUID_OFFSET, 16).slice();
    if (uuid.every((b) => b === 0))
      throw new DaxError('ENOTSUP', `${op}: the store on ${this.space.device.media.path} has no uuid`);
    const free = this.space.device.stats().freeExtents;
    const bytes = this.checkpointBytes();
    const needed = Math.max(1, Math.ceil(bytes / SEGMENT_BYTES)) + 2;
    if (free < needed)
      throw new DaxError(
        'ENOSPC',
        `${op}: the store on ${this.space.device.media.path} has ${free} free 2 MiB extents, a checkpoint needs ${needed}`,
      );
    const opened = Atomics.load(this.i32, SEGMENTS_OPENED);
    const uncovered = isBroken('kv-checkpoint-uncovered');
    let build: ImageBuild | undefined;
    let hashes: SegmentHashes | undefined;
    let write: CheckpointWrite | undefined;
    const background = op === 'background checkpoint';
    // Where a background one's step ends (CHECKPOINT_STEP_MS from its start); checkpoint() runs in one go.
    const deadline = (): number => (background ? stepDeadline() : Infinity);
    // The last attempt's walk met a version compaction moved: capture and walk in one hold.
    let inMutex = false;
    for (let attempt = 0; ; attempt++) {
      if (attempt >= CHECKPOINT_CAPTURES && !isBroken('kv-checkpoint-recaptures-unbounded'))
        throw new DaxError(
          'EBUSY',
          `${op}: the store on ${this.space.device.media.path}: compaction retired or moved what each of ${attempt} captures covered before it was read; not written`,
        );
      let S = -1;
      let S0 = -1;
      try {
        const known = this.coverage ?? this.openCoverage();
        const device = this.space.device;
        // Room for every key the index holds now and an eighth more (a walk that outgrows it
        // copies its columns once in a step, tens of MB at a million keys).
        const cols = new ColumnBuilder(Math.ceil(this.space.tree.count() * 1.125));
        if (background) cols.prefault();
        let cover: ReturnType<typeof coverRunning> | undefined;
        let covers: (at: number) => boolean = () => true;
        const resolve = (at: number): number => this.versionPinned(at, S);
        // S is taken inside the mutex: compaction's copies (older sequences) and the priority
        // writer's deletes share a segment, so one appended after S could follow a record above S.
        const capture = (ahead?: CoverAhead): ReturnType<typeof coverRunning> => {
          S = this.registerSnapshot(op);
          const c = coverRunning(this.space, this.views, S, known.segments, known.maxSequence, ahead);
          const ends = new Map<number, number>();
          for (const x of c.segments) ends.set(x.block, device.blockOffset(x.block) + x.used);
          // sabotaged: every key's newest entry is taken, wherever it lies (walkStep below)
          covers = uncovered
            ? (): boolean => true
            : (at: number): boolean => {
                const b = device.blockAt(at);
                const end = ends.get(b - (b % HUGE_BLOCKS));
                return end !== undefined && at < end;
              };
          return c;
        };
        const walk = uncovered ? (at: number): number => (isDeletion(this.views, at) ? -1 : at) : resolve;
        let moved = false;
        if (!inMutex) {
          // The background one hops its coverage on ahead, CHECKPOINT_COVER_SEGMENTS segments a
          // step under a snapshot at S0 (checkpoint.ts CoverAhead), so that the capture, one step
          // under the compaction mutex, hops only what was appended since.
          let ahead: CoverAhead | undefined;
          if (background && !isBroken('kv-checkpoint-cover-ahead-unheld')) {
            S0 = this.registerSnapshot(op);
            ahead = new CoverAhead(this.space, this.views, S0, known.segments, known.maxSequence);
            testHooks.checkpointCoveringAhead?.();
            while (!ahead.step(CHECKPOINT_COVER_SEGMENTS, stepDeadline())) yield;
            // What was appended while that pass stepped, hopped on again from where it stopped
            // under a newer snapshot (registered before the older one is released), until a
            // pass ends within one step: the capture then hops about one step's appends.
            for (let pass = 1; pass < CHECKPOINT_AHEAD_PASSES && ahead.steps > 1; pass++) {
              yield;
              if (isBroken('kv-checkpoint-ahead-pass-gap')) {
                // sabotaged: the older snapshot released before the newer one is registered
                this.releaseSnapshot(S0);
                S0 = -1;
                testHooks.checkpointCoveringAhead?.();
                S0 = this.registerSnapshot(op);
              } else {
                const S1 = this.registerSnapshot(op);
                this.releaseSnapshot(S0);
                S0 = S1;
                testHooks.checkpointCoveringAhead?.();
              }
              ahead = new CoverAhead(this.space, this.views, S0, known.segments, known.maxSequence, ahead);
              while (!ahead.step(CHECKPOINT_AHEAD_AGAIN_SEGMENTS, stepDeadline())) yield;
            }
          } else if (background) ahead = yield* this.coverAheadUnheld(known);
          if (background) yield; // the capture a step of its own
          cover = this.withPriorityWriter(() => capture(ahead));
          if (S0 >= 0) this.releaseSnapshot(S0); // S >= S0 holds what it held
          S0 = -1;
          testHooks.checkpointCaptured?.();
          let after: Uint8Array | undefined;
          for (;;) {
            yield;
            const r = walkStep(this.space, cols, after, CHECKPOINT_WALK_KEYS, walk, covers, deadline());
            if (r === 'moved') {
              moved = true;
              break;
            }
            if (r === undefined) break;
            const walked = after === undefined ? { gte: LOWEST } : { gt: after };
            after = boundsAfter(walked, r, 'checkpoint', this.space.device.media.path).gt;
          }
        } else {
          // Compaction moved a version while the walk stepped: once more, capture and walk in
          // one hold of the compaction mutex (nothing moves meanwhile).
          cover = this.withPriorityWriter(() => {
            const c = capture();
            moved = walkStep(this.space, cols, undefined, Infinity, walk, covers) === 'moved';
            return c;
          });
          assert(
            !moved,
            () =>
              `a version at snapshot ${S} lies outside the coverage taken with it under the compaction mutex (entry at ${movedAt})`,
          );
        }
        if (moved) {
          inMutex = true;
          continue;
        }
        // The columns are complete: their tree image is built on a thread of its own meanwhile
        // (checkpoint.ts ImageBuild), so no step holds this thread for it.
        build = new ImageBuild(cols, imageLeadBytes(cover.segments.length, cols));
        // What vouches for the covered records: the hashes of the segments that changed since
        // `known`, their records checked in the same read, on a thread of its own too
        // (checkpoint.ts SegmentHashes; the snapshot keeps them in the log until it is taken).
        const checked = { segments: 0 };
        hashes = new SegmentHashes(this.space, this.views, cover.segments, known.segments, checked);
        // sabotaged: the snapshot that keeps the segments in the log released under the read
        if (isBroken('kv-checkpoint-hash-unheld')) S = this.releaseSnapshotEarly(S);
        testHooks.checkpointHashing?.();
        yield hashes;
        const segments = hashes.take();
        hashes = undefined;
        // A compaction retired a covered segment during the read (its head marked): capture again.
        if (segments === undefined) continue;
        let image: BuiltImage | undefined;
        // The build's end is waited for where the event loop would wait (backgroundCheckpointDue
        // polls it before it runs the next step); checkpoint() and the crash checker's steps
        // take it at once (take() joins the thread).
        while (image === undefined) {
          yield build;
          image = build.take();
        }
        // Generations and removals one writer at a time (the checkpoint lock, held within one
        // synchronous step, never across steps, so no thread ever waits on a step another
        // thread has not run). checkpoint() writes its checkpoint in that one step. The
        // background one writes its body over several steps (CHECKPOINT_WRITE_EXTENTS each:
        // each extent is a fault, a copy and a flush of 2 MiB), named meanwhile in the shared
        // CHECKPOINT_WRITING word, which every removal spares; then its header page and the
        // removals in one more locked step (checkpoint.ts CheckpointWrite).
        const covered = { maxSequence: cover.maxSequence, records: cover.records, entries: 0 };
        // Laid out in the image's memory, its columns copied in (the background one's
        // CHECKPOINT_FILL_KEYS keys a step: at a million keys, 10 MB of offsets and lengths).
        const body = new CheckpointBody(uuid, covered, segments, cols, image);
        if (!background) body.fill(Infinity);
        else while (!body.fill(CHECKPOINT_FILL_KEYS, stepDeadline())) yield;
        let written: CheckpointWritten | undefined;
        lockWord(this.i32, CHECKPOINT_LOCK);
        try {
          if (!background || this.spaceWords[CHECKPOINT_WRITING] !== 0)
            written = publishBody(this.space, body, this.checkpointWriting());
          else {
            // Its checksum taken on a thread of its own while the body is written.
            write = new CheckpointWrite(this.space, body, true);
            this.spaceWords[CHECKPOINT_WRITING] = write.id;
          }
        } finally {
          unlockWord(this.i32, CHECKPOINT_LOCK);
        }
        if (write !== undefined) {
          do yield;
          while (!write.writeBody(CHECKPOINT_WRITE_EXTENTS, stepDeadline()));
          const w = write;
          yield {
            get ready() {
              return w.sealed;
            },
          };
          lockWord(this.i32, CHECKPOINT_LOCK);
          try {
            written = write.finish();
            write = undefined; // written, or removed by finish when it threw
          } finally {
            this.spaceWords[CHECKPOINT_WRITING] = 0;
            unlockWord(this.i32, CHECKPOINT_LOCK);
          }
        }
        assert(written !== undefined, 'checkpoint: written in one step or over several');
        this.coverage = { segments: new Map(segments.map((c) => [c.block, c])), maxSequence: cover.maxSequence };
        this.checkpointBasis = { written, segments: this.coverage.segments };
        this.checkpointMark = opened;
        this.checkpointsTaken++;
        return { ...written, segmentsChecked: checked.segments, timeMs: performance.now() - start };
      } finally {
        hashes?.stop(); // abandoned or failed before the hashes were taken (before the snapshot goes)
        hashes = undefined;
        build?.stop(); // abandoned or failed before the image was taken
        build = undefined;
        if (write !== undefined) this.abandonCheckpointWrite(write); // abandoned or failed while its body was written
        write = undefined;
        if (S0 >= 0) this.releaseSnapshot(S0);
        if (S >= 0) this.releaseSnapshot(S);
      }
    }
  }

  /**
   * Switch kv-checkpoint-cover-ahead-unheld: the coverage hopped on ahead without a snapshot
   * (at the sequence published now), so compaction may free and reuse a segment meanwhile.
   */
  private *coverAheadUnheld(known: {
    segments: Map<number, CheckpointSegment>;
    maxSequence: number;
  }): Generator<undefined, CoverAhead, void> {
    const S0 = this.registerSnapshot('checkpoint');
    this.releaseSnapshot(S0);
    const ahead = new CoverAhead(this.space, this.views, S0, known.segments, known.maxSequence);
    testHooks.checkpointCoveringAhead?.();
    while (!ahead.step(CHECKPOINT_COVER_SEGMENTS, stepDeadline())) yield;
    return ahead;
  }

  /** Switch kv-checkpoint-hash-unheld: a running checkpoint's snapshot released while its segments are read; -1 (none held). */
  private releaseSnapshotEarly(S: number): number {
    this.releaseSnapshot(S);
    return -1;
  }

  /**
   * The checkpoint a background checkpoint is writing over several steps, which removals spare
   * (0: none; under the switch kv-checkpoint-writing-unspared, 0 always). Caller holds CHECKPOINT_LOCK.
   */
  private checkpointWriting(): number {
    return isBroken('kv-checkpoint-writing-unspared') ? 0 : this.spaceWords[CHECKPOINT_WRITING];
  }

  /** Removes a checkpoint whose body was being written over several steps, and the word that named it. */
  private abandonCheckpointWrite(write: CheckpointWrite): void {
    lockWord(this.i32, CHECKPOINT_LOCK);
    try {
      this.spaceWords[CHECKPOINT_WRITING] = 0;
      write.abandon();
    } finally {
      unlockWord(this.i32, CHECKPOINT_LOCK);
    }
  }

  /**
   * What the open's log had covered: the loaded checkpoint's segment ends, or the segments a
   * full scan read whole and clean (checkpoint.ts coverRunning hops on from them, hashSegments
   * keeps their hashes).
   */
  private openCoverage(): { segments: Map<number, CheckpointSegment>; maxSequence: number } {
    const r = this.recovery;
    const c = r?.checkpoint;
    return {
      segments: new Map([...(c?.coveredSegments ?? []), ...(c?.scannedSegments ?? [])].map((s) => [s.block, s])),
      maxSequence: r?.maxSequence ?? 0,
    };
  }

  /** About the bytes a checkpoint of the index takes now: the tree's own words (its image) and each key's offset and length. */
  private checkpointBytes(): number {
    return this.space.tree.arena.liveWords() * 4 + this.space.tree.count() * 10;
  }

  /**
   * The opener's background checkpoints: a poll every CHECKPOINT_POLL_MS (unref'd) starts one
   * when due. `every` undefined: the default, which scales with the store (checkpointDueSegments).
   */
  private startBackgroundCheckpoints(every: number | undefined): void {
    if (every === 0) return;
    this.checkpointScaled = every === undefined;
    this.checkpointEverySegments = Math.max(1, Math.ceil((every ?? DEFAULT_CHECKPOINT_EVERY) / SEGMENT_BYTES));
    this.checkpointMark = 0;
    this.checkpointTimer = setInterval(() => this.backgroundCheckpointDue(), CHECKPOINT_POLL_MS);
    this.checkpointTimer.unref();
  }

  /**
   * Starts a background checkpoint when checkpointEvery bytes of log were written since the
   * last one. Its steps run one per turn of the event loop (setImmediate): the thread serves
   * its own writes in between.
   */
  private backgroundCheckpointDue(): void {
    if (this.closed || this.background !== undefined || this.space.epoch.isPinned()) return;
    if (Atomics.load(this.i32, SEGMENTS_OPENED) - this.checkpointMark < this.checkpointDueSegments()) return;
    const steps = this.checkpointSteps('background checkpoint');
    this.background = steps;
    const turn = (): void => {
      if (this.background !== steps) return; // abandoned (close, checkpoint())
      // Work on a thread of its own the next step takes (the tree image): looked at again in a
      // millisecond, the thread serving others meanwhile.
      if (!this.backgroundCheckpointReady()) return void setTimeout(turn, 1);
      try {
        if (this.stepBackgroundCheckpoint()) setImmediate(turn);
      } catch {
        // no room, a media error, compaction took each capture (lastCheckpoint says which):
        // tried again after as much log again
        this.checkpointMark = Atomics.load(this.i32, SEGMENTS_OPENED);
      }
    };
    setImmediate(turn);
  }

  /**
   * @internal Segments of log between background checkpoints: checkpointEvery's, or by default that
   * (DEFAULT_CHECKPOINT_EVERY) or CHECKPOINT_EVERY_SCALE times the next checkpoint's size,
   * whichever is more: a fixed interval would write a checkpoint of a big store more often than
   * its own size in log (at a million keys one of ~56 MB every 64 MiB).
   */
  checkpointDueSegments(): number {
    if (!this.checkpointScaled) return this.checkpointEverySegments;
    const scaled = Math.ceil((CHECKPOINT_EVERY_SCALE * this.checkpointBytes()) / SEGMENT_BYTES);
    return Math.max(this.checkpointEverySegments, scaled);
  }

  /**
   * @internal Starts a background checkpoint now, due or not, without scheduling its steps:
   * the caller runs them with stepBackgroundCheckpoint (the crash checker interleaves them
   * with its operations, as the event loop interleaves them with the thread's writes).
   */
  startBackgroundCheckpoint(): void {
    this.checkOpen('checkpoint');
    if (this.background === undefined) this.background = this.checkpointSteps('background checkpoint');
  }

  /**
   * @internal One step of the background checkpoint in progress (what one turn of the event
   * loop runs); its error is thrown and ends it. False when none is in progress or it just ended.
   */
  stepBackgroundCheckpoint(): boolean {
    const steps = this.background;
    if (steps === undefined) return false;
    let more = false;
    this.backgroundWaits = undefined;
    try {
      const r = steps.next();
      if (r.done === true) this.lastCheckpoint = r.value;
      else {
        more = true;
        this.backgroundWaits = r.value;
      }
    } catch (e) {
      this.lastCheckpoint = {
        error: e instanceof Error ? e.message : String(e),
        code: isDaxError(e) ? e.code : undefined,
      };
      throw e;
    } finally {
      if (!more && this.background === steps) this.background = undefined;
    }
    return more;
  }

  /**
   * @internal Whether the next step of the background checkpoint in progress would run without
   * waiting: false while the work on a thread of its own that it takes (the tree image's build)
   * has not ended. The event loop runs the step only then; stepBackgroundCheckpoint waits.
   */
  backgroundCheckpointReady(): boolean {
    return this.backgroundWaits?.ready ?? true;
  }

  /** Drops the background checkpoint in progress, if any (its snapshot released). */
  private abandonBackgroundCheckpoint(): void {
    const steps = this.background;
    if (steps === undefined) return;
    this.background = undefined;
    this.backgroundWaits = undefined;
    steps.return(undefined as never);
  }

  private stopBackgroundCheckpoints(): void {
    if (this.checkpointTimer !== undefined) clearInterval(this.checkpointTimer);
    this.checkpointTimer = undefined;
    this.abandonBackgroundCheckpoint();
  }

  /** The background checkpoint in progress (its steps), while one is. */
  private background: Generator<NativeWork | undefined, CheckpointWritten, void> | undefined;
  /** What the background checkpoint's last step left running (the covered segments' hashes, the tree image's build, the checksum), the next step waits for. */
  private backgroundWaits: NativeWork | undefined;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointEverySegments = Infinity;
  /** checkpointEvery not given: the interval scales with the store (checkpointDueSegments). */
  private checkpointScaled = false;
  /** SEGMENTS_OPENED when the last checkpoint of this handle was taken. */
  private checkpointMark = 0;
  /** What this handle's last running checkpoint covered: the next one hops on from it. */
  private coverage: { segments: Map<number, CheckpointSegment>; maxSequence: number } | undefined;
  /**
   * The checkpoint the log was last known to be covered by, with its segment list: the one this
   * handle last wrote while running, or the one open loaded (with its image, no tail). A clean
   * close keeps it when the log has not changed since (checkpointStillCovers).
   */
  private checkpointBasis: { written: CheckpointWritten; segments: ReadonlyMap<number, CheckpointSegment> } | undefined;
  /** Checkpoints taken while running by this handle (checkpoint() and background). */
  checkpointsTaken = 0;

  /** open({ checkpoint: true }): close() of the opener writes an index checkpoint. */
  private checkpointOnClose = false;

  /** The checkpoint close() wrote (tests, tools), or why it could not. */
  lastCheckpoint: CheckpointWritten | { error: string; code?: DaxErrorCode } | undefined;

  private checkOpen(op: string): void {
    if (this.closed)
      throw new DaxError('ECLOSED', `${op}: the key-value store on ${this.space.device.media.path} is closed`);
    // Every public operation starts here, holding nothing: the safe point to finish or undo what
    // a thread that died left (writer-reaper.ts) before this one relies on it. A plain load of
    // the process's death counter when nobody died.
    if (this.deaths[DEATHS_WORD] !== this.deathsSeen) this.reapDeaths();
  }

  private readonly deaths = participantTable();
  private deathsSeen = -1;

  private reapDeaths(): void {
    const seen = this.deaths[DEATHS_WORD];
    if (this.space.epoch.reapDead()) this.deathsSeen = seen;
    // A dead thread's snapshots were released (snapshots.ts reapDead): free what they held back.
    if (this.snaps.deferred !== 0 || this.deferredHere.length !== 0) this.drainDeferred();
  }

  /** @internal The DAX space underneath (tests, tools). */
  get dax(): DaxSpace {
    return this.space;
  }

  static readonly MAX_KEY_BYTES = MAX_KEY_BYTES;
  static readonly MAX_VALUE_BYTES = MAX_VALUE_BYTES;
}

/**
 * The checkpoint open loaded, as the basis a clean close may keep (KvStore checkpointStillCovers):
 * only one loaded from its tree image, with no tail and no segment gone since; undefined otherwise.
 */
function loadedBasis(
  space: DaxSpace,
  report: KvRecoveryReport,
): { written: CheckpointWritten; segments: ReadonlyMap<number, CheckpointSegment> } | undefined {
  const use = report.checkpoint;
  if (use?.loaded === undefined || !use.imageLoaded || use.tailRecords !== 0 || use.segmentsGone !== 0)
    return undefined;
  const bytes = space.object(CHECKPOINT_ID_FIRST + use.loaded).size;
  return {
    written: { generation: use.loaded, keys: report.keys, bytes, segmentsChecked: 0, timeMs: 0 },
    segments: new Map(use.coveredSegments.map((c) => [c.block, c])),
  };
}

/** Work a running checkpoint's step left on a thread of its own: the next step runs once it has ended (or waits for it). */
interface NativeWork {
  readonly ready: boolean;
}

interface BatchItem {
  type: 'put' | 'del';
  key: Uint8Array;
  value: Value | undefined;
  valueLength: number;
  entryAt: number;
  /** ENTRY_FLAG_LARGE once value became an object reference; objectId its object (-1: none) */
  flags: number;
  objectId: number;
}

/** Validates every op before anything is written; keeps the last op per key; sorts by key (the lock order). */
function prepareBatch(
  ops: readonly BatchOp<unknown, unknown>[],
  keyOf: (key: unknown, op: string) => Uint8Array,
  storedValue: (value: unknown, op: string) => Value,
): BatchItem[] {
  const byKey = new Map<string, BatchItem>();
  ops.forEach((op, i) => {
    if (op === null || typeof op !== 'object')
      throw new DaxError('EINVAL', `batch: op ${i} must be an object { type, key, value? }, got ${describeValue(op)}`);
    for (const name of Object.keys(op))
      if (!(name === 'type' || name === 'key' || (name === 'value' && op.type === 'put')))
        throw new DaxError(
          'EINVAL',
          `batch: op ${i} has an unknown field ${JSON.stringify(name)} (a put is { type, key, value }, a del { type, key })`,
        );
    if (op.type !== 'put' && op.type !== 'del')
      throw new DaxError(
        'EINVAL',
        `batch: op ${i} has type ${String((op as { type: unknown }).type)}, expected 'put' or 'del'`,
      );
    const key = keyOf(op.key, `batch op ${i}`);
    const value = op.type === 'put' ? storedValue(op.value, `batch op ${i}`) : undefined;
    const valueLength = value !== undefined ? valueLengthOf(value, `batch op ${i}`) : 0;
    byKey.set(Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1'), {
      type: op.type,
      key,
      value,
      valueLength,
      entryAt: 0,
      flags: 0,
      objectId: -1,
    });
  });
  return [...byKey.values()].sort((a, b) => compareBytes(a.key, b.key));
}

interface Bounds {
  gt?: Uint8Array;
  gte?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
  reverse?: boolean;
}

/** putEntry's `expect` without a condition, and the version of an absent key. */
const UNCONDITIONAL = -2;
const ABSENT = -1;

/** The version a conditional write expects (WriteOptions), or UNCONDITIONAL. */
function expectedVersion(options: WriteOptions, op: string): number {
  if (options === null || typeof options !== 'object') throw new DaxError('EINVAL', `${op}: options must be an object`);
  for (const name of Object.keys(options))
    if (name !== 'ifVersion') throw new DaxError('EINVAL', `${op}: unknown option '${name}' (known: ifVersion)`);
  const v = options.ifVersion;
  if (v === undefined) return UNCONDITIONAL;
  if (v === null) return ABSENT;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    throw new DaxError('EINVAL', `${op}: ifVersion ${String(v)} must be a version from getEntry() or null`);
  return v;
}

/** Whether index key k lies inside bounds. */
function inBounds(k: Uint8Array, b: Bounds): boolean {
  if (b.gt !== undefined && compareBytes(k, b.gt) <= 0) return false;
  if (b.gte !== undefined && compareBytes(k, b.gte) < 0) return false;
  if (b.lt !== undefined && compareBytes(k, b.lt) >= 0) return false;
  if (b.lte !== undefined && compareBytes(k, b.lte) > 0) return false;
  return true;
}

/**
 * The entry locks of a transaction's commit: every key it writes or read, once, ascending (the
 * one lock order): keys[0, count). `writes` and `reads` are each sorted and distinct.
 * writeAt[i] is the place of writes[i] in keys, readAt those of the reads.
 */
function lockSet(
  writes: readonly Uint8Array[],
  reads: readonly Uint8Array[],
): { keys: Uint8Array[]; count: number; writeAt: number[]; readAt: number[] } {
  // Both ascending already (KvTransaction.sortForCommit): one merge, no sorted copy; keys is
  // made at its largest size (a key both read and written takes one place: count < length).
  const keys: Uint8Array[] = new Array(writes.length + reads.length);
  const writeAt: number[] = new Array(writes.length);
  const readAt: number[] = new Array(reads.length);
  let count = 0;
  let w = 0;
  let r = 0;
  while (w < writes.length || r < reads.length) {
    const c = w === writes.length ? 1 : r === reads.length ? -1 : compareBytes(writes[w], reads[r]);
    if (c <= 0) writeAt[w] = count;
    if (c >= 0) readAt[r] = count;
    keys[count++] = c <= 0 ? writes[w++] : reads[r];
    if (c >= 0) r++;
  }
  return { keys, count, writeAt, readAt };
}

/** Busy-waits (sabotaged variants only: widens the window a preemption would open). */
function spinMicros(us: number): void {
  const end = performance.now() + us / 1000;
  while (performance.now() < end);
}

/**
 * The iterator of range(), keys() and values(): an IterableIterator that is also Disposable
 * (`using it = db.range()` ends it at the end of the block). It holds no lock or pin between
 * batches, only its snapshot's registration (snapshot.ts), which ending it releases.
 */
const endedFill = (): boolean => false;

/** Where iterate's fill puts a batch (a KvIterator; not generic, so that KvIterator<T> stays covariant in T). */
interface RangeBatch {
  items: unknown[];
  count: number;
  next_: number;
  last: boolean;
}

/**
 * An iterator of a range: its items batch by batch. `fill` reads the next batch into items and
 * count (false when the range has no more). After close() of the store or of the snapshot it
 * reads, not even the items already read are handed out (`closedError` throws ECLOSED). Like a
 * generator, it is done for good once it returned done or threw; then its snapshot (`owned`,
 * the one range(), keys() and values() take) is released.
 */
export class KvIterator<T> implements IterableIterator<T>, Disposable {
  /** @internal The batch being handed out, its length, and the index of the next item. */
  items: T[] = new Array<T>(0);
  /** @internal */
  count = 0;
  /** @internal */
  next_ = 0;
  /** @internal The batch in items is the range's last. */
  last = false;
  private ended = false;
  private held: boolean;
  private readonly claim: CollectClaim | undefined;

  /** @internal */
  constructor(
    private fill: (batch: RangeBatch) => boolean,
    private readonly store: { readonly closed: boolean },
    private readonly snapshot: { readonly closed: boolean } | undefined,
    private closedError: () => never,
    private readonly owned?: { host: SnapshotHost; sequence: number },
  ) {
    this.held = owned !== undefined;
    this.claim = owned === undefined ? undefined : releaseWhenCollected(this, owned.host, owned.sequence);
  }

  next(): IteratorResult<T, undefined> {
    if (this.next_ < this.count) {
      if (this.store.closed || (this.snapshot !== undefined && this.snapshot.closed)) this.endClosed();
      return { value: this.items[this.next_++], done: false };
    }
    for (;;) {
      if (this.ended) return { value: undefined, done: true };
      if (this.last) return this.return();
      let more: boolean;
      try {
        more = this.fill(this);
      } catch (e) {
        this.return();
        throw e;
      }
      if (!more) return this.return();
      if (this.next_ < this.count) return this.next();
    }
  }

  return(): IteratorResult<T, undefined> {
    this.ended = true;
    this.items = new Array<T>(0);
    this.count = 0;
    // An ended iterator may stay reachable a while (snapshot.ts: young claims hold their owner): keep nothing of the range alive.
    this.fill = endedFill;
    this.closedError = endedFill as () => never;
    this.release();
    return { value: undefined, done: true };
  }

  [Symbol.iterator](): this {
    return this;
  }

  [Symbol.dispose](): void {
    this.return();
  }

  /** Ends the iterator and throws its ECLOSED. */
  private endClosed(): never {
    const fail = this.closedError;
    this.return();
    return fail();
  }

  private release(): void {
    if (!this.held) return;
    this.held = false;
    forgetCollected(this.claim!);
    this.owned!.host.releaseSnapshot(this.owned!.sequence);
  }
}

/**
 * The smallest store: the metadata before the first 2 MiB-aligned data block (superblocks,
 * root area, owner table, bad-block list: 2 MiB up to stores of ~500 MiB) and two 2 MiB
 * extents: a log segment and one for large values.
 */
export const MIN_STORE_BYTES = 6 * 1024 * 1024;

/** Closes media open() could not make a store of; when open() created the file, removes it. */
function abandonOpen(media: MappedMedia): void {
  if (isBroken('kv-create-keeps-file')) return media.close(); // sabotaged: the file stays
  closeAndRemoveCreated(media);
}

/** Live and dead bytes of closed segments, by the segment table (dead: their extents less the live bytes). */
function closedLog(closed: readonly SegmentInfo[]): { live: number; dead: number } {
  let live = 0;
  for (const seg of closed) live += seg.liveBytes;
  return { live, dead: closed.length * SEGMENT_BYTES - live };
}

function withPrefix(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + 1);
  out[0] = KV_KEY_PREFIX;
  out.set(bytes, 1);
  return out;
}

function notUtf8Key(key: unknown, op: string): DaxError {
  return new DaxError('EINVAL', `${op}: key must be a string (keyEncoding 'utf8'), got ${describeValue(key)}`);
}

/** A getMany batch: the index keys (views of `slab`, MANY_KEY_ROOM bytes each) and their newest entries. */
interface ManyBatch {
  keys: Uint8Array[];
  found: Float64Array;
  slab: Uint8Array;
}

/** Keys per epoch pin in getMany. */
const GET_MANY_BATCH = 256;

/** Room for one index key in a getMany batch: the prefix byte and MAX_KEY_BYTES key bytes. */
const MANY_KEY_ROOM = MAX_KEY_BYTES + 1;

function newManyBatch(): ManyBatch {
  return {
    keys: new Array<Uint8Array>(LOOKUP_MANY_MAX).fill(new Uint8Array(0)),
    found: new Float64Array(LOOKUP_MANY_MAX),
    slab: new Uint8Array(LOOKUP_MANY_MAX * MANY_KEY_ROOM),
  };
}
