/** Argument parsers for commander options: each rejects bad input as a usage error (exit 2). */
import { InvalidArgumentError } from 'commander';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gib: 2 ** 30,
};

/** '64M', '1GiB', '4096' -> bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = m === null ? undefined : SIZE_UNITS[m[2].toLowerCase()];
  if (m === null || unit === undefined)
    throw new InvalidArgumentError(`'${text}' is not a size (e.g. 4096, 64M, 1GiB)`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`'${text}' is not a positive size`);
  return bytes;
}

export function parseCount(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new InvalidArgumentError(`'${text}' is not a non-negative integer`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`'${text}' is too large`);
  return n;
}

export function parsePositive(text: string): number {
  const n = parseCount(text);
  if (n === 0) throw new InvalidArgumentError(`'${text}' must be at least 1`);
  return n;
}

/** '5s', '500ms', '2' (seconds) -> milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (m === null) throw new InvalidArgumentError(`'${text}' is not a duration (e.g. 2s, 500ms)`);
  const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : 1000);
  if (!(ms > 0)) throw new InvalidArgumentError(`'${text}' must be positive`);
  return ms;
}

/** '1,2,4' -> [1, 2, 4]. */
export function parseList(text: string): number[] {
  return text.split(',').map((t) => parsePositive(t));
}
