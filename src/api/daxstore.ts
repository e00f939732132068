/**
 * `daxstore`: the key-value store. This is the stable, supported surface; the lower layers
 * are published separately (`daxstore/dax`, `daxstore/advanced`, `daxstore/testing`), and
 * everything not exported from one of those entry points is internal.
 */
export { DaxError, isDaxError, type DaxErrorCode } from '../errors.js';
export {
  open,
  openMedia,
  attach,
  KvStore,
  KvDamageError,
  KvSnapshot,
  KvTransaction,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  MIN_STORE_BYTES,
  type OpenOptions,
  type OpenMediaOptions,
  type Durability,
  type WriteOptions,
  type BatchOp,
  type KvRangeOptions,
  type KvHandle,
  type KvStats,
  type KvRecoveryReport,
  type KvDamage,
  type RecoveryMode,
  type SalvageReport,
  type CompactionReport,
  type Key,
  type Value,
} from '../kv/index.js';
export type { Media, MediaInfo, MediaKind, FlushMethod } from '../device/media.js';
