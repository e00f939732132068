/**
 * The data of the encoded-values benches (kv-msgpack.bench.ts, kv-get-parts.ts): compound keys
 * ['user', n] and JS objects of about 100 bytes once packed (seven fields: numbers, strings, a
 * boolean, an array), and the loaders that fill a daxstore and an lmdb-js store with them alike.
 */
import type { KvStoreOf } from '../src/kv/index.js';
import type { RootDatabase } from 'lmdb';

export interface User {
  id: number;
  name: string;
  email: string;
  age: number;
  active: boolean;
  tags: string[];
  score: number;
}

export function user(i: number): User {
  return {
    id: i,
    name: `user ${i}`,
    email: `user${i}@example.com`,
    age: 20 + (i % 50),
    active: i % 3 !== 0,
    tags: i % 2 === 0 ? ['alpha', 'beta'] : ['gamma', 'delta'],
    score: i * 1.5,
  };
}

/** Distinct values written in turn (objects built once: the harness does not allocate per put). */
export const VALUES = 1024;

export function userValues(): User[] {
  return Array.from({ length: VALUES }, (_, i) => user(i));
}

/** A daxstore size that holds `keys` such entries with room to overwrite them. */
export function storeBytes(keys: number): number {
  return Math.max(256 * 2 ** 20, Math.ceil((keys * 800) / 2 ** 21) * 2 ** 21);
}

/** Puts ['user', n] = values[n % VALUES] for n < keys into a daxstore, in batches of 1000. */
export function fillDax(db: KvStoreOf<'ordered', 'msgpack'>, keys: number, values: readonly User[]): void {
  for (let i = 0; i < keys; i += 1000)
    db.batch(
      Array.from({ length: Math.min(1000, keys - i) }, (_, j) => ({
        type: 'put' as const,
        key: ['user', i + j],
        value: values[(i + j) % values.length],
      })),
    );
}

/** The same puts into lmdb-js, in one transaction. */
export async function fillLmdb(
  lm: RootDatabase<User, [string, number]>,
  keys: number,
  values: readonly User[],
): Promise<void> {
  await lm.transaction(() => {
    for (let i = 0; i < keys; i++) void lm.put(['user', i], values[i % values.length]);
  });
}
