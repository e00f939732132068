/**
 * assert(): for what must never happen. A failed assertion is a bug in daxstore, not a
 * user error: it throws an AssertionError that no daxstore code catches.
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`daxstore invariant broken: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string | (() => string) = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionError(typeof message === 'function' ? message() : message);
}
