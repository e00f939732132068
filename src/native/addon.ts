/**
 * The one door to C++: loads build/Release/daxstore.node and describes everything it
 * exports. Nothing else in daxstore may require the .node file.
 *
 * Callers validate arguments before calling (types, ranges, alignment): the addon
 * re-checks what would otherwise touch a bad address, nothing more.
 * Hot paths (flush, persist, msync, copyOut, copyIn) return 0 or -errno; set-up paths
 * (openRegion) throw a NativeError, which toDaxError() turns into a DaxError.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { DaxError, type DaxErrorCode } from '../errors.js';
import { brokenAtLoad } from '../test-break.js';

/** Numbering shared with addon/region.h. */
export const NATIVE_KINDS = ['devdax', 'fsdax', 'file', 'tmpfs'] as const;
export const NATIVE_FLUSH_METHODS = ['clwb', 'clflushopt', 'clflush', 'msync'] as const;
export type NativeKind = (typeof NATIVE_KINDS)[number];
export type NativeFlushMethod = (typeof NATIVE_FLUSH_METHODS)[number];

export interface NativeRegion {
  /** process-global id; any thread holding `buffer` may flush or copy by it */
  readonly regionId: number;
  /** the one SharedArrayBuffer over the mapping; the mapping dies with its last reference */
  readonly buffer: SharedArrayBuffer;
  /** index into NATIVE_KINDS */
  readonly kind: number;
  /** index into NATIVE_FLUSH_METHODS */
  readonly flushMethod: number;
  readonly mapSync: boolean;
  readonly sizeBytes: number;
  /** bytes mapped (the buffer's length): the reservation the file may grow into */
  readonly mapBytes: number;
  readonly alignment: number;
  /** this open created the file (a failure before the store is formatted should remove it) */
  readonly created: boolean;
}

