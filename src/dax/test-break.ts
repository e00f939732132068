/**
 * Protocol switches of the DAX layer, for tests that must go red without the mechanism
 * (STYLE.md). Read once from DAXSTORE_TEST_BREAK=<name>[,<name>] at module load; worker
 * tests pass the variable in the worker's env. Never set in production.
 *
 *   dax-mkwrite-unlocked   R1: the write fault unlocks the entry between mkwrite and the
 *                          DIRTY tag (writeback can clean in between)
 *   dax-fault-no-recheck   R2: the fault neither takes the invalidate lock nor re-checks
 *                          the size under it (a fault can install a block past a truncate)
 *   dax-write-copy-locked  R4: write() reads a source view of this space while holding the
 *                          destination's entry lock, locking the source entry to do it
 *   dax-invalidate-dirty   R5: invalidate drops DIRTY/TOWRITE entries too
 *   dax-rmap-no-recheck    R3: rmap/memoryFailure trust the owner table without re-checking
 *                          the locked entry still points at the block
 *   dax-free-now           R6: removed blocks are freed at once instead of through the epoch
 *   dax-poison-page-only   memory failure: a 2 MiB view checks only the faulted page's block
 *                          for poison, not the whole extent (a bad block inside is read)
 *   dax-writeback-no-flush writeback clears the tags without flushing the blocks (the crash
 *                          test must find pages whose writeback returned but are not durable)
 *   dax-writeback-unserialized  writebacks of one object run concurrently (one can clear the
 *                          TOWRITE another set and flush after that one returned)
 *   dax-alloc-zero-unpersisted  a fresh block is zeroed but not persisted before it is
 *                          published (a crash can expose a freed block's old bytes)
 */
import { isBroken, setBroken } from '../test-break.js';

export type DaxTestBreak =
  | 'dax-mkwrite-unlocked'
  | 'dax-fault-no-recheck'
  | 'dax-write-copy-locked'
  | 'dax-invalidate-dirty'
  | 'dax-rmap-no-recheck'
  | 'dax-free-now'
  | 'dax-poison-page-only'
  | 'dax-writeback-no-flush'
  | 'dax-alloc-zero-unpersisted'
  | 'dax-writeback-unserialized';

export function daxBreak(name: DaxTestBreak): boolean {
  return isBroken(name);
}

/** Turns one switch on or off in this thread (tests only). */
export function setDaxBreak(name: DaxTestBreak, on: boolean): void {
  setBroken(name, on);
}
