/**
 * Worker for the snapshot and visibility tests (test/kv/kv-batch-visibility.test.ts and the
 * other kv-mvcc tests): attaches to a shared store and plays one role until the main thread
 * sets the stop word (control[1]), after a barrier (control[0] counts arrivals; every role
 * starts together). Posts its counts.
 *
 * Roles
 *   batch-writer  loops db.batch([...keys].map(put version n)): every key of batch n holds n
 *                 (an 8-byte value: u32 n, u32 n ^ 0x5a5a5a5a, so a torn value is told apart)
 *   pair-reader   loops get(first key) then get(last key): batches publish in key order, so a
 *                 reader that sees the first key at n and then the last key below n saw part
 *                 of a batch (counted as `partial`); also in read() with getView
 *   scanner       loops db.range() over every key: all must hold one version (else `partial`)
 *   snapshotter   loops db.snapshot(), then reads every key in a random order with get and
 *                 getView, and with snap.range(): all one version, and the same across them
 *   transfer      loops transactionSync: moves a random amount between two random accounts
 *                 (never below 0); every 8th also sums every account with txn.range inside the
 *                 transaction (must be the total); counts commits and ECONFLICTs
 *   auditor       loops: a snapshot summed with snap.range and with snap.get of every account,
 *                 a db.range() sum, and a read-only transaction's sum: each must be the total
 *                 (else `partial`)
 *   counter       loops transactionSync: counter = counter + 1; `ops` counts the commits
 *   cas-counter   loops getEntry('counter') then put('counter', n + 1, { ifVersion }): `ops`
 *                 counts the puts that returned true
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

export interface MvccWorkerData {
  handle: KvHandle;
  role: 'batch-writer' | 'pair-reader' | 'scanner' | 'snapshotter' | 'transfer' | 'auditor' | 'counter' | 'cas-counter';
  /** bank roles: the sum of every account */
  total?: number;
  seed?: number;
  control: SharedArrayBuffer;
  parties: number;
  keys: number;
}

export interface MvccWorkerResult {
  ops: number;
  partial: number;
  torn: number;
  conflicts: number;
  detail: string[];
}

const data = workerData as MvccWorkerData;
const db = attach(data.handle);
const control = new Int32Array(data.control);
const keyName = (i: number): string => `k${String(i).padStart(4, '0')}`;
const result: MvccWorkerResult = { ops: 0, partial: 0, torn: 0, conflicts: 0, detail: [] };
const account = (i: number): string => `acct${String(i).padStart(4, '0')}`;
const num = (v: Uint8Array | undefined): number => (v === undefined ? 0 : Number(new TextDecoder().decode(v)));
let state = (data.seed ?? 1) >>> 0;
const rand = (): number => {
  state = (state * 1103515245 + 12345) >>> 0;
  return state / 2 ** 32;
};
/** transactionSync that counts an ECONFLICT instead of throwing it. */
function tryTxn(fn: Parameters<typeof db.transactionSync>[0]): boolean {
  try {
    db.transactionSync(fn);
    return true;
  } catch (e) {
    if ((e as { code?: string }).code !== 'ECONFLICT') throw e;
    result.conflicts++;
    return false;
  }
}

function valueOf(n: number): Uint8Array {
  const v = new Uint8Array(8);
  const dv = new DataView(v.buffer);
  dv.setUint32(0, n, true);
  dv.setUint32(4, (n ^ 0x5a5a5a5a) >>> 0, true);
  return v;
}

/** The version a value holds, or -1 for absent; a torn value counts and reads as -2. */
function versionOf(v: Uint8Array | undefined): number {
  if (v === undefined) return -1;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const n = dv.getUint32(0, true);
  if (v.byteLength !== 8 || dv.getUint32(4, true) !== (n ^ 0x5a5a5a5a) >>> 0) {
    result.torn++;
    return -2;
  }
  return n;
}

function note(s: string): void {
  if (result.detail.length < 5) result.detail.push(s);
}

const stopped = (): boolean => Atomics.load(control, 1) !== 0;

Atomics.add(control, 0, 1);
Atomics.notify(control, 0);
for (let seen = Atomics.load(control, 0); seen < data.parties; seen = Atomics.load(control, 0))
  Atomics.wait(control, 0, seen, 10);

