/**
 * The store the open benches (open-ab.ts, open-parts.ts) reopen: kv.bench's workload written
 * by one build's kv module, the tail their --kill leaves on it, and the PRNG its keys come from.
 */

/** This package's mulberry32 whatever the build measured: the same keys for every build. */
export async function benchRandom(seed: number): Promise<() => number> {
  return (await import('../src/device/sim-media.js')).mulberry32(seed);
}

/** `count` random 16-byte keys from benchRandom(42), and that PRNG to draw on from there. */
export async function benchKeys(count: number): Promise<{ keys: Uint8Array[]; random: () => number }> {
  const random = await benchRandom(42);
  const keys: Uint8Array[] = [];
  for (let i = 0; i < count; i++) keys.push(new Uint8Array(16).map(() => Math.floor(random() * 256)));
  return { keys, random };
}

/**
 * `count` random 16-byte keys packed in one buffer (benchRandom(42)), the key at an index, and a
 * picker of them at random (benchRandom(7)): the transaction benches' workload.
 */
export async function packedKeys(count: number): Promise<{ key: (i: number) => Uint8Array; pick: () => Uint8Array }> {
  const all = new Uint8Array(count * 16);
  const rand = await benchRandom(42);
  for (let i = 0; i < all.length; i++) all[i] = (rand() * 256) | 0;
  const pickRand = await benchRandom(7);
  const key = (i: number): Uint8Array => all.subarray(i * 16, i * 16 + 16);
  return { key, pick: () => key(Math.floor(pickRand() * count)) };
}

/**
 * benchKeys(keys) with 100-byte values, then keys / 2
 * overwrites of keys drawn from them, durability 'none', closed (with its index checkpoint):
 * written through `kv`, a build's kv module, into `file`, sized `bytesPerKey` a key (at least
 * 256 MiB, whole 2 MiB extents).
 */
export async function writeBenchStore(
  kv: typeof import('../src/kv/index.js'),
  file: string,
  keys: number,
  bytesPerKey: number,
): Promise<void> {
  const { keys: all, random: r } = await benchKeys(keys);
  const size = Math.max(256 * 2 ** 20, Math.ceil((keys * bytesPerKey) / 2 ** 21) * 2 ** 21);
  const db = kv.open(file, { size, durability: 'none', keyEncoding: 'binary', valueEncoding: 'binary' });
  const value = new Uint8Array(100).fill(7);
  for (const k of all) db.put(k, value);
  for (let i = 0; i < keys / 2; i++) db.put(all[Math.floor(r() * keys)], value);
  db.close();
}

/**
 * --kill of the open benches: over writeBenchStore's `file` of `keys` keys, a tenth as many
 * overwrites of keys drawn from them (100-byte values), each acknowledged ('sync'), through `kv`;
 * then this process dies (SIGKILL, no close).
 */
export async function writeAndDie(kv: typeof import('../src/kv/index.js'), file: string, keys: number): Promise<void> {
  const { keys: all } = await benchKeys(keys);
  const db = kv.open(file, { durability: 'sync', keyEncoding: 'binary', valueEncoding: 'binary' });
  const w = await benchRandom(100);
  const value = new Uint8Array(100).fill(7);
  for (let i = 0; i < keys / 10; i++) db.put(all[Math.floor(w() * keys)], value);
  process.kill(process.pid, 'SIGKILL');
}

/**
 * A fresh process's open() of `file` timed (binary encodings, no checkpoint written or taken
 * while it is open; `recovery: 'full'` when `full`), then closed: wall and process CPU ms, and
 * the open's recovery report.
 */
export function timedReopen(
  kv: typeof import('../src/kv/index.js'),
  file: string,
  full: boolean,
): { wallMs: number; cpuMs: number; recovery: NonNullable<ReturnType<typeof kv.open>['recovery']> } {
  const t = performance.now();
  const c0 = process.cpuUsage();
  const db = kv.open(file, {
    checkpoint: false,
    checkpointEvery: 0,
    keyEncoding: 'binary',
    valueEncoding: 'binary',
    ...(full ? { recovery: 'full' as const } : {}),
  });
  const wallMs = performance.now() - t;
  const c = process.cpuUsage(c0);
  const recovery = db.recovery!;
  db.close();
  return { wallMs, cpuMs: (c.user + c.system) / 1000, recovery };
}