export interface NativeAddon {
  /** flushMethod: index into NATIVE_FLUSH_METHODS, or -1 to choose by kind. sizeBytes 0: the file's size. */
  openRegion(
    path: string,
    create: boolean,
    sizeBytes: number,
    alignment: number,
    isDevDax: boolean,
    flushMethod: number,
    privateCopy: boolean,
    /** address space to map, at least the size: the store grows into it (0: the size) */
    reserveBytes?: number,
    /** create with ftruncate (a hole) instead of posix_fallocate */
    sparse?: boolean,
  ): NativeRegion;
  /** Drops the flock and the descriptor; false if already closed. The mapping stays until collected. */
  closeRegion(regionId: number): boolean;
  /** The file allocated and extended to at least `bytes` (within the mapping), its size durable: 0 or -errno. */
  growRegion(regionId: number, bytes: number): number;
  /** posix_fallocate of [offset, offset + length) of the file: 0 or -errno (ENOSPC: the file system is full). */
  allocateRegion(regionId: number, offset: number, length: number): number;
  isRegionLive(regionId: number): boolean;
  flush(regionId: number, offset: number, length: number): number;
  drain(): void;
  persist(regionId: number, offset: number, length: number): number;
  msync(regionId: number, offset: number, length: number): number;
  /** SIGBUS while copying -> -EIO, never a dead process. */
  copyOut(regionId: number, offset: number, length: number, dest: Uint8Array): number;
  copyIn(regionId: number, offset: number, length: number, src: Uint8Array): number;
  /**
   * pread(2) of [offset, offset + length) of the region's file into dest at destOffset, not
   * through the mapping (addon/persist.h): 0, or -errno (-EOPNOTSUPP: device-DAX).
   */
  readRegion(regionId: number, offset: number, length: number, dest: Uint8Array, destOffset: number): number;
  /** indices into NATIVE_FLUSH_METHODS of the CPU flush instructions this CPU has */
  cpuFlushMethods(): number[];
  /** Indices (from startWord) of differing 8-byte words written into out; returns the count or -EINVAL. */
  diffWords(a: Uint8Array, b: Uint8Array, out: Uint32Array, startWord: number): number;
  /**
   * madvise(MADV_HUGEPAGE) over the whole 2 MiB pages inside the buffer's reservation
   * (maxByteLength of a growable buffer). Bytes advised (0: none fits) or -errno
   * (-EINVAL: no transparent huge pages in this kernel).
   */
  adviseHugePages(buffer: SharedArrayBuffer): number;
  /**
   * madvise MADV_HUGEPAGE (`huge`) or MADV_NOHUGEPAGE over the whole 2 MiB pages of [offset,
   * offset + length) of the buffer's reservation. Bytes advised (0: none fits) or -errno.
   */
  adviseRange(buffer: SharedArrayBuffer, offset: number, length: number, huge: boolean): number;
  /**
   * membarrier(2) MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (after a QUERY): 0, or -errno
   * (-ENOSYS: unsupported). Once per process, on a thread of its own (addon/membarrier.h): this
   * waits for it, started here or by membarrierRegisterAhead.
   */
  membarrierRegister(): number;
  /** Starts membarrierRegister's registration on its thread without waiting for it. */
  membarrierRegisterAhead(): void;
  /**
   * Whether the kernel offers MEMBARRIER_CMD_PRIVATE_EXPEDITED, its registration and
   * MEMBARRIER_CMD_GLOBAL (a QUERY, asked once); when it does, starts the registration without
   * waiting for it.
   */
  membarrierOffered(): boolean;
  /**
   * Tests: makes the process's registration fail (-EPERM) although the kernel offers it, when it
   * has not started yet; whether it will fail.
   */
  membarrierRegisterFailing(): boolean;
  /**
   * A full barrier on every CPU running a thread of this process; 0 or -errno. Waits for the
   * registration (started if nothing started it), then MEMBARRIER_CMD_PRIVATE_EXPEDITED, or
   * MEMBARRIER_CMD_GLOBAL if the registration failed although the kernel offered it.
   */
  membarrier(): number;
  /**
   * Key-value recovery's segment scan (src/kv/recovery-native.ts has the io slots): validates
   * records from io.at and appends a sort record per entry to out. media holds the device's
   * bytes [bias, bias + media.length) (bias 0: the whole mapping). A status (end, invalid,
   * poison, full, eio), or -EINVAL for arguments that would read outside media or out.
   */
  scanKvSegment(
    media: Uint8Array,
    io: Float64Array,
    out: Uint32Array,
    poison: Uint32Array,
    regions: Float64Array,
    bias?: number,
  ): number;
  /**
   * MADV_POPULATE_WRITE over the whole pages of [offset, offset + length) of the buffer, on a
   * thread of its own (addon/prefault.h), with `collapse` after MADV_COLLAPSE over its whole
   * 2 MiB pages: 0 once started, or -errno (-EINVAL: bad range or no MADV_POPULATE_WRITE in
   * this build; -EAGAIN: no thread).
   */
  prefaultWrite(buffer: SharedArrayBuffer, offset: number, length: number, collapse?: boolean): number;
  /** The whole 2 MiB pages of the range made huge now (MADV_COLLAPSE, addon/prefault.h); 0 or -errno (the pages then stay small). */
  collapseRange(buffer: SharedArrayBuffer, offset: number, length: number): number;
  /**
   * The clear bits of words[0, count); with perGroup, each group of groupWords words' clear bits
   * added to perGroup[group] (addon/bits.h). -EINVAL for arguments out of range.
   */
  countClearBits(words: Uint32Array, count: number, perGroup?: Uint16Array, groupWords?: number): number;
  /** The addon's test-break switches (addon/test-break.h), process-global; set once by native() below. */
  setTestBreaks(flock: boolean, sigbusGuard: boolean, prefaultUnbounded: boolean): void;
  /**
   * xxh64 (seed 0) of bytes[offset, offset + length) into out[0] (low 32 bits) and out[1], or
   * with `xxh3` their XXH3-64, hashed in place (a SIGBUS is -EIO, not a dead process). 0,
   * -EINVAL or -EIO.
   */
  hashRange(bytes: Uint8Array, offset: number, length: number, out: Uint32Array, xxh3?: boolean): number;
  /**
   * out[i] = 1 when a scan of segment i from its `used` ends there at once, nothing found (no
   * record header fits after it, or its first 16 bytes are 0: the end marker), else 0. segs:
   * [base, used] per segment (device offsets; base and used multiples of 8, used <= segmentBytes,
   * the segment inside the media). Read under the SIGBUS guard. 0, -EINVAL or -EIO.
   */
  endMarkersAt(
    media: Uint8Array | SharedArrayBuffer,
    segs: Float64Array,
    segmentBytes: number,
    out: Uint8Array,
  ): number;
  /** The process's participant table (addon/participants.h): the same memory in every thread, never freed. */
  participantTable(): SharedArrayBuffer;
  /**
   * Registers this thread's environment cleanup hook for participant `slot`: when the thread
   * ends (returns, throws, exits, is terminated), a slot still ALIVE with `generation` turns
   * DEAD and the table's death counter grows by one. 0, or -errno.
   */
  watchThreadExit(slot: number, generation: number): number;
  /**
   * Key-value recovery's winner pick: each key's newest entry into the bulk load's columns; the
   * count, or -errno. media: the device's bytes from offset 0 (the whole mapping's buffer past 4 GiB).
   */
  pickKvWinners(
    media: Uint8Array | SharedArrayBuffer,
    recs: Uint32Array,
    count: number,
    values: Float64Array,
    starts: Uint32Array,
    lengths: Uint16Array,
    keys: Uint8Array,
    keyPrefix: number,
    keepDeletes?: boolean,
    sequences?: BigUint64Array,
  ): number;
  /**
   * Merges a checkpoint's winner columns with the tail's (addon/kv-recovery.h JsMergeKvColumns)
   * into a tape of which entry each step takes: the count taken, or -errno. media: as for pickKvWinners.
   */
  mergeKvColumns(
    media: Uint8Array | SharedArrayBuffer,
    aCount: number,
    aValues: Float64Array,
    aStarts: Uint32Array,
    aLengths: Uint16Array,
    aKeys: Uint8Array,
    bCount: number,
    bValues: Float64Array,
    bStarts: Uint32Array,
    bLengths: Uint16Array,
    bKeys: Uint8Array,
    covered: number,
    tape: Uint32Array,
    counts: Float64Array,
    dropStale: boolean,
    bSequences?: BigUint64Array,
  ): number;
  /**
   * Checks the records of [base, base + used) of a segment whole (addon/kv-recovery.h
   * JsVerifyKvRecords): 0 all valid, 1 not (io[3] where, io[4] why), -EIO or -EINVAL. media:
   * device bytes from io[0] (a window, or a copy of the segment).
   */
  /** starts[i] = the sum of lengths[0, i) for i < count (a key column back to back); the total, or -errno. */
  columnStarts(lengths: Uint16Array, starts: Uint32Array, count: number): number;
  /**
   * How many of the 8-byte words at byteOffset + i * stride (i < count) of `buffer` are not 0
   * (relaxed loads); the first out.length of those i go to out, ascending. -errno on bad arguments.
   */
  nonzeroWords(
    buffer: SharedArrayBuffer | Uint8Array,
    byteOffset: number,
    count: number,
    stride: number,
    out: Int32Array,
  ): number;
  /**
   * out[floor((values[i] - origin) / extentBytes)]++ for i < count: the values outside out (not
   * counted), or -errno. With `merged`, the values a merge tape takes from values and bValues.
   */
  countByExtent(
    values: Float64Array,
    count: number,
    origin: number,
    extentBytes: number,
    out: Int32Array,
    ...merged: [bValues: Float64Array, tape: Uint32Array] | []
  ): number;
  /**
   * The radix tree's bulk load (addon/bulk-load.h): leaves null, the words entries' leaves take
   * (or -(i + 1): entry i's shape is bad); else the leaves written into the run at word `run`,
   * their offsets in `leaves`, 0 (or -(i + 1): key i out of order). With `merged`, the entries are
   * the takes of a merge tape over the columns before (a) and these (b): addon/bulk-load.h.
   */
  bulkLeaves(
    arena: SharedArrayBuffer,
    run: number,
    keys: Uint8Array,
    starts: Uint32Array,
    lengths: Uint16Array,
    values: Float64Array,
    count: number,
    leaves: Int32Array | null,
    ...merged:
      [keys: Uint8Array, starts: Uint32Array, lengths: Uint16Array, values: Float64Array, tape: Uint32Array] | []
  ): number;
  /** The inner nodes over count sorted leaves: run < 0, the words they take; else written into the run, the root. -errno. */
  bulkInner(arena: SharedArrayBuffer, leaves: Int32Array, count: number, run: number): number;
  /**
   * starts[i] = the byte offset of the key of leaf i of a bulk load's leaf run (keys of these
   * lengths) from the run's start (addon/bulk-load.h; starts null: none written); the run's
   * words, or -EINVAL.
   */
  leafKeyStarts(lengths: Uint16Array, starts: Uint32Array | null, count: number): number;
  /**
   * A tree image (`words` words, pointers from `origin`, inner nodes from word `inner`) copied into
   * the run at word `run`, its pointers moved with it (addon/bulk-load.h): the inner nodes in it,
   * or -EINVAL, or -ERANGE (not an image).
   */
  loadTreeImage(
    arena: SharedArrayBuffer,
    run: number,
    image: Uint8Array,
    words: number,
    origin: number,
    inner: number,
  ): number;
  /**
   * A merge tape (a = a checkpoint's columns, b = the tail's winners) applied to the image's
   * leaves just copied to `run` (addon/bulk-load.h): each key the tail replaces gets the tail's
   * value; the keys it adds (b's index) and removes (a's index) listed in `added` and `removed`,
   * each exactly as long as the merge counted. The values written, or -EINVAL, or -ERANGE.
   */
  patchImageLeaves(
    arena: SharedArrayBuffer,
    run: number,
    leafWords: number,
    starts: Uint32Array,
    values: Float64Array,
    tape: Uint32Array,
    added: Int32Array,
    removed: Int32Array,
    write: boolean,
  ): number;
  /**
   * What a running checkpoint covers of one segment (addon/kv-recovery.h): from byte `at` of
   * the segment at media[base, base + segmentBytes), every whole record of this nonce whose
   * sequences are all <= snapshot; out [end, last record's offset, records, highest sequence].
   * 0, -EINVAL, or -EIO (a media error).
   */
  coverRecords(
    media: Uint8Array,
    base: number,
    at: number,
    lastAt: number,
    segmentBytes: number,
    nonce: number,
    snapshot: number,
    maxSequence: number,
    out: Float64Array,
  ): number;
  /**
   * Starts a thread building the tree image of `count` keys back to back in `keys` (in key
   * order) with their values into `out` from word `first` (addon/bulk-load.h): a job for
   * buildTreeImageDone and buildTreeImageFinish, or -EINVAL. Until it is finished the job reads
   * the columns and writes `out`: nothing else may touch them.
   */
  buildTreeImageStart(
    keys: Uint8Array,
    lengths: Uint16Array,
    values: Float64Array,
    count: number,
    out: Uint8Array,
    first: number,
  ): object | number;
  /** Whether the build has ended (buildTreeImageFinish will not wait). */
  buildTreeImageDone(job: object): boolean;
  /** Waits for the build (`stop`: asks it to end early) and writes its outcome to out (addon/bulk-load.h); 0 or -EINVAL. */
  buildTreeImageFinish(job: object, out: Float64Array, stop: boolean): number;
  /**
   * The check of the records of many segments (addon/kv-recovery.h): segs [base, used, nonce] per
   * segment, read with pread(2) from region `regionId`'s file (-1: through the mapping), on
   * `threads` threads (1 or 2); out [status, at, reason, entries, records, hash low, hash high] per
   * segment (the XXH3-64 of its bytes [0, used)). Flag 16: hash only, no record checked. 0 or -errno.
   */
  verifyKvSegments(
    media: Uint8Array | SharedArrayBuffer,
    regionId: number,
    segs: Float64Array,
    segmentBytes: number,
    flags: number,
    out: Float64Array,
    threads: number,
  ): number;
  /**
   * verifyKvSegments started on `threads` threads of its own (0: none), returning at once: a job
   * for verifyKvSegmentsFinish, or -errno for arguments verifyKvSegments refuses. The job reads
   * the media until it is finished: finish it before the media is unmapped. `ahead`: bytes of a
   * mapping whose page tables the first helper fills first (MADV_POPULATE_READ), from their
   * start, for the caller about to read them; `fill`: memory it then populates for writing
   * (MADV_POPULATE_WRITE), for the caller about to write it, 2 MiB at a time: once one 2 MiB
   * page took more than `smallAfterNs` of its CPU, the rest's whole 2 MiB pages are advised
   * small first (MADV_NOHUGEPAGE; the caller advises them huge again). Negative or absent:
   * never.
   */
  verifyKvSegmentsStart(
    media: Uint8Array | SharedArrayBuffer,
    regionId: number,
    segs: Float64Array,
    segmentBytes: number,
    flags: number,
    threads: number,
    ahead?: Uint8Array,
    fill?: Uint8Array,
    smallAfterNs?: number,
  ): object | number;
  /** The calling thread takes the segments left (none with `stop`: the job ends early), joins the job's threads, writes the verdicts (as verifyKvSegments' out), and into `fillOut` the CPU ms of the start's `fill` and the byte of it from which it went small (-1: not); the workers' CPU ms, or -EINVAL when finished already or out is too short. */
  verifyKvSegmentsFinish(job: object, out: Float64Array, stop?: boolean, fillOut?: Float64Array): number;
  /** True once every thread of the job has returned (finish then waits for nothing), or it is finished. */
  verifyKvSegmentsDone(job: object): boolean;
  /** hashRange on a thread of its own (addon/kv-recovery.h): a job, or -EINVAL; the bytes must not change until it is finished. */
  hashRangeStart(bytes: Uint8Array, offset: number, length: number, xxh3?: boolean): object | number;
  /** True once the job's hash has ended. */
  hashRangeDone(job: object): boolean;
  /** Waits for the job's hash: 0 (in out[0], out[1]), -EIO or -EINVAL. */
  hashRangeFinish(job: object, out: Uint32Array): number;
  /** The calling thread's CPU time, ms (CLOCK_THREAD_CPUTIME_ID): benches. */
  threadCpuMs(): number;
}

