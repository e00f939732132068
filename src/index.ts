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
export { createSimMedia, attachSimMedia, SimMedia, type CrashSelection } from './device/sim-media.js';
export { Device, type DeviceHandle, type DeviceStats, type OwnerInfo, type FormatOptions } from './device/device.js';
export { diffWords, diffAllWords } from './native/diff-words.js';
