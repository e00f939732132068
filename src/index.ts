/**
 * daxstore's public API. Layers (device ← index ← dax ← kv) are exported from here as
 * they land; everything not exported is internal.
 */
export { DaxError, isDaxError, type DaxErrorCode } from './errors.js';

// device: media (mapped or simulated), layout, allocator with owner table, bad blocks
export type { Media, MediaInfo, MediaKind, MediaHandle, FlushMethod } from './device/media.js';
export { openRegion, attachMappedMedia, cpuFlushMethods, MappedMedia, type OpenRegionOptions } from './device/region.js';
export { attachMedia } from './device/attach-media.js';
export { readDevDaxGeometry, type DevDaxGeometry } from './device/sysfs.js';
export { createSimMedia, attachSimMedia, SimMedia, mulberry32, type CrashSelection } from './device/sim-media.js';
export { Device, type DeviceHandle, type DeviceStats, type OwnerInfo, type FormatOptions } from './device/device.js';
export { transferOwner } from './device/transfer-owner.js';
export { diffWords, diffAllWords } from './native/diff-words.js';

// index: shared radix tree with entry locks, wait table and epoch reclamation
export { RadixTree, type RadixTreeHandle, type RadixTreeOptions, type RangeOptions, type EntryInfo, type RangeItem, type TreeStats } from './index/radix-tree.js';
export {
  grab,
  grabAsync,
  tryGrab,
  grabIndex,
  unlock,
  replace,
  deleteLocked,
  setTagLocked,
  clearTagLocked,
  waitUnlocked,
  type EntryRef,
  type EntryState,
  type EntryTag,
  type GrabOptions,
} from './index/entry-lock.js';
export { indexKey, keyIndex } from './index/keys.js';
export { EpochDomain, RETIRE_ARENA_NODE, RETIRE_DEVICE_BLOCK, type EpochHandle } from './index/epoch.js';
export { WaitTable, waitKey, type WaitTableHandle, type WaitMode, type WaitResult } from './index/wait-table.js';

// dax: objects with fault, mkwrite, writeback, truncate, invalidate, reverse map, memory failure
export { DaxSpace, type DaxSpaceHandle, type SpaceOptions, type RecoveryReport, type MemoryFailureEvent } from './dax/space.js';
export { DaxObject, type ObjectOptions, type ByteRange } from './dax/object.js';
export type { RmapResult } from './dax/rmap.js';

// kv: the key-value store (open, attach, put/get/getView/batch/range/deleteRange …)
export {
  open,
  openMedia,
  attach,
  KvStore,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  type OpenOptions,
  type Durability,
  type BatchOp,
  type KvRangeOptions,
  type KvHandle,
  type KvStats,
  type KvRecoveryReport,
  type CompactionReport,
  type Key,
  type Value,
} from './kv/index.js';
