/**
 * Protocol switches for tests that must show a protocol test goes red without its
 * mechanism (STYLE.md: "a test of a protocol must be shown to fail when the protocol is
 * switched off"). Read once from DAXSTORE_TEST_BREAK=<name>[,<name>] at module load;
 * tests in the same process flip them with setTestBreak(). Never set in production:
 * every switch makes the store unsafe.
 *
 * Known names:
 *   alloc-publish-before-index  allocate stores word1 and word0, then persists once (word0
 *                               can become durable without word1)
 *   free-skip-persist           free() stores FREE but does not persist it before returning
 *   superblock-single-persist   superblock update writes both copies, then persists once
 *   allocator-no-lock           the allocator searches and marks its bitmap without its lock
 *
 * Read by the addon itself from the same variable (so only settable per process, not with
 * setTestBreak): flock (open takes no flock), sigbus-guard (guarded copies run unguarded).
 */
import { isBroken, setBroken } from '../test-break.js';

export type TestBreak =
  'alloc-publish-before-index' | 'free-skip-persist' | 'superblock-single-persist' | 'allocator-no-lock';

export function testBreak(name: TestBreak): boolean {
  return isBroken(name);
}

/** Turns one switch on or off in this thread (tests only). */
export function setTestBreak(name: TestBreak, on: boolean): void {
  setBroken(name, on);
}
