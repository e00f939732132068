/**
 * Strict checking of options objects (no shared state). Every public call that takes an
 * options object checks it here before doing anything: an unknown key (a typo), a value of
 * the wrong type or a nonsense value is DaxError('EINVAL') naming the call and the option, so
 * a misspelled option never silently means its default (`deleteRange({ prefx })` deleting
 * everything). A key present with the value `undefined` counts as absent, except where the
 * spec says `definedIfPresent` (a bound of a delete: `{ prefix: obj.missing }` must not widen it).
 */
import { DaxError } from './errors.js';

/** The check of one option: a type name, one of a list of values, or a function returning the problem (undefined: fine). */
export type OptionCheck =
  | 'boolean'
  | 'string'
  | 'function'
  | 'object'
  | 'positiveInteger'
  | 'nonNegativeInteger'
  | 'limit'
  | readonly (string | number | boolean)[]
  | ((value: unknown) => string | undefined);

export interface OptionSpec {
  readonly [name: string]: OptionCheck;
}

/**
 * Checks `opts` against `spec` and returns it typed (an absent `opts` is `{}`). Throws
 * DaxError('EINVAL') naming `op` and the option for the first problem found.
 */
export function checkOptions<T extends object>(
  op: string,
  opts: unknown,
  spec: OptionSpec,
  definedIfPresent: readonly string[] = [],
): T {
  if (opts === undefined) return {} as T;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts))
    throw new DaxError('EINVAL', `${op}: options must be an object, got ${describeValue(opts)}`);
  for (const name of Object.keys(opts)) {
    if (!Object.prototype.hasOwnProperty.call(spec, name)) throw unknownOption(op, name, spec);
    const check = spec[name];
    const value = (opts as Record<string, unknown>)[name];
    if (value === undefined) {
      if (definedIfPresent.includes(name))
        throw new DaxError('EINVAL', `${op}: option ${name} is undefined (omit it to mean no ${name})`);
      continue;
    }
    const problem = problemOf(check, value);
    if (problem !== undefined)
      throw new DaxError('EINVAL', `${op}: option ${name} ${problem}, got ${describeValue(value)}`);
  }
  for (const sym of Object.getOwnPropertySymbols(opts))
    if (Object.prototype.propertyIsEnumerable.call(opts, sym))
      throw new DaxError('EINVAL', `${op}: unknown option ${String(sym)}`);
  return opts as T;
}

function problemOf(check: OptionCheck, value: unknown): string | undefined {
  if (typeof check === 'function') return check(value);
  if (Array.isArray(check))
    return check.includes(value as string)
      ? undefined
      : `must be one of ${check.map((c) => JSON.stringify(c)).join(', ')}`;
  switch (check) {
    case 'boolean':
    case 'string':
    case 'function':
      return typeof value === check ? undefined : `must be a ${check}`;
    case 'object':
      return value !== null && typeof value === 'object' ? undefined : 'must be an object';
    case 'positiveInteger':
      return Number.isSafeInteger(value) && (value as number) > 0 ? undefined : 'must be a positive integer';
    case 'nonNegativeInteger':
      return Number.isSafeInteger(value) && (value as number) >= 0 ? undefined : 'must be a non-negative integer';
    case 'limit':
      return (Number.isSafeInteger(value) && (value as number) >= 0) || value === Infinity
        ? undefined
        : 'must be a non-negative integer (or Infinity)';
  }
  return undefined;
}

function unknownOption(op: string, name: string, spec: OptionSpec): DaxError {
  const known = Object.keys(spec);
  const near = known.filter((k) => editDistance(k.toLowerCase(), name.toLowerCase()) <= 2);
  const hint = near.length > 0 ? ` (did you mean ${near.join(' or ')}?)` : '';
  return new DaxError(
    'EINVAL',
    `${op}: unknown option ${JSON.stringify(name)}${hint}; known options: ${known.length > 0 ? known.join(', ') : 'none'}`,
  );
}

/** Levenshtein distance (options names are short). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

/** A short description of a value for an error message (never its whole content). */
export function describeValue(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  if (x instanceof Uint8Array) return `a ${x.constructor.name} of ${x.length} bytes`;
  switch (typeof x) {
    case 'string':
      return x.length > 40 ? `a string of ${x.length} characters` : JSON.stringify(x);
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(x) + (typeof x === 'bigint' ? 'n' : '');
    case 'symbol':
      return String(x);
    case 'function':
      return 'a function';
    case 'undefined':
      return 'undefined';
    default:
      return `an object (${(x as object).constructor?.name ?? 'no prototype'})`;
  }
}
