/** The value worker w writes for its n-th key in the growth tests (length and bytes from (w, n)). */
export function growValue(w: number, n: number): Buffer {
  const length = 100 + ((w * 7919 + n * 104729) % 3000);
  const v = Buffer.alloc(length, (w * 31 + n) & 0xff);
  v.writeUInt32LE(n, 0);
  v.writeUInt32LE(w, 4);
  return v;
}

/** Key n of worker w in the randomized growth test. */
export function growKey(w: number, n: number): Buffer {
  return Buffer.from(`r${w}/${n}`);
}

/**
 * The value of version v (> 0) of key n of worker w in the randomized growth test: mostly
 * 200 B to 8 KiB, one in 16 a large value (24 to 64 KiB, a DAX object); bytes from (w, n, v).
 */
export function randomValue(w: number, n: number, v: number): Buffer {
  let h = Math.imul(w + 1, 0x9e3779b1) ^ Math.imul(n + 1, 0x85ebca6b) ^ Math.imul(v, 0xc2b2ae35);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  const length = h % 16 === 0 ? 24 * 1024 + (h % (40 * 1024)) : 200 + (h % 8000);
  const out = Buffer.alloc(length, h & 0xff);
  out.writeUInt32LE(v, 0);
  out.writeUInt32LE(n, 4);
  out.writeUInt32LE(h, length - 4);
  return out;
}
