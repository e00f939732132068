/**
 * The test-break switch registry: every switch that turns a protocol off, declared once, and the
 * one place that reads DAXSTORE_TEST_BREAK. A test of a protocol proves something only if it
 * fails without the protocol, so each switch names the test that goes red with it
 * (test/test-break-registry.test.ts checks that test exists and names the switch). Never set a
 * switch outside tests: every one makes the store unsafe. docs/TESTING.md says how to add one.
 *
 * How a switch is read (`read`):
 *   call     isBroken(name) at every use; tests flip it in their own thread with setBroken or
 *            withBroken, or set it for a worker or child with breakEnv.
 *   load     brokenAtLoad(name), once per thread when the module loads, into a constant: for
 *            hot paths, where even a Set lookup would show. Set it with breakEnv for a worker
 *            or child process; setBroken refuses it.
 *   process  read by the addon, given to it by src/native/addon.ts from the main thread's
 *            environment when it loads (one addon per process). Set it with breakEnv for a child
 *            process.
 *
 * A sabotaged path is a separate named function (xxxBroken, or a name saying what it skips),
 * reached by one branch at the top of the real one:
 *
 *   if (isBroken('kv-skip-drain')) return this.commitUnfenced();
 *
 * testHooks holds the callbacks tests install to force an interleaving (one object for every
 * layer; per thread, since functions cannot cross threads).
 */

export type SwitchLayer = 'addon' | 'device' | 'index' | 'dax' | 'kv' | 'cli';

export interface SwitchSpec {
  readonly layer: SwitchLayer;
  readonly read: 'call' | 'load' | 'process';
  /** what the switch breaks: the protocol step it removes */
  readonly breaks: string;
  /** test files with a test whose title names the switch and that goes red with it */
  readonly red: readonly string[];
}

