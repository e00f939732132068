/** The regions of a store the seeded damage trials damage (test/workers/kv-damage-trials.ts says how). */
export const REGIONS = [
  'superblock',
  'owner-record',
  'log',
  'large-value',
  'object-record',
  'poison-log',
  'poison-large-value',
  'poison-superblock',
  'poison-owner-table',
  'poison-object-table',
  'multi',
] as const;
/** One byte anywhere in what the store wrote (superblocks, owner records, log, large values, object records), by size. */
export type Region = (typeof REGIONS)[number] | 'anywhere';

/** The counts of a damage trial that must be 0: each is a way a damaged store misleads its user. */
export const BAD_OUTCOMES = [
  'wrongValues',
  'rolledBack',
  'resurrectedSilently',
  'lostSilently',
  'lostOutsideDamage',
  'unopenableAfterSalvage',
  'unopenableAfterRepair',
  'checkMissed',
  'repairNotClean',
] as const;
export type BadOutcome = (typeof BAD_OUTCOMES)[number];
