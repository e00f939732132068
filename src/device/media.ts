/**
 * Media: raw persistent bytes plus the primitives that make them durable.
 *
 * Two implementations share this interface, so every layer above runs its tests on
 * either (TigerBeetle: real and test storage share one interface):
 *   - MappedMedia (region.ts): the whole region mmapped by the addon, a SharedArrayBuffer
 *     over it, flushes by clwb/clflushopt/clflush + sfence or msync.
 *   - SimMedia (sim-media.ts): an in-memory SharedArrayBuffer plus a durable image;
 *     flush marks lines, drain makes them durable, crash images mix in pending words.
 *
 * Invariants
 *   - `buffer` is the one SharedArrayBuffer over the whole media; its byteLength is `maxSize`,
 *     of which the first `size` bytes are usable (a growable file maps its reservation).
 *     Views handed out anywhere are subarrays of it, never new wrappings of the address.
 *   - Offsets are byte offsets from the start of the media.
 *
 * Persistence ordering
 *   - A store is durable only after flush() of its line and a later drain(). persist()
 *     is flush + drain for one range. Fence once per commit, not once per line:
 *     flush every range first, then drain once.
 *   - The atomic unit of persistence is an aligned 8-byte word: a crash keeps or
 *     loses each such word whole, independently of its neighbours. Publish a pointer
 *     with one aligned 8-byte store after what it points at is durable.
 */

export type MediaKind = 'devdax' | 'fsdax' | 'file' | 'tmpfs' | 'sim';
export type FlushMethod = 'clwb' | 'clflushopt' | 'clflush' | 'msync' | 'sim';

export const CACHE_LINE_BYTES = 64;
export const WORD_BYTES = 8;

export interface MediaInfo {
  /** what the region is: device-DAX, file on a DAX fs, page-cache file, tmpfs, simulated */
  readonly kind: MediaKind;
  /** how flush() makes data durable */
  readonly flushMethod: FlushMethod;
  /** true when the mapping took MAP_SYNC (fs-DAX): CPU flushes alone are durable */
  readonly mapSync: boolean;
  /** bytes */
  readonly size: number;
  /** mapping alignment in bytes (page size, or the device-DAX alignment) */
  readonly alignment: number;
  /** path mapped, or a description for simulated media */
  readonly path: string;
}

export interface Media extends MediaInfo {
  /** The one SharedArrayBuffer over the whole media. */
  readonly buffer: SharedArrayBuffer;
  /** Write back the cache lines covering [offset, offset+length). Not ordered until drain(). */
  flush(offset: number, length: number): void;
  /** Fence: every flush() issued before this call is durable when it returns. */
  drain(): void;
  /** flush(offset, length) then drain(), or msync of the covering pages on a page-cache file. */
  persist(offset: number, length: number): void;
  /**
   * Advice: the range is about to be written, fault its pages in now on another thread so
   * the writer does not (mapped media: addon/prefault.h). Changes no byte; a media without
   * it (simulated) has nothing to fault.
   */
  prefault?(offset: number, length: number): void;
  /**
   * Advice: make the range's whole 2 MiB pages huge now, on another thread, before anything
   * uses it (tmpfs: addon/prefault.h). Changes no byte; a media whose pages are never made huge
   * has nothing to do.
   */
  collapse?(offset: number, length: number): void;
  /**
   * Copy [offset, offset+length) into dest, turning a machine check / SIGBUS on the
   * mapping into a DaxError('EIO') instead of a dead process.
   */
  copyOut(offset: number, length: number, dest: Uint8Array): void;
  /**
   * Copy [offset, offset+length) of what the media holds into dest at destOffset with read(2),
   * never touching the mapping: 0, or -errno (a poisoned page is -EIO). For bulk reads of
   * bytes this process has not touched yet (recovery's scan): the first touch of each 4 KiB
   * page of a mapping costs a page fault, and on a virtual machine with shadow page tables a
   * hypervisor exit besides, far more than the copy. -EOPNOTSUPP where the file does not
   * hold what the mapping shows (a private copy) or cannot be read (device-DAX); absent on
   * media with no file (simulated).
   */
  readInto?(offset: number, length: number, dest: Uint8Array, destOffset: number): number;
  /**
   * The addon's id of the mapping when readInto reaches its file, for native bulk reads of the
   * same bytes (the covered-record check at open, recovery.ts verifyCovered); absent otherwise.
   */
  readonly readableRegionId?: number;
  /**
   * A structured-cloneable handle to post to a worker thread; attachMedia(handle) there
   * (src/device/attach-media.ts) gives a Media over the same memory, no copying, no remapping.
   */
  share(): MediaHandle;
  /**
   * Release the media. On the opener: drops the flock and descriptors; the mapping itself
   * lives until the buffer is collected. On an attached worker: detaches only.
   */
  close(): void;
  readonly closed: boolean;
  /**
   * Bytes the media may grow to (the length of `buffer`, which is mapped over all of them); equal
   * to `size` for a media that cannot grow. `size` is then the bytes usable now: it only grows,
   * and every thread holding the buffer sees the same value (a shared word).
   */
  readonly maxSize: number;
  /**
   * Makes the media at least `bytes` long (within maxSize), allocated, the new size durable; no
   * byte moves and every view stays valid. ENOSPC when the file system is full. Absent on a media
   * that cannot grow (device-DAX, simulated). Callers serialize growth (the device's grow lock).
   */
  grow?(bytes: number): void;
  /** Allocates [offset, offset + length) of a sparse file before its first use: ENOSPC when the file system is full. */
  allocate?(offset: number, length: number): void;
  /** This open created the file as a hole (OpenRegionOptions.sparse): format allocates what it uses. */
  readonly sparse?: boolean;
}

/** What share() returns: plain data and SharedArrayBuffers only. */
export type MediaHandle =
  | {
      readonly type: 'mapped';
      readonly regionId: number;
      readonly buffer: SharedArrayBuffer;
      readonly info: MediaInfo;
      /** Float64Array[1]: the media's size now (region.ts), shared by every thread */
      readonly sizeWord: SharedArrayBuffer;
    }
  | { readonly type: 'sim'; readonly state: unknown; readonly info: MediaInfo };