export const SWITCHES = {
  flock: {
    layer: 'addon',
    read: 'process',
    breaks: 'opening a region takes no flock, so a second opener gets in',
    red: ['test/device/region-flock.test.ts'],
  },
  'sigbus-guard': {
    layer: 'addon',
    read: 'process',
    breaks: 'guarded copies run without the SIGBUS guard (a poisoned page kills the process)',
    red: ['test/device/region-guarded-copy.test.ts'],
  },
  'prefault-unbounded': {
    layer: 'addon',
    read: 'process',
    breaks: 'a prefault starts a thread whatever number of prefault threads run already',
    red: ['test/device/region-prefault-bound.test.ts'],
  },
  'alloc-publish-before-index': {
    layer: 'device',
    read: 'call',
    breaks: "allocate stores the owner record's two words and persists once (word0 durable without word1)",
    red: ['test/device/device-crash.test.ts', 'test/cli/cli-crash-planted-bugs.test.ts'],
  },
  'free-skip-persist': {
    layer: 'device',
    read: 'call',
    breaks: 'free() stores FREE but does not persist it before the block can be reused',
    red: ['test/device/device-crash.test.ts', 'test/cli/cli-crash-planted-bugs.test.ts'],
  },
  'superblock-single-persist': {
    layer: 'device',
    read: 'call',
    breaks: 'a superblock update writes both copies, then persists once',
    red: ['test/device/device-crash.test.ts'],
  },
  'death-unnoticed': {
    layer: 'device',
    read: 'call',
    breaks:
      'no thread is ever seen as dead (participants.ts): nothing a dead thread held is recovered (locks, pins, writer slots, its operation in flight)',
    red: ['test/kv/kv-thread-death.test.ts'],
  },
  'epoch-full-keeps-dead': {
    layer: 'index',
    read: 'call',
    breaks:
      'a full participant table refuses a new thread (EBUSY) without freeing the slots of dead threads not yet reaped',
    red: ['test/index/index-thread-death.test.ts'],
  },
  'owner-no-correct': {
    layer: 'device',
    read: 'call',
    breaks: 'open does not correct a damaged owner record (one wrong byte): the store is unopenable',
    red: [
      'test/device/owner-table-damage.test.ts',
      'test/kv/kv-owner-damage.test.ts',
      'test/kv/kv-damage-seeded.test.ts',
    ],
  },
  'allocator-no-lock': {
    layer: 'device',
    read: 'call',
    breaks: 'the allocator searches and marks its bitmap without its lock',
    red: ['test/device/device-workers.test.ts'],
  },
  'entry-lock': {
    layer: 'index',
    read: 'load',
    breaks: 'grab ignores LOCKED: entry locks are not exclusive',
    red: ['test/index/entry-lock-exclusion.test.ts'],
  },
  'entry-wake': {
    layer: 'index',
    read: 'load',
    breaks: 'waiters never set WAITERS, so unlock and delete wake nobody',
    red: ['test/index/entry-lock-wakeups.test.ts'],
  },
  'baton-uncounted': {
    layer: 'index',
    read: 'load',
    breaks: 'the lost-wake-up check ignores batons out (a wake-up in flight counts as lost)',
    red: ['test/index/entry-lock-timeout-race.test.ts'],
  },
  seqlock: {
    layer: 'index',
    read: 'load',
    breaks: "replace() stores the value words without the seqlock's sequence bumps",
    red: ['test/index/entry-lock-seqlock.test.ts'],
  },
  'wait-arm': {
    layer: 'index',
    read: 'load',
    breaks: 'a waiter is queued only when it goes to sleep: a wake-up between re-check and sleep is lost',
    red: ['test/index/wait-table-workers.test.ts'],
  },
  'wait-key': {
    layer: 'index',
    read: 'load',
    breaks: 'wake-ups match the wait-table slot only, not the key',
    red: ['test/index/wait-table-workers.test.ts'],
  },
  'timeout-unordered': {
    layer: 'index',
    read: 'load',
    breaks: "a timed-out wait's lost-wake-up check runs after the slot mutex is dropped",
    red: ['test/index/entry-lock-timeout-race.test.ts'],
  },
  epoch: {
    layer: 'index',
    read: 'load',
    breaks: 'retire() releases at once: no grace period (R6)',
    red: [
      'test/index/epoch-stress.test.ts',
      'test/index/radix-tree-readers.test.ts',
      'test/index/radix-tree-reclaim.test.ts',
    ],
  },
  'limbo-view-stale': {
    layer: 'index',
    read: 'load',
    breaks: 'a thread keeps its old limbo view after another thread grew the limbo',
    red: ['test/index/epoch-cross-thread.test.ts'],
  },
  'tree-lock-unpinned': {
    layer: 'index',
    read: 'load',
    breaks: 'treeLock holders are not pinned, so what they read can be reclaimed under them',
    red: ['test/index/tree-lock-pin.test.ts'],
  },
  'append-shift': {
    layer: 'index',
    read: 'load',
    breaks: 'a child is added to an N4/16/32 in sorted place by shifting bytes under lock-free readers',
    red: ['test/index/radix-tree-append.test.ts'],
  },
  'tree-hint-unchecked': {
    layer: 'index',
    read: 'call',
    breaks: "a descent's insert hint is used without checking the tree's structure version",
    red: ['test/index/radix-tree-hint.test.ts'],
  },
  'dax-mkwrite-unlocked': {
    layer: 'dax',
    read: 'call',
    breaks: 'R1: the write fault unlocks the entry between the DIRTY tag and mkwrite',
    red: ['test/dax/r1-mkwrite-dirty.test.ts'],
  },
  'dax-fault-no-recheck': {
    layer: 'dax',
    read: 'call',
    breaks: 'R2: the fault takes no invalidate lock and does not re-check the size under it',
    red: ['test/dax/r2-fault-vs-truncate.test.ts'],
  },
  'dax-rmap-no-recheck': {
    layer: 'dax',
    read: 'call',
    breaks: 'R3: rmap and memoryFailure trust the owner table without re-checking the locked entry',
    red: ['test/dax/r3-rmap-under-churn.test.ts'],
  },
  'dax-write-copy-locked': {
    layer: 'dax',
    read: 'call',
    breaks: "R4: write() reads a source view of this space while holding the destination's entry lock",
    red: ['test/dax/r4-write-from-self.test.ts'],
  },
  'dax-invalidate-dirty': {
    layer: 'dax',
    read: 'call',
    breaks: 'R5: invalidate drops DIRTY and TOWRITE entries too',
    red: ['test/dax/r5-invalidate-keeps-dirty.test.ts', 'test/dax/r5-invalidate-workers.test.ts'],
  },
  'dax-free-now': {
    layer: 'dax',
    read: 'call',
    breaks: 'R6: removed blocks are freed at once instead of through the epoch',
    red: [
      'test/dax/r6-views-outlive-truncate.test.ts',
      'test/dax/r6-views-workers.test.ts',
      'test/kv/kv-compaction.test.ts',
    ],
  },
  'dax-poison-page-only': {
    layer: 'dax',
    read: 'call',
    breaks: "a 2 MiB view checks only the faulted page's block for poison, not the whole extent",
    red: ['test/dax/memory-failure-huge.test.ts', 'test/dax/memory-failure-huge-workers.test.ts'],
  },
  'dax-writeback-no-flush': {
    layer: 'dax',
    read: 'call',
    breaks: 'writeback clears the tags without flushing the blocks',
    red: ['test/dax/writeback-workers.test.ts', 'test/dax/dax-crash.test.ts'],
  },
  'dax-writeback-unserialized': {
    layer: 'dax',
    read: 'call',
    breaks: 'writebacks of one object run concurrently (one clears the TOWRITE another set)',
    red: ['test/dax/writeback-workers.test.ts'],
  },
  'dax-reap-adopt-own': {
    layer: 'dax',
    read: 'call',
    breaks:
      "the death reaper takes a dead thread's published staging block's page entry over in its own name: a reaper that dies before filling it leaves the empty placeholder to its own reap, which removes it, and the page's block is owned but unreachable while a later fault gives the page a second block",
    red: ['test/dax/dax-reaper-death.test.ts'],
  },
  'dax-recover-poison-unmarked': {
    layer: 'dax',
    read: 'call',
    breaks: "an open bulk-loads every page entry as a value: a poisoned small page's entry loses its POISONED state",
    red: ['test/dax/space-reopen-entries.test.ts'],
  },
  'dax-alloc-zero-unpersisted': {
    layer: 'dax',
    read: 'call',
    breaks: 'a fresh block is zeroed but not persisted before it is published',
    red: ['test/dax/dax-crash.test.ts'],
  },
  'kv-skip-drain': {
    layer: 'kv',
    read: 'call',
    breaks: "'sync' writes flush but never fence: acknowledged writes may be lost",
    red: ['test/kv/kv-crash.test.ts', 'test/cli/cli-crash.test.ts'],
  },
  'grow-size-private': {
    layer: 'device',
    read: 'call',
    breaks: "a growth's new size is kept by the growing thread's media object, not the shared size word",
    red: ['test/kv/kv-growth.test.ts'],
  },
  'grow-superblock-first': {
    layer: 'device',
    read: 'call',
    breaks: 'a growth writes the superblock naming the new size before the file is extended',
    red: ['test/kv/kv-growth-crash.test.ts'],
  },
  'kv-txn-no-last-try': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a transaction's commit gets no last try that grows the store: one whose values need more than the reclaim rounds' growth steps is ENOSPC in a store that can grow",
    red: ['test/kv/kv-space-txn.test.ts'],
  },
  'kv-compaction-grows': {
    layer: 'kv',
    read: 'call',
    breaks:
      "compaction's copies grow a full growable store before they take the reserve: reclaiming garbage grows the store under steady overwrites",
    red: ['test/kv/kv-space-steady.test.ts'],
  },
  'grow-before-compact': {
    layer: 'kv',
    read: 'call',
    breaks: 'a full store that can grow grows even when its log is mostly dead, instead of compacting first',
    red: ['test/kv/kv-growth-space.test.ts'],
  },
  'kv-large-grows-at-fault': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a large value's pages grow a full store from the DAX fault path at once, before superseded values and dead log space are released or compacted",
    red: ['test/kv/kv-growth-large.test.ts'],
  },
  'kv-no-window': {
    layer: 'kv',
    read: 'call',
    breaks: 'every media offset is read and written through the first 4 GiB window (one view, as before windows)',
    red: ['test/kv/kv-large-store.test.ts'],
  },
  'kv-skip-checksum': {
    layer: 'kv',
    read: 'call',
    breaks: 'recovery accepts records whose checksum does not match (torn records)',
    red: ['test/kv/kv-crash.test.ts'],
  },
  'kv-walk-window-no-recopy': {
    layer: 'kv',
    read: 'call',
    breaks: "a segment walk trusts its window's copy of a record that fails its checksum (no fresh copy)",
    red: ['test/kv/kv-record-walk.test.ts'],
  },
  'kv-scan-past-poison': {
    layer: 'kv',
    read: 'call',
    breaks: "recovery's scan ignores the segment's poisoned blocks and reads a record running into one",
    red: ['test/kv/kv-recovery-scan.test.ts'],
  },
  'kv-no-resync': {
    layer: 'kv',
    read: 'call',
    breaks:
      "recovery's scan ends a segment at its first bad record, taken for a torn tail: what follows is lost and a deleted or overwritten key comes back silently",
    red: [
      'test/kv/kv-damage-rollback.test.ts',
      'test/kv/kv-recovery-poison.test.ts',
      'test/kv/kv-damage-seeded.test.ts',
    ],
  },
  'kv-no-watermark': {
    layer: 'kv',
    read: 'call',
    breaks: 'recovery ignores the durable watermarks: every bad region is taken for a torn tail and cut silently',
    red: ['test/kv/kv-damage-rollback.test.ts'],
  },
  'kv-large-no-verify': {
    layer: 'kv',
    read: 'call',
    breaks: 'reads of a large value skip its checksum: damaged bytes are returned as the value',
    red: ['test/kv/kv-large-checksum.test.ts', 'test/kv/kv-damage-seeded.test.ts'],
  },
  'kv-seq-before-lock': {
    layer: 'kv',
    read: 'call',
    breaks: "put takes its sequence before the key's entry lock: log order can disagree with publish order",
    red: ['test/kv/kv-workers.test.ts'],
  },
  'kv-compact-no-commit': {
    layer: 'kv',
    read: 'call',
    breaks: 'compaction retires a segment without making its copies durable',
    red: ['test/kv/kv-compaction.test.ts', 'test/cli/cli-crash-planted-bugs.test.ts', 'test/cli/cli-crash.test.ts'],
  },
  'kv-compact-no-recheck': {
    layer: 'kv',
    read: 'call',
    breaks:
      'R3: compaction moves an entry without re-checking, under its lock, that the index still points at it (and lists the entries dead when it measured the segment too)',
    red: ['test/kv/kv-workers.test.ts'],
  },
  'kv-compact-drop-tombstones': {
    layer: 'kv',
    read: 'call',
    breaks: 'compaction drops every tombstone of an absent key, ignoring the tombstone rule',
    red: ['test/kv/kv-tombstones.test.ts'],
  },
  'kv-compact-swept-tombstone-dropped': {
    layer: 'kv',
    read: 'call',
    breaks:
      'compaction drops a DEL the tombstone rule never weighed (its key was present then) once a tombstone sweep left its key absent, though an older PUT may remain',
    red: ['test/kv/kv-tombstones.test.ts'],
  },
  'kv-compact-open-set-first': {
    layer: 'kv',
    read: 'call',
    breaks:
      'automatic compaction reads the open-segment table before the segment table: a segment opened between the two reads is retired while its writer appends to it',
    red: ['test/kv/kv-compaction-opening-writer.test.ts'],
  },
  'kv-compact-skip-open-flush': {
    layer: 'kv',
    read: 'call',
    breaks: "'group'/'none': compaction retires a segment without flushing the other writers' open segments",
    red: ['test/kv/kv-compaction-open-writers.test.ts', 'test/kv/kv-compaction-running-writer.test.ts'],
  },
  'kv-compact-open-flush-unfenced': {
    layer: 'kv',
    read: 'call',
    breaks:
      'those flushes get no fence of their own: they share the fence of the owner change that retires the segment',
    red: ['test/kv/kv-compaction-open-writers.test.ts'],
  },
  'object-record-no-correct': {
    layer: 'dax',
    read: 'call',
    breaks: 'loading the object table does not correct a record word with one wrong byte: the space is unopenable',
    red: ['test/dax/object-table-damage.test.ts', 'test/kv/kv-damage-seeded.test.ts'],
  },
  'kv-compact-no-retired-mark': {
    layer: 'kv',
    read: 'call',
    breaks:
      "compaction retires a segment with its head SEAL intact: salvage can restore it as live when its freed extent's owner record is damaged, bringing back what it held",
    red: ['test/kv/kv-owner-damage.test.ts', 'test/kv/kv-compaction-mutex.test.ts'],
  },
  'kv-compact-no-mutex': {
    layer: 'kv',
    read: 'call',
    breaks: 'compactions do not take the compaction mutex and can run concurrently',
    red: ['test/kv/kv-compaction-mutex.test.ts'],
  },
  'kv-large-remove-now': {
    layer: 'kv',
    read: 'call',
    breaks: 'R6: a superseded large-value object is removed at once, not after the grace period',
    red: ['test/kv/kv-large-values.test.ts'],
  },
  'kv-checkpoint-trust-stale': {
    layer: 'kv',
    read: 'call',
    breaks:
      'open trusts a checkpoint without checking that the log still holds what it covers: neither its coverage (freed or reused segments) nor the records it covers are checked',
    red: ['test/kv/kv-checkpoint.test.ts'],
  },
  'kv-checkpoint-uncovered': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a checkpoint taken while running stores every key's newest entry instead of its version at the snapshot, so it names records its coverage does not hold (not durable, or later deletes it misses)",
    red: ['test/kv/kv-checkpoint-running.test.ts'],
  },
  'kv-checkpoint-close-kept-unchecked': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a clean close keeps the newest checkpoint without looking whether the log changed since: the next open replays what was written after it',
    red: ['test/kv/kv-checkpoint-close-kept.test.ts'],
  },
  'kv-checkpoint-cover-ahead-unheld': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a background checkpoint hops its coverage on ahead of its capture without holding a snapshot: compaction frees and reuses covered segments under the hop',
    red: ['test/kv/kv-checkpoint-running-image.test.ts'],
  },
  'kv-checkpoint-hash-unheld': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a running checkpoint releases its snapshot as soon as its covered segments' check and hash have started on their thread, not once they are taken: compaction frees covered segments under the read",
    red: ['test/kv/kv-checkpoint-running-image.test.ts'],
  },
  'kv-checkpoint-retired-unretried': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a running checkpoint whose read of a covered segment finds the head a compaction marked retired meanwhile fails with ECORRUPT instead of capturing again: a checkpoint fails for a segment nothing damaged',
    red: ['test/kv/kv-checkpoint-running-image.test.ts'],
  },
  'kv-checkpoint-ahead-pass-gap': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a background checkpoint's second pass of the hop ahead of its capture registers its snapshot after the first pass's is released: compaction frees segments the first pass hopped in between",
    red: ['test/kv/kv-checkpoint-running-image.test.ts'],
  },
  'kv-checkpoint-body-not-collapsed-ahead': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a background checkpoint writing its body does not make the free extent its next extent takes one huge page ahead (tmpfs MADV_COLLAPSE): each extent's write fault faults in 512 pages of 4 KiB, then collapses them",
    red: ['test/kv/kv-checkpoint-collapse-ahead.test.ts'],
  },
  'kv-checkpoint-recaptures-unbounded': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a running checkpoint captures again however many captures compaction has taken before: a compaction after every capture keeps it from ever ending',
    red: ['test/kv/kv-checkpoint-running-image.test.ts'],
  },
  'kv-checkpoint-writing-unspared': {
    layer: 'kv',
    read: 'call',
    breaks:
      "another checkpoint's removal of the older ones, and a reclaim that drops checkpoints, do not spare the one a background checkpoint is writing over several steps: its body is removed under it and its next step fails",
    red: ['test/kv/kv-checkpoint-running-image.test.ts'],
  },
  'kv-checkpoint-ignore-tombstones': {
    layer: 'kv',
    read: 'call',
    breaks:
      "the close-time checkpoint reads no leaf's entry header although the index holds tombstones: a key deleted while a snapshot was held is stored as live and comes back at the next open",
    red: ['test/kv/kv-checkpoint.test.ts'],
  },
  'kv-checkpoint-in-place-unhashed': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a checkpoint read in place from the mapping is not checksummed (a damaged byte past its header is loaded as if intact)',
    red: ['test/kv/kv-checkpoint.test.ts'],
  },
  'kv-checkpoint-image-unhashed': {
    layer: 'kv',
    read: 'call',
    breaks:
      "open does not compare a checkpoint's checksum (copied out or in place): a damaged byte of its tree image is loaded into the index as if intact",
    red: ['test/kv/kv-checkpoint-image.test.ts'],
  },
  'kv-checkpoint-tail-unpatched': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a tail applied to a checkpoint's loaded tree image writes no replaced key's new entry into its leaf: the keys the tail overwrote serve the checkpoint's older values",
    red: ['test/kv/kv-checkpoint-tail-image.test.ts'],
  },
  'kv-checkpoint-hash-unchecked': {
    layer: 'kv',
    read: 'call',
    breaks:
      "open with a checkpoint hashes the segments it covers but does not compare the hashes with the checkpoint's (a record damaged after close is served from the checkpoint instead of reported or refused)",
    red: ['test/kv/kv-checkpoint-hash.test.ts'],
  },
  'kv-checkpoint-tail-unread': {
    layer: 'kv',
    read: 'call',
    breaks:
      'open takes every segment a checkpoint covers to end where it covers it, without looking for the end marker there: records appended after the checkpoint in a segment it covers (a reopen after a kill) are lost',
    red: ['test/kv/kv-checkpoint-quiet-tail.test.ts'],
  },
  'kv-checkpoint-run-left-small': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a clean reopen leaves the arena run its checkpoint's tree image was copied into advised for small pages where the check's thread populated it so (fresh huge pages came dear): the index keeps 4 KiB pages there, every lookup more TLB misses, for the process's life",
    red: ['test/kv/kv-checkpoint-image-pages.test.ts'],
  },
  'kv-checkpoint-graft-unchecked': {
    layer: 'kv',
    read: 'call',
    breaks:
      "open grafts a checkpoint's tree image without waiting for the check of the records it covers (started before the checksum, on threads of its own): a record damaged after close is served from the checkpoint instead of reported or refused",
    red: ['test/kv/kv-checkpoint-overlap.test.ts'],
  },
  'kv-checkpoint-early-list-unmatched': {
    layer: 'kv',
    read: 'call',
    breaks:
      "the covered-record check started on the newest checkpoint's segment list (read before its checksum) is taken for the checkpoint loaded even when that one lists other segments (an older one, after the newest failed): its verdicts judge segments they are not of",
    red: ['test/kv/kv-checkpoint-overlap.test.ts'],
  },
  'kv-checkpoint-carry-changed': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a checkpoint hashes a segment its predecessor lists under another nonce or `used` without checking its records: the hash vouches for records damaged while the store ran',
    red: ['test/kv/kv-checkpoint-hash.test.ts'],
  },
  'kv-checkpoint-trust-covered': {
    layer: 'kv',
    read: 'call',
    breaks:
      'open with a checkpoint does not check the records it covers (a damaged durable record is served from the checkpoint instead of reported or refused)',
    red: ['test/kv/kv-damage-rollback.test.ts'],
  },
  'kv-large-no-orphan-scan': {
    layer: 'kv',
    read: 'call',
    breaks: 'open does not remove large-value objects no live key references (they leak)',
    red: ['test/kv/kv-large-values.test.ts', 'test/kv/kv-large-crash.test.ts'],
  },
  'kv-large-retire-uncommitted': {
    layer: 'kv',
    read: 'call',
    breaks: "'group'/'none': a superseded large value is retired before the superseding record is durable",
    red: ['test/kv/kv-large-crash.test.ts'],
  },
  'kv-structures-unpersisted': {
    layer: 'kv',
    read: 'call',
    breaks: 'a new msgpack shared structure is written to the store but not persisted before a record uses it',
    red: ['test/kv/kv-structures.test.ts'],
  },
  'kv-large-free-early': {
    layer: 'kv',
    read: 'call',
    breaks: 'a put or delete over a large value removes the old object before the superseding record is durable',
    red: ['test/cli/cli-crash-planted-bugs.test.ts'],
  },
  'kv-large-ref-before-data': {
    layer: 'kv',
    read: 'call',
    breaks: "a large value's bytes are never flushed: its record is durable before its data",
    red: ['test/cli/cli-crash-planted-bugs.test.ts'],
  },
  'kv-no-end-marker': {
    layer: 'kv',
    read: 'call',
    breaks: "reserve() does not zero the 16 bytes after a record: the scan runs into the extent's earlier life",
    red: ['test/kv/kv-record-stage.test.ts'],
  },
  'kv-group-resolve-early': {
    layer: 'kv',
    read: 'call',
    breaks: "'group': batchAsync, putAsync and deleteAsync resolve before the group commit made their write durable",
    red: ['test/kv/kv-batch-async.test.ts'],
  },
  'kv-counters-shared': {
    layer: 'kv',
    read: 'call',
    breaks:
      "the stats counters are counted into one shared word with a plain read and store, not the writer's own slot",
    red: ['test/kv/kv-stats-counters.test.ts'],
  },
  'kv-batch-publish-per-key': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a batch publishes its entries one key at a time (each seqlock opened and closed before the next, a 0-20 us spin between keys), not all opened before any is finished',
    red: ['test/kv/kv-batch-visibility.test.ts'],
  },
  'kv-one-extent-reserve': {
    layer: 'kv',
    read: 'call',
    breaks:
      'the reserve is one extent also when the priority segment has no spare room: a store filled with fully live segments has compaction room for none of them, and deletes spread over its segments fill that room first',
    red: ['test/kv/kv-space-full.test.ts'],
  },
  'kv-trust-estimates': {
    layer: 'kv',
    read: 'call',
    breaks:
      "recovery's per-segment estimates are trusted and never replaced by counts: a reopened full store lets its reserve go to puts on live figures far too low, and its deletes then end in ENOSPC",
    red: ['test/kv/kv-space-full.test.ts'],
  },
  'kv-no-reserve': {
    layer: 'kv',
    read: 'call',
    breaks:
      'the store keeps no reserve (Device.setReserve(0)): puts fill every extent, and a delete in a full store has no room for its record',
    red: ['test/kv/kv-space-full.test.ts'],
  },
  'kv-no-reclaim': {
    layer: 'kv',
    read: 'call',
    breaks: 'a write whose allocation failed reports ENOSPC at once, without collecting the epoch or compacting first',
    red: ['test/kv/kv-space-large-overwrite.test.ts'],
  },
  'kv-reclaim-cheap-again': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a write's repeated reclaims each end at their cheap steps (a few blocks released, the reserve let go) although the write failed after the last one: compaction never runs and the write gets ENOSPC",
    red: ['test/kv/kv-reaper-death.test.ts'],
  },
  'kv-checkpoint-order-trusted': {
    layer: 'kv',
    read: 'call',
    breaks:
      'an open does not distrust a checkpoint whose keys the bulk load refuses as out of order: the open fails instead of scanning the log whole',
    red: ['test/kv/kv-scan-progress.test.ts'],
  },
  'msgpack-records-non-ascii': {
    layer: 'kv',
    read: 'load',
    breaks:
      "the msgpack record reader reads a string's bytes of 0x80 and above as Latin-1 characters instead of leaving the value to msgpackr's UTF-8 decoding",
    red: ['test/kv/msgpack-records.test.ts'],
  },
  'kv-scan-progress-unchecked': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a scan (range, keys, values, getCount, deleteRange, the tombstone sweep, a running checkpoint) does not check that each batch ends past where it started: an index out of order sends range() round the same keys for ever',
    red: ['test/kv/kv-scan-progress.test.ts'],
  },
  'kv-measure-tombstones-live': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a segment's measured live bytes (measureSegment, which replaces recovery's estimates in the segment table) count the tombstones the index points at, which the table counts among its tombstones alone: they are counted twice",
    red: ['test/kv/kv-segment-counts.test.ts'],
  },
  'kv-dead-marks-kept': {
    layer: 'kv',
    read: 'call',
    breaks:
      "an extent that becomes a segment again keeps the segment table's dead marks of its earlier life: compaction skips the lookup of live entries that start where dead ones did, counts them dead and frees them with the segment",
    red: ['test/kv/kv-segment-counts.test.ts'],
  },
  'kv-checkpoint-stale-tail': {
    layer: 'kv',
    read: 'call',
    breaks:
      "an open from a checkpoint merges every entry of the log after it, also those of sequences the checkpoint covers whose key it lacks: a deleted key's old version in the tail (a compaction copy, or a segment listed under another life) brings the key back",
    red: ['test/kv/kv-checkpoint.test.ts'],
  },
  'kv-no-auto-compact': {
    layer: 'kv',
    read: 'call',
    breaks: 'no automatic compaction: dead space is reclaimed only when a write runs out of space, or by compact()',
    red: ['test/kv/kv-space-auto-compact.test.ts'],
  },
  'kv-close-keeps-segment': {
    layer: 'kv',
    read: 'call',
    breaks: "a closed handle's writer keeps its open-table slot: its segment stays open, never compacted or freed",
    red: ['test/kv/kv-space-short-workers.test.ts'],
  },
  'kv-priority-unreaped': {
    layer: 'kv',
    read: 'call',
    breaks:
      "the holder of the compaction mutex does not name itself in the priority writer's slot: a holder that dies is not reaped there, and the next one appends over the records it wrote",
    red: ['test/kv/kv-space-death.test.ts'],
  },
  'kv-create-keeps-file': {
    layer: 'kv',
    read: 'call',
    breaks: 'an open() that created its file and then failed leaves the file behind',
    red: ['test/kv/kv-space-create.test.ts'],
  },
  'kv-snapshot-no-wait': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a snapshot (or range) reads at the last sequence taken without waiting until every write up to it is published: it can see part of a batch',
    red: ['test/kv/kv-snapshot-workers.test.ts'],
  },
  'kv-snapshot-newest': {
    layer: 'kv',
    read: 'call',
    breaks: "snapshot and range reads take each key's newest version instead of the one visible at their sequence",
    red: ['test/kv/kv-snapshot-workers.test.ts'],
  },
  'kv-snapshot-no-hold': {
    layer: 'kv',
    read: 'call',
    breaks:
      'compacted segments and superseded large values are freed at once, not kept while a snapshot that can read them is held',
    red: ['test/kv/kv-snapshot-hold.test.ts'],
  },
  'kv-txn-no-validate': {
    layer: 'kv',
    read: 'call',
    breaks: 'a transaction commits without validating what it read (keys and ranges) under the entry locks',
    red: ['test/kv/kv-transaction-workers.test.ts'],
  },
  'kv-txn-record-per-write': {
    layer: 'kv',
    read: 'call',
    breaks: "a transaction's writes are committed as one record each, not as one record: a crash can keep part of it",
    red: ['test/kv/kv-crash.test.ts', 'test/cli/cli-crash.test.ts'],
  },
  'kv-txn-views-kept': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a transaction's slab is replaced but not the views made of it: bytes buffered after the replacement go through views of the old slab, over the transaction's own earlier keys and values",
    red: ['test/kv/kv-transaction.test.ts'],
  },
  'kv-ifversion-unlocked': {
    layer: 'kv',
    read: 'call',
    breaks: "put's ifVersion is compared with a lock-free read before the entry lock is taken (check, then act)",
    red: ['test/kv/kv-conditional-writes.test.ts'],
  },
  'kv-snapshot-death-kept': {
    layer: 'kv',
    read: 'call',
    breaks:
      "the death reaper leaves a dead thread's snapshot slot as it was: its snapshots stay registered and its in-flight mark stays set",
    red: ['test/kv/kv-snapshot-death.test.ts'],
  },
  'kv-reap-trust-index': {
    layer: 'kv',
    read: 'call',
    breaks:
      "the death reaper's roll-forward takes what a held entry's value words name for an entry of its key without checking: it reads and retires whatever lies there",
    red: ['test/kv/kv-reap-checks.test.ts'],
  },
  'kv-reap-adopt-own': {
    layer: 'kv',
    read: 'call',
    breaks:
      "the death reaper's roll-forward takes the dead thread's entries over in its own name: a reaper that dies in the middle leaves them to its own reap, which releases them unpublished, and the next reaper of the first dead thread no longer finds them",
    red: ['test/kv/kv-reaper-death.test.ts'],
  },
  'kv-reap-unnamed-segment-kept': {
    layer: 'kv',
    read: 'call',
    breaks:
      'the death reaper of a writer that died ALLOCATING does not look for the extent it was given and had not named yet: the extent stays owned by a segment nobody knows, until the next open',
    red: ['test/kv/kv-segment-open-death.test.ts'],
  },
  'kv-compact-waits-on-dead': {
    layer: 'kv',
    read: 'call',
    breaks:
      "compaction's listing waits for a writer slot that says ALLOCATING without looking at its writer: one that died there is never reaped while the compacting thread is the only one left, and the compaction waits forever",
    red: ['test/kv/kv-segment-open-death.test.ts'],
  },
  'kv-compact-empty-needs-room': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a reclaim judges a closed segment with nothing to move like any other: without compaction's copy room it is not worth compacting, so a store out of room keeps an empty segment and its deletes get ENOSPC",
    red: ['test/kv/kv-segment-open-death.test.ts'],
  },
  'kv-segment-counted-late': {
    layer: 'kv',
    read: 'call',
    breaks:
      "a writer counts a new segment in the store's segment count only once it has written its head SEAL, long after naming it: one that dies in between leaves a named segment uncounted, and stats().segments stays one low",
    red: ['test/kv/kv-segment-open-death.test.ts'],
  },
  'kv-segment-not-collapsed-ahead': {
    layer: 'kv',
    read: 'call',
    breaks:
      'a writer opening a log segment does not make the free extent the next segment will take one huge page ahead (tmpfs MADV_COLLAPSE): the next segment is collapsed only as it opens, and its writer faults sleep on the collapse',
    red: ['test/device/region-prefault.test.ts'],
  },
  'kv-close-keeps-death-handler': {
    layer: 'kv',
    read: 'call',
    breaks:
      "close() leaves the handle's death handler registered, doing nothing: a thread whose store handles are all closed but whose epoch domain is still open completes a reap without the store's part (the dead writer's slot, segment and operation in flight are never reaped)",
    red: ['test/kv/kv-reap-closed-handle.test.ts'],
  },
  'bench-page-locks-off': {
    layer: 'cli',
    read: 'load',
    breaks: 'the page-lock baseline of `daxstore bench locks` takes no page locks (its own check must fail)',
    red: ['test/cli/cli-bench-locks.test.ts'],
  },
} as const satisfies Record<string, SwitchSpec>;

