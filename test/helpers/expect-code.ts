import { expect } from 'vitest';
import { isDaxError, type DaxError } from '../../src/errors.js';

/** fn must throw a DaxError with this code; returns it for further checks. */
export function expectCode(fn: () => unknown, code: string): DaxError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isDaxError(caught), String(caught)).toBe(true);
  expect((caught as DaxError).code).toBe(code);
  return caught as DaxError;
}

/** The error code fn throws (or the error's text when it has none), undefined when it returns. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/** The DaxError code fn throws, undefined when it returns; anything that is not a DaxError is rethrown (a bug, not an outcome). */
export function daxCodeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (isDaxError(e)) return e.code;
    throw e;
  }
}