/** What the addon throws from set-up paths (addon/errors.cc). */
interface NativeError extends Error {
  errno?: string;
  syscall?: string;
  path?: string;
  daxCode?: DaxErrorCode;
}

let loaded: NativeAddon | undefined;

function addonPath(): string {
  // src/native (vitest) and dist/src/native (compiled) sit at different depths.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = path.join(dir, 'build', 'Release', 'daxstore.node');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new DaxError('ENOTSUP', 'native addon build/Release/daxstore.node not found: run `npx node-gyp rebuild`');
}

export function native(): NativeAddon {
  if (loaded === undefined) {
    loaded = createRequire(import.meta.url)(addonPath()) as NativeAddon;
    // One addon per process: its switches follow the main thread's environment, never a worker's.
    if (isMainThread)
      loaded.setTestBreaks(brokenAtLoad('flock'), brokenAtLoad('sigbus-guard'), brokenAtLoad('prefault-unbounded'));
  }
  return loaded;
}

const prefaultOff = process.env['DAXSTORE_NO_PREFAULT'] === '1';
const collapseOff = process.env['DAXSTORE_NO_COLLAPSE'] === '1';

/**
 * Faults [offset, offset + length) of the buffer in on a background thread (addon/prefault.h),
 * for memory about to be written: a log segment just opened, arena memory just grown; with
 * `collapse`, its whole 2 MiB pages made huge first (MADV_COLLAPSE; not with
 * DAXSTORE_NO_COLLAPSE=1). Advice: false when it did not start (DAXSTORE_NO_PREFAULT=1, for
 * A/B benches; as many prefault threads running as the addon allows, 4; no thread; an old
 * kernel), and the writer then faults the pages itself.
 */
