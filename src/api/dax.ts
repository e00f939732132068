/**
 * `daxstore/dax`: the DAX layer under the key-value store: media (mapped files and
 * device-DAX), the formatted device with its block allocator and owner table, and spaces of
 * objects with fault / write / writeback / truncate / punchHole / invalidate, the reverse map
 * and memory-failure handling.
 */
export { DaxError, isDaxError, type DaxErrorCode } from '../errors.js';
export type { Media, MediaInfo, MediaKind, MediaHandle, FlushMethod } from '../device/media.js';
export {
  openRegion,
  attachMappedMedia,
  cpuFlushMethods,
  MappedMedia,
  type OpenRegionOptions,
} from '../device/region.js';
export { attachMedia } from '../device/attach-media.js';
export { readDevDaxGeometry, type DevDaxGeometry } from '../device/sysfs.js';
export { Device, type DeviceHandle, type DeviceStats, type OwnerInfo, type FormatOptions } from '../device/device.js';
export {
  DaxSpace,
  type DaxSpaceHandle,
  type SpaceOptions,
  type RecoveryReport,
  type MemoryFailureEvent,
} from '../dax/space.js';
export { DaxObject, type ObjectOptions, type ByteRange } from '../dax/object.js';
export type { RmapResult } from '../dax/rmap.js';
