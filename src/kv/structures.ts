/**
 * The msgpack value encoding's shared structures, kept in the store: the key lists of the
 * record shapes msgpackr has made "shared" (lmdb-js's approach), so a stored value names its
 * shape by a one-byte record id instead of repeating its keys, and every reader of the store,
 * in any thread and after any reopen or crash, finds the same key list under that id.
 *
 * Layout: the structures area, root-area bytes [STRUCTURES_AREA_OFFSET, + 2 * STRUCTURES_SLOT_BYTES)
 * (device/layout.ts root area; the kv root, kv-root.ts, is at its start). Two slots of
 * STRUCTURES_SLOT_BYTES, each little-endian:
 *   0   u64  xxh64 of bytes [8, 32 + payload length)
 *   8   u32  magic 0x53564b44 ('DKVS')
 *   12  u32  version 1
 *   16  u32  generation: 1 for the first set saved, + 1 for each later one
 *   20  u32  count: structures in the set (record ids 0x40 .. 0x40 + count - 1)
 *   24  u32  payload length (<= STRUCTURES_PAYLOAD_BYTES)
 *   28  u32  0
 *   32  ...  payload: the set as the UTF-8 of a JSON array of arrays of strings (the keys of
 *            each structure, in record-id order)
 * A slot counts only if its checksum, magic, version and payload agree. The set in force is the
 * valid slot's of the highest generation; none valid and both all zero (never written) is the
 * empty set. Both slots hold the set in force once a save completes (it writes one, then the
 * other), so one slot lost to a torn write or to damage loses nothing; neither slot valid and
 * neither all zero is damage (a crash tears at most one): reads of values that name a structure fail (ECORRUPT) and saves are
 * refused (ECORRUPT), never a new set whose ids would name other key lists than the lost one's.
 * A store whose root area has no room for the area (formatted with a small rootBytes) keeps no
 * structures: its msgpack values are self-contained.
 *
 * Invariants
 *   - The set only grows: a saved set extends the set in force (same structures at the same
 *     ids, then new ones), so a record id, once saved, names one key list forever and a
 *     record is never decoded with a different one.
 *   - A structure is durable before any record that uses it is written: save() persists its
 *     slot before it returns, and msgpackr calls it from inside pack(), before the packed
 *     bytes become a record (whatever the store's durability).
 *   - The payload of a set fits STRUCTURES_PAYLOAD_BYTES: the encoder asks wouldFit() before
 *     it shares a new shape; a shape that does not fit stays an own (in-value) structure.
 *
 * Concurrency: one lock word (a device/spin-lock.ts word in the store's shared buffer, so every
 * handle of every thread takes the same one) serializes load() and save(). save() writes first
 * the slot that is NOT in force, then the other, so a valid slot holds the set in force or its
 * successor at every instant, in memory and on the media. save() fails (false, nothing written) when the set in force is not the one the
 * saver extended (another thread saved first): msgpackr then reloads the set and packs again
 * (its saveStructures conflict protocol). A holder that dies is replaced by the next locker
 * (holder-naming lock word); it can have left only the slot not in force half written, which
 * the next save overwrites whole.
 *
 * Persistence ordering: the slot not in force written and persisted (flush + drain), then the
 * other slot written and persisted, then the lock released; the first record using a new
 * structure is written after that.
 */
import { DaxError } from '../errors.js';
import { xxh64 } from '../device/checksum.js';
import type { Device } from '../device/device.js';
import { lockWord, unlockWord } from '../device/spin-lock.js';
import { isBroken } from '../test-break.js';

/** Where the structures area starts in the root area (after the kv root's page). */
export const STRUCTURES_AREA_OFFSET = 4096;
export const STRUCTURES_SLOT_BYTES = 16 * 1024;
const HEADER_BYTES = 32;
export const STRUCTURES_PAYLOAD_BYTES = STRUCTURES_SLOT_BYTES - HEADER_BYTES;
const MAGIC = 0x53564b44;
const VERSION = 1;

/** The set as read: its structures (fresh arrays) and generation (0: none saved). */
interface SetInForce {
  structures: string[][];
  generation: number;
  /** the slot holding it (-1: none) */
  slot: number;
  /** neither slot valid nor all zero: the set was lost to damage */
  damaged: boolean;
}

/** Per thread: sets saved, and saves refused because another saver was first (tests read them). */
export const structuresStats = { saved: 0, conflicts: 0 };

/** Whether `device`'s root area has room for the structures area. */
export function hasStructuresArea(device: Device): boolean {
  return device.root.length >= STRUCTURES_AREA_OFFSET + 2 * STRUCTURES_SLOT_BYTES;
}

/** The structures area of one store; `lock` is the shared Int32 array and word serializing it (null: no other handle can run, as in `inspect`). */
export class SharedStructures {
  private readonly base: number;

  constructor(
    private readonly device: Device,
    private readonly lock: { words: Int32Array; index: number } | null,
  ) {
    if (!hasStructuresArea(device))
      throw new DaxError('ENOTSUP', `structures: the root area of ${device.media.path} has no room for them`);
    this.base = device.root.offset + STRUCTURES_AREA_OFFSET;
  }

