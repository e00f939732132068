/**
 * `daxstore/advanced`: the concurrency primitives under the store. Proceed with caution:
 * these expose the lock and epoch protocols directly (an entry lock left held, a pin never
 * released or a view used after its guard ends is the caller's bug, not a DaxError), and
 * their shapes may change between minor versions. docs/ARCHITECTURE.md states the rules.
 */
export {
  RadixTree,
  type RadixTreeHandle,
  type RadixTreeOptions,
  type RangeOptions,
  type EntryInfo,
  type RangeItem,
  type TreeStats,
} from '../index/radix-tree.js';
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
} from '../index/entry-lock.js';
export { indexKey, keyIndex } from '../index/keys.js';
export { EpochDomain, type EpochHandle } from '../index/epoch.js';
export { WaitTable, type WaitTableHandle, type WaitMode, type WaitResult } from '../index/wait-table.js';
