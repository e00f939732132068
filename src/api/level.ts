/**
 * `daxstore/level`: a daxstore as an abstract-level database, for code written against the
 * level ecosystem (level, classic-level, memory-level): `new DaxLevel(path, options)`.
 */
export { DaxLevel, type DaxLevelOptions } from '../level/dax-level.js';
