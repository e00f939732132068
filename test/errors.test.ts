import { describe, expect, it } from 'vitest';
import { DaxError, isDaxError } from '../src/errors.js';
import { assert, AssertionError } from '../src/assert.js';

describe('DaxError', () => {
  it('carries a stable code and names the object in its message', () => {
    const e = new DaxError('ENOENT', "no store at '/x'", { path: '/x', errno: 'ENOENT', syscall: 'open' });
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('ENOENT');
    expect(e.message).toBe("ENOENT: no store at '/x'");
    expect(e.path).toBe('/x');
    expect(isDaxError(e, 'ENOENT')).toBe(true);
    expect(isDaxError(e, 'EIO')).toBe(false);
    expect(isDaxError(new Error('x'))).toBe(false);
  });
});

describe('assert', () => {
  it('throws an AssertionError, not a DaxError, when the condition is false', () => {
    expect(() => assert(false, 'x')).toThrow(AssertionError);
    expect(() => assert(1 === 1, 'x')).not.toThrow();
    expect(() => assert(false, () => 'lazy')).toThrow(/lazy/);
  });
});
