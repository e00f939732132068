/**
 * Protocol switches of the key-value layer, for tests that must go red without the mechanism
 * (STYLE.md). One switch set for every layer (src/test-break.ts: read from
 * DAXSTORE_TEST_BREAK=<name>[,<name>] at module load); in-process tests flip these with
 * setKvBreak. Never set in production.
 *
 *   kv-skip-drain      'sync' puts flush but never fence: acknowledged writes may be lost
 *   kv-skip-checksum   recovery accepts records whose checksum does not match (torn records)
 *   kv-scan-past-poison  recovery's scan ignores the segment's first poisoned block: it reads
 *                      (and hashes) a record that runs into it, as if nothing were poisoned
 *   kv-seq-before-lock put takes its sequence before the entry lock, so the log order of
 *                      two puts of one key can disagree with the order they were published
 *                      (it then spins 0..200 us at random, standing in for a preemption in that window)
 *   kv-compact-no-commit  compaction retires a segment without making the copies durable
 *   kv-compact-no-recheck compaction moves an entry without re-checking, under the entry lock,
 *                      that the index still points at it (R3): it can bring back an old value
 *   kv-large-remove-now  a superseded large-value object is removed at once, not after the
 *                      epoch grace period (R6: a pinned reader's object disappears)
 *   kv-large-no-orphan-scan  open skips removing kv objects no live key references (leaks)
 *   kv-large-retire-uncommitted  'group'/'none': a superseded large value's object is retired
 *                      without first making the superseding record durable (a crash can then
 *                      recover the old record pointing at a removed object)
 *   kv-compact-drop-tombstones  compaction drops every tombstone of an absent key, ignoring the
 *                      tombstone rule (compaction.ts): an older PUT in another segment comes back
 *   kv-no-end-marker   reserve() does not zero the 16 bytes after a record: on a reused extent the
 *                      scan then runs into the earlier life's bytes (dropped as invalid, reported)
 *   kv-group-resolve-early  'group': batchAsync resolves before the group commit made its batch durable
 *   kv-large-free-early  a put or delete over a large value removes the superseded object (its blocks
 *                      freed for reuse) BEFORE the superseding record is durable, instead of
 *                      after it and the grace period: a crash can recover the old record
 *                      pointing at a removed object (with dax-free-now: at reused blocks)
 *   kv-compact-skip-open-flush  'group'/'none': compaction retires a segment without first flushing
 *                      the open segments of the other writers, so a dead entry can go while the
 *                      record that superseded it is not durable (a crash loses both, issue 5)
 *   kv-compact-open-flush-unfenced  those lines are flushed but compaction fences only when it has
 *                      copies of its own: with none, the owner change that retires the segment
 *                      shares one fence with them and may reach the media first
 *   kv-compact-no-mutex  compactions do not take the COMPACTION mutex: one can drop a tombstone
 *                      because the PUT it shadows sits in a segment another is unpublishing
 *                      (staging in memory, not durable yet): a crash then brings the PUT back
 *   kv-large-ref-before-data  a large value is stored through write-fault views and never
 *                      flushed: the record that references it is durable before its bytes are
 *   kv-counters-shared  the stats counters (puts, keys, dead entries, deletes, batches) are
 *                      counted by every writer into ONE shared word with a plain read and store,
 *                      instead of into the writer's own slot: concurrent writers lose counts
 */
import { isBroken, setBroken } from '../test-break.js';

export type KvTestBreak =
  | 'kv-skip-drain'
  | 'kv-skip-checksum'
  | 'kv-scan-past-poison'
  | 'kv-seq-before-lock'
  | 'kv-compact-no-commit'
  | 'kv-compact-no-recheck'
  | 'kv-large-remove-now'
  | 'kv-large-no-orphan-scan'
  | 'kv-large-retire-uncommitted'
  | 'kv-group-resolve-early'
  | 'kv-compact-drop-tombstones'
  | 'kv-large-free-early'
  | 'kv-large-ref-before-data'
  | 'kv-no-end-marker'
  | 'kv-compact-skip-open-flush'
  | 'kv-compact-open-flush-unfenced'
  | 'kv-compact-no-mutex'
  | 'kv-counters-shared';

export function kvBreak(name: KvTestBreak): boolean {
  return isBroken(name);
}

/** Turns one switch on or off in this thread (tests only). */
export function setKvBreak(name: KvTestBreak, on: boolean): void {
  setBroken(name, on);
}