  /** The set in force (fresh arrays: msgpackr annotates them). ECORRUPT when a slot that passes its checksum does not parse. */
  load(): string[][] {
    return this.locked(() => this.readInForce().structures);
  }

  /**
   * Saves `structures` as the set in force when the set in force is still the first
   * `expected` of them; false (nothing written) when another saver got there first.
   */
  save(structures: string[][], expected: number): boolean {
    return this.locked(() => {
      const now = this.readInForce();
      if (now.damaged)
        throw new DaxError(
          'ECORRUPT',
          `structures: both slots of the msgpack structures area of ${this.device.media.path} are damaged; values of shared shapes cannot be read, and no new shape can be saved`,
        );
      let extends_ = now.structures.length === expected && structures.length >= expected;
      for (let i = 0; extends_ && i < expected; i++) extends_ = sameKeys(now.structures[i], structures[i]);
      if (!extends_) {
        structuresStats.conflicts++;
        return false;
      }
      const payload = Buffer.from(JSON.stringify(structures.map((s) => [...s])), 'utf8');
      if (payload.length > STRUCTURES_PAYLOAD_BYTES)
        throw new DaxError(
          'EINVAL',
          `structures: a set of ${structures.length} structures takes ${payload.length} bytes, more than the area's ${STRUCTURES_PAYLOAD_BYTES}`,
        );
      const bytes = new Uint8Array(HEADER_BYTES + payload.length);
      const view = new DataView(bytes.buffer);
      view.setUint32(8, MAGIC, true);
      view.setUint32(12, VERSION, true);
      view.setUint32(16, now.generation + 1, true);
      view.setUint32(20, structures.length, true);
      view.setUint32(24, payload.length, true);
      bytes.set(payload, HEADER_BYTES);
      view.setBigUint64(0, xxh64(bytes.subarray(8)), true);
      const media = this.device.media;
      const first = now.slot === 0 ? 1 : 0;
      for (const slot of [first, 1 - first]) {
        const at = this.base + slot * STRUCTURES_SLOT_BYTES;
        new Uint8Array(media.buffer, at, bytes.length).set(bytes);
        if (!isBroken('kv-structures-unpersisted')) media.persist(at, bytes.length);
      }
      structuresStats.saved++;
      return true;
    });
  }

  private locked<T>(body: () => T): T {
    const lock = this.lock;
    if (lock === null) return body();
    lockWord(lock.words, lock.index);
    try {
      return body();
    } finally {
      unlockWord(lock.words, lock.index);
    }
  }

  private readInForce(): SetInForce {
    let best: SetInForce = { structures: [], generation: 0, slot: -1, damaged: false };
    let invalid = 0;
    for (let slot = 0; slot < 2; slot++) {
      const found = this.readSlot(slot);
      if (found !== undefined && found.generation > best.generation) best = found;
      if (found === undefined && !this.slotZero(slot)) invalid++;
    }
    // A save writes one slot whole and persists it before it touches the other: a crash tears
    // at most one, and the other is valid or (before the first save completed) all zero.
    if (invalid === 2) best.damaged = true;
    return best;
  }

  private slotZero(slot: number): boolean {
    const head = new Uint8Array(this.device.media.buffer, this.base + slot * STRUCTURES_SLOT_BYTES, HEADER_BYTES);
    return head.every((b) => b === 0);
  }

  private readSlot(slot: number): SetInForce | undefined {
    const at = this.base + slot * STRUCTURES_SLOT_BYTES;
    const media = this.device.media;
    const head = new DataView(media.buffer, at, HEADER_BYTES);
    if (head.getUint32(8, true) !== MAGIC) return undefined;
    const length = head.getUint32(24, true);
    if (length > STRUCTURES_PAYLOAD_BYTES) return undefined;
    const bytes = new Uint8Array(media.buffer, at, HEADER_BYTES + length).slice();
    const view = new DataView(bytes.buffer);
    if (view.getBigUint64(0, true) !== xxh64(bytes.subarray(8))) return undefined;
    if (view.getUint32(12, true) !== VERSION) return undefined;
    const count = view.getUint32(20, true);
    let structures: unknown;
    try {
      structures = JSON.parse(Buffer.from(bytes.buffer, HEADER_BYTES, length).toString('utf8'));
    } catch {
      structures = undefined;
    }
    if (
      !Array.isArray(structures) ||
      structures.length !== count ||
      !structures.every((s) => Array.isArray(s) && s.every((k) => typeof k === 'string'))
    )
      throw new DaxError(
        'ECORRUPT',
        `structures: slot ${slot} of ${media.path} passes its checksum but does not hold ${count} key lists`,
      );
    return { structures: structures as string[][], generation: view.getUint32(16, true), slot, damaged: false };
  }
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The payload bytes of `structures` (what save() would write), for wouldFit. */
export function payloadBytes(structures: readonly (readonly string[])[]): number {
  return Buffer.byteLength(JSON.stringify(structures.map((s) => [...s])), 'utf8');
}