export type SwitchName = keyof typeof SWITCHES;

const ENV = 'DAXSTORE_TEST_BREAK';

function isSwitchName(name: string): name is SwitchName {
  return Object.prototype.hasOwnProperty.call(SWITCHES, name);
}

/** The switches DAXSTORE_TEST_BREAK=<name>[,<name>] names; an unknown name is an error (a typo would test nothing). */
function parseSwitches(value: string | undefined): Set<SwitchName> {
  const names = new Set<SwitchName>();
  for (const name of (value ?? '').split(',')) {
    if (name === '') continue;
    if (!isSwitchName(name))
      throw new Error(`${ENV}: unknown switch '${name}' (src/test-break.ts lists every switch; docs/TESTING.md)`);
    names.add(name);
  }
  return names;
}

/** The switches set in this thread's environment: the only read of DAXSTORE_TEST_BREAK. */
const fromEnvironment: ReadonlySet<SwitchName> = parseSwitches(process.env[ENV]);
/** The 'call' switches on in this thread: the environment's, flipped by setBroken. */
const active = new Set<SwitchName>([...fromEnvironment].filter((name) => SWITCHES[name].read === 'call'));

/** Whether a 'call' switch is on in this thread. */
export function isBroken(name: SwitchName): boolean {
  return active.size !== 0 && active.has(name);
}