if (data.role === 'batch-writer') {
  const names = Array.from({ length: data.keys }, (_, i) => keyName(i));
  for (let n = 1; !stopped(); n++) {
    const value = valueOf(n);
    db.batch(names.map((key) => ({ type: 'put' as const, key, value })));
    result.ops++;
  }
} else if (data.role === 'scanner') {
  while (!stopped()) {
    const seen = new Set<number>();
    let n = 0;
    for (const [, value] of db.range()) {
      seen.add(versionOf(value));
      // A scan that takes a while (every 50 keys, 50 us) spans more of the writer's batches.
      if (++n % 50 === 0) for (const end = performance.now() + 0.05; performance.now() < end;);
    }
    if (seen.size > 1 || (n !== 0 && n !== data.keys)) {
      result.partial++;
      note(`range: ${n} keys, versions ${[...seen].sort((a, b) => a - b).join(',')}`);
    }
    result.ops++;
  }
} else if (data.role === 'snapshotter') {
  let seed = 12345;
  const names = Array.from({ length: data.keys }, (_, i) => keyName(i));
  while (!stopped()) {
    const snap = db.snapshot();
    try {
      const seen = new Set<number>();
      for (let i = 0; i < 20; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const key = names[seed % names.length];
        seen.add(versionOf(snap.get(key)));
        seen.add(versionOf(snap.getView(key)));
      }
      for (const [, value] of snap.range()) seen.add(versionOf(value));
      if (seen.size > 1) {
        result.partial++;
        note(`snapshot ${snap.sequence}: versions ${[...seen].sort((a, b) => a - b).join(',')}`);
      }
    } finally {
      snap.close();
    }
    result.ops++;
  }
} else if (data.role === 'transfer') {
  while (!stopped()) {
    const a = Math.floor(rand() * data.keys);
    const b = (a + 1 + Math.floor(rand() * (data.keys - 1))) % data.keys;
    const amount = 1 + Math.floor(rand() * 20);
    const audit = result.ops % 8 === 0;
    const committed = tryTxn((txn) => {
      const from = num(txn.get(account(a)));
      if (from < amount) return;
      txn.put(account(a), String(from - amount));
      txn.put(account(b), String(num(txn.get(account(b))) + amount));
      if (audit) {
        let sum = 0;
        for (const [, v] of txn.range({ prefix: 'acct' })) sum += num(v);
        if (sum !== data.total) {
          result.partial++;
          note(`inside a transaction: sum ${sum}`);
        }
      }
    });
    if (committed) result.ops++;
  }
} else if (data.role === 'auditor') {
  while (!stopped()) {
    const snap = db.snapshot();
    try {
      let viaRange = 0;
      for (const [, v] of snap.range({ prefix: 'acct' })) viaRange += num(v);
      let viaGet = 0;
      for (let i = 0; i < data.keys; i++) viaGet += num(snap.get(account(i)));
      if (viaRange !== data.total || viaGet !== data.total) {
        result.partial++;
        note(`snapshot ${snap.sequence}: range sum ${viaRange}, get sum ${viaGet}`);
      }
    } finally {
      snap.close();
    }
    let scan = 0;
    for (const [, v] of db.range({ prefix: 'acct' })) scan += num(v);
    if (scan !== data.total) {
      result.partial++;
      note(`db.range(): sum ${scan}`);
    }
    const inTxn = db.transactionSync((txn) => {
      let sum = 0;
      for (let i = 0; i < data.keys; i++) sum += num(txn.get(account(i)));
      return sum;
    });
    if (inTxn !== data.total) {
      result.partial++;
      note(`read-only transaction: sum ${inTxn}`);
    }
    result.ops++;
  }
} else if (data.role === 'counter') {
  while (!stopped()) {
    const committed = tryTxn((txn) => {
      txn.put('counter', String(num(txn.get('counter')) + 1));
    });
    if (committed) result.ops++;
  }
} else if (data.role === 'cas-counter') {
  while (!stopped()) {
    const entry = db.getEntry('counter');
    const next = String(num(entry?.value) + 1);
    if (db.put('counter', next, { ifVersion: entry === undefined ? null : entry.version })) result.ops++;
    else result.conflicts++;
  }
} else {
  const first = keyName(0);
  const last = keyName(data.keys - 1);
  while (!stopped()) {
    for (let i = 0; i < 100; i++) {
      const a = versionOf(db.get(first));
      const b = versionOf(db.get(last));
      if (b < a) {
        result.partial++;
        note(`get: ${first} at ${a}, then ${last} at ${b}`);
      }
      const [c, d] = db.read(() => [versionOf(db.getView(first)), versionOf(db.getView(last))]);
      if (d < c) {
        result.partial++;
        note(`getView: ${first} at ${c}, then ${last} at ${d}`);
      }
      result.ops += 2;
    }
  }
}
db.close();
parentPort!.postMessage(result);