export function prefaultInBackground(
  buffer: SharedArrayBuffer,
  offset: number,
  length: number,
  collapse = false,
): boolean {
  return !prefaultOff && native().prefaultWrite(buffer, offset, length, collapse && !collapseOff) === 0;
}

/**
 * Makes the whole 2 MiB pages of [offset, offset + length) huge on a background thread (the
 * prefault thread's MADV_COLLAPSE, then its populate, which maps each one whole). False when it
 * did not start: DAXSTORE_NO_COLLAPSE=1 or DAXSTORE_NO_PREFAULT=1, no thread, an old kernel.
 */
export function collapseInBackground(buffer: SharedArrayBuffer, offset: number, length: number): boolean {
  return !prefaultOff && !collapseOff && native().prefaultWrite(buffer, offset, length, true) === 0;
}

const ERRNO_TO_CODE: Readonly<Record<string, DaxErrorCode>> = {
  ENOENT: 'ENOENT',
  EISDIR: 'EISDIR',
  EEXIST: 'EEXIST',
  EACCES: 'EACCES',
  EPERM: 'EACCES',
  EROFS: 'EACCES',
  ENOSPC: 'ENOSPC',
  EDQUOT: 'ENOSPC',
  EFBIG: 'ENOSPC',
  EINVAL: 'EINVAL',
  ERANGE: 'ERANGE',
  EIO: 'EIO',
  ENOTSUP: 'ENOTSUP',
  EOPNOTSUPP: 'ENOTSUP',
  ENODEV: 'ENOTSUP',
};

export function errnoToCode(errnoName: string | undefined): DaxErrorCode {
  return (errnoName !== undefined && ERRNO_TO_CODE[errnoName]) || 'ESYS';
}

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name] as const),
);

/** -5 -> 'EIO'. */
export function errnoName(negativeErrno: number): string {
  return ERRNO_NAMES.get(-negativeErrno) ?? `errno ${-negativeErrno}`;
}

/** A DaxError for a hot-path return code; `what` names the object and offset. */
export function returnCodeError(rc: number, what: string): DaxError {
  const name = errnoName(rc);
  return new DaxError(errnoToCode(name), `${what}: ${name}`, { errno: name });
}

/** A DaxError for whatever a set-up call threw. Non-native errors (bugs) pass through. */
export function toDaxError(e: unknown, what: string): unknown {
  if (!(e instanceof Error) || typeof (e as NativeError).errno !== 'string') return e;
  const ne = e as NativeError;
  const code = ne.daxCode ?? errnoToCode(ne.errno);
  return new DaxError(code, `${what}: ${ne.message}`, {
    errno: ne.errno,
    syscall: ne.syscall,
    path: ne.path,
    cause: e,
  });
}
