/** The value worker w writes for its n-th key in the growth tests (length and bytes from (w, n)). */
export function growValue(w: number, n: number): Buffer {
  const length = 100 + ((w * 7919 + n * 104729) % 3000);
  const v = Buffer.alloc(length, (w * 31 + n) & 0xff);
  v.writeUInt32LE(n, 0);
  v.writeUInt32LE(w, 4);
  return v;
}