/** Whether a 'load' or 'process' switch was set in this thread's environment (read it once, into a constant). */
export function brokenAtLoad(name: SwitchName): boolean {
  if (SWITCHES[name].read === 'call') throw new Error(`test-break: '${name}' is read at every call: use isBroken`);
  return fromEnvironment.has(name);
}

/** Turns a 'call' switch on or off in this thread (tests only). */
export function setBroken(name: SwitchName, on: boolean): void {
  if (SWITCHES[name].read !== 'call')
    throw new Error(`test-break: '${name}' is read once at load: set it for a worker or child with breakEnv`);
  if (on) active.add(name);
  else active.delete(name);
}

/** Runs fn with a 'call' switch on in this thread, and turns it off again when fn returns or its promise settles. */
export function withBroken<T>(name: SwitchName, fn: () => T): T {
  setBroken(name, true);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    setBroken(name, false);
    throw e;
  }
  if (result instanceof Promise) return result.finally(() => setBroken(name, false)) as T;
  setBroken(name, false);
  return result;
}

/** The environment entry that sets these switches (none: every switch off) for a worker or child process. */
export function breakEnv(...names: SwitchName[]): { [ENV]: string } {
  return { [ENV]: names.join(',') };
}

/** Callbacks tests install to force an interleaving at a named point (per thread; unset in production). */
export const testHooks: {
  /** device.ts grow(): after each step of a growth of `media` (a crash test kills the process there) */
  growStep?: (step: 'start' | 'file-grown' | 'records-free' | 'superblock-written', media: object) => void;
  /** fault.ts: a fault about to install a block ('before-install'), its fresh block published and not yet in the tree ('published'), or between its DIRTY tag and mkwrite ('mkwrite-window') */
  faultWindow?: (point: 'before-install' | 'published' | 'mkwrite-window', objectId: number, index: number) => void;
  /**
   * space.ts reapStage: the reaper of a dead thread's published staging block holds its page
   * entry ('held') or has put the block in it ('filled'); a test stops (and terminates) the reaper there
   */
  reapStage?: (step: 'held' | 'filled') => void;
  /** writeback.ts: after a batch's TOWRITE tags are cleared, before its blocks are flushed */
  writebackWindow?: () => void;
  /** wait-table.ts: a timed-out wait before and after it dequeues itself */
  waitTimeout?: (stage: 'before-dequeue' | 'after-dequeue') => void;
  /** kv store.ts: open() has just created the store's file, before formatting it (a throw fails the create) */
  kvCreated?: (path: string) => void;
  /**
   * kv store.ts: withPriorityWriter's work has returned (its records appended and published)
   * and the priority writer is not parked yet; `appended`: its room changed (a death here leaves
   * records past the parked end for the reaper)
   */
  priorityHeld?: (appended: boolean) => void;
  /** kv store.ts batch(): its record sealed and committed, every key held (`leaves`: their leaves in the index arena `arena`), none published */
  batchSealed?: (arena: Int32Array, leaves: readonly number[]) => void;
  /** compaction.ts: automatic compaction has read one of the segment table and the open-segment table, not the other */
  compactionListing?: () => void;
  /** transfer-owner.ts: right after an owner record's word0 changed, before it is persisted */
  transferOwnerExchanged?: (block: number, fromOwnerId: number, toOwnerId: number) => void;
  /**
   * writer-reaper.ts rollForward: the roll-forward of a dead thread's record has held `done`
   * of its entries ('held'), opened `done` entries to publish ('opened', once), or published
   * `done` of them ('finished'); a test stops (and terminates) the reaper there
   */
  reapRollForward?: (stage: 'held' | 'opened' | 'finished', done: number) => void;
  /**
   * segment-writer.ts openSegment: the new segment's extent is this writer's ('allocated'), and
   * the segment table lists it ('listed'), before the open-segment table names it; the open
   * table names it, its head SEAL not yet written ('named')
   */
  segmentOpening?: (stage: 'allocated' | 'listed' | 'named') => void;
  /** checkpoint.ts: the checkpoint object created ('created'), its body durable, not its header ('body-written') */
  checkpointWrite?: (stage: 'created' | 'body-written') => void;
  /** store.ts checkpointSteps: a running checkpoint has its snapshot and coverage, its walk not begun */
  checkpointCaptured?: () => void;
  /** store.ts checkpointSteps: a background checkpoint is about to hop its coverage on ahead of its capture */
  checkpointCoveringAhead?: () => void;
  /** store.ts checkpointSteps: a running checkpoint's covered segments are being checked and hashed on their thread */
  checkpointHashing?: () => void;
  /** compaction.ts compactChosen: the tombstone rule has run over the chosen segments, no entry moved yet */
  tombstonesWeighed?: () => void;
} = {};
