/**
 * Two check bytes that find and correct any one wrong byte of a short record: a Reed-Solomon
 * code over GF(2^8) (polynomial x^8+x^4+x^3+x^2+1) with roots 1 and 2, over a record of n <= 255
 * bytes two of which (CHECK_A, CHECK_B) hold the check. Its minimum distance is 3: a record
 * with one wrong byte is corrected to exactly the record written; two or more wrong bytes are
 * found, or (rarely) miscorrected, so a caller validates what it gets back. Owner records (16
 * bytes, owner-table.ts) and the words of object-table records (8 bytes each, object-table.ts)
 * carry it.
 */

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
for (let i = 0, x = 1; i < 255; i++) {
  EXP[i] = x;
  LOG[x] = i;
  x <<= 1;
  if ((x & 0x100) !== 0) x ^= 0x11d;
}
for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];

const mul = (a: number, b: number): number => (a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]]);
const div = (a: number, b: number): number => (a === 0 ? 0 : EXP[(LOG[a] + 255 - LOG[b]) % 255]);

/** Byte indices of the two check bytes in every record (bytes 6 and 7 of the first 8-byte word). */
export const CHECK_A = 6;
export const CHECK_B = 7;

/** Writes the check bytes of bytes[0, n) (the other bytes being the record). */
export function sealBytes(bytes: Uint8Array, n: number): void {
  let a = 0;
  let b = 0;
  for (let i = 0; i < n; i++) {
    if (i === CHECK_A || i === CHECK_B) continue;
    a ^= bytes[i];
    b ^= mul(bytes[i], EXP[i]);
  }
  const checkA = div(b ^ mul(a, EXP[CHECK_B]), EXP[CHECK_A] ^ EXP[CHECK_B]);
  bytes[CHECK_A] = checkA;
  bytes[CHECK_B] = a ^ checkA;
}

function syndromes(bytes: Uint8Array, n: number): [number, number] {
  let s0 = 0;
  let s1 = 0;
  for (let i = 0; i < n; i++) {
    s0 ^= bytes[i];
    s1 ^= mul(bytes[i], EXP[i]);
  }
  return [s0, s1];
}

/** Whether the check of bytes[0, n) holds. */
export function checkHolds(bytes: Uint8Array, n: number): boolean {
  const [s0, s1] = syndromes(bytes, n);
  return s0 === 0 && s1 === 0;
}

/**
 * Corrects the one wrong byte of bytes[0, n) in place: returns its index, or -1 when the check
 * already holds, or -2 when no single byte explains the damage (nothing changed).
 */
export function correctOneByte(bytes: Uint8Array, n: number): number {
  const [s0, s1] = syndromes(bytes, n);
  if (s0 === 0 && s1 === 0) return -1;
  if (s0 === 0 || s1 === 0) return -2;
  const at = (LOG[s1] - LOG[s0] + 255) % 255;
  if (at >= n) return -2;
  bytes[at] ^= s0;
  return at;
}
