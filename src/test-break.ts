/**
 * Protocol break switches, shared by every layer (STYLE.md: a test of a protocol must be shown
 * to fail when the protocol is switched off). The set is read once from
 * DAXSTORE_TEST_BREAK=<name>[,<name>] at module load, per thread; tests flip switches in
 * their own thread with setBroken(). Never set in production: every switch makes the store
 * unsafe. Each layer names and documents its own switches in its test-break.ts and calls
 * these; the index reads its few switches as load-time constants instead, because they sit on
 * paths where even a Set lookup shows in the benchmarks.
 */
const active = new Set<string>((process.env['DAXSTORE_TEST_BREAK'] ?? '').split(',').filter((s) => s !== ''));

export function isBroken(name: string): boolean {
  return active.size !== 0 && active.has(name);
}

export function setBroken(name: string, on: boolean): void {
  if (on) active.add(name);
  else active.delete(name);
}
