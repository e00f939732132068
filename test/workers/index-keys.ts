/** Keys shared by the index worker tests and their main-thread checks. */
import { indexKey } from '../../src/index/keys.js';

const encoder = new TextEncoder();

/** Key i of the shared key set: half byte strings with shared prefixes, half 8-byte index keys. */
export function testKey(i: number): Uint8Array {
  return i % 2 === 0 ? encoder.encode(`k/${i % 7}/${i}`) : indexKey(i * 3);
}
