/**
 * Participants: the process's table of threads that take part in stores, and how a thread
 * that has ended is noticed. Every lock word, pin and in-flight record that a thread leaves in
 * shared memory names its participant id, so another thread can tell when its holder is gone
 * and take over (docs/ARCHITECTURE.md "Thread death").
 *
 * The table is ONE block of process memory (addon/participants.h: static, never freed), the
 * same in every thread without being posted: a worker that attaches a store needs no handle for
 * it. A thread claims a slot the first time it needs an id (participantId()), and registers a
 * native environment cleanup hook: when the thread ends — returns, throws, calls process.exit(),
 * is terminated at any instruction — Node tears its environment down after its JavaScript has
 * stopped for good, and the hook turns the slot DEAD and counts the death (HEADER deaths word).
 * Nothing the dead thread wrote changes after that, so a thread that reads DEAD may repair
 * what it left.
 *
 * Slot layout (Int32 words; slot 0 is the header; ids are 1..MAX_PARTICIPANT, which fits the
 * 12-bit owner fields of entry words and lock words):
 *   header  0 MAGIC · 1 HIGH highest id ever claimed · 2 DEATHS deaths noticed (wraps)
 *   P_STATE       FREE 0 · ALIVE 1 · DEAD 2 (written by the native hook, ALIVE -> DEAD only)
 *   P_GEN         generation, bumped at every claim (18 bits: lock words carry it, holderBits)
 *   P_DOMAINS     domains (EpochDomain) that still owe this participant a reap: +1 when it first
 *                 takes part in one (EpochDomain touch), -1 when it leaves it or that domain
 *                 reaped it. A DEAD slot is reused only at 0, so no word that names the id is
 *                 left for a new thread to inherit.
 *   P_THREAD      worker_threads threadId (diagnostics)
 *   P_RECORDS..   per-thread in-flight records of the layers above (their own constants, below):
 *                 written only by the owner with plain stores, read only after it died. A thread
 *                 is in at most one such step at a time (every operation is synchronous), so one
 *                 record per kind is enough. Features that need "released when the holding
 *                 thread dies" add their words here and a reaper (EpochDomain.onDeath).
 *
 * Concurrency
 *   - Claim: compareExchange FREE -> ALIVE (or DEAD -> ALIVE when P_DOMAINS is 0), then the
 *     generation store, then the hook. A lock word naming (id, older generation) reads as dead.
 *   - The hook's compareExchange ALIVE -> DEAD is sequentially consistent (addon): every store
 *     the dead thread made is visible to a thread that loads DEAD.
 *   - The owner writes its records with plain stores; they are read only after DEAD.
 *
 * Persistence ordering: none (process memory).
 */
import { DaxError } from '../errors.js';
import { native } from '../native/addon.js';
import { threadId as workerThreadId } from 'node:worker_threads';
import { isBroken } from '../test-break.js';

export const MAX_PARTICIPANT = 4095;
export const SLOT_WORDS = 32;
const H_MAGIC = 0;
const H_HIGH = 1;
const H_DEATHS = 2;
const MAGIC = 0x50415254; // 'PART'

export const P_STATE = 0;
export const P_GEN = 1;
export const P_DOMAINS = 2;
export const P_THREAD = 3;
export const STATE_FREE = 0;
export const STATE_ALIVE = 1;
export const STATE_DEAD = 2;

/**
 * Per-thread records (word offsets inside a slot). Each layer's file says how it uses its own.
 *   P_REPLACE_*   index/entry-lock.ts replace(): the leaf whose value words are being rewritten
 *                 (tree token, leaf, new value low/high), so a seqlock left odd is finished.
 *   P_BATON_*     index/entry-lock.ts: the wait key (+ table token) of a wake-up baton held.
 *   P_ALLOC_*     device/allocator.ts: a block being allocated or freed (device token, block + 1, phase).
 *   P_STAGE_*     dax/fault.ts: a zeroed staging block not yet published (device token, block + 1,
 *                 object id low/high, page index, order).
 *   P_SHARED_*    dax/invalidate-lock.ts: invalidate locks held shared (table token, word index, count) x 2.
 *   P_RELEASE_*   index/epoch.ts releaseRecorded: a limbo record popped and not yet released (kind + 1,
 *                 payload, domain); device/allocator.ts free() clears it when its own record takes over.
 *   P_KV_*        kv/store.ts: the writer slot of the store handle the thread is writing through.
 */
export const P_REPLACE_TREE = 4;
export const P_REPLACE_LEAF = 5;
export const P_REPLACE_LO = 6;
export const P_REPLACE_HI = 7;
export const P_BATON_TABLE = 8;
export const P_BATON_KEY_LO = 9;
export const P_BATON_KEY_HI = 10; // -1: no baton
export const P_ALLOC_DEVICE = 12;
export const P_ALLOC_BLOCK = 13;
export const P_ALLOC_PHASE = 14;
export const P_STAGE_DEVICE = 16;
export const P_STAGE_BLOCK = 17;
export const P_STAGE_OBJECT_LO = 18;
export const P_STAGE_OBJECT_HI = 19;
export const P_STAGE_INDEX = 20;
export const P_STAGE_ORDER = 21;
export const P_SHARED_LOCKS = 24; // 2 x [token, index, count]
export const P_RELEASE_KIND = 22; // kind + 1 of a limbo record popped and not yet released (0: none)
export const P_RELEASE_LO = 23;
export const P_RELEASE_HI = 30;
export const P_RELEASE_DOMAIN = 31; // the epoch domain's id (low word)
export const SHARED_LOCK_RECORDS = 2;
const RECORDS_FIRST = 4;

/** Lock-word layout shared by every holder-naming lock (spin-lock.ts, tree-lock.ts): bits 0-1 state, 2-13 id, 14-31 generation. */
export const HOLDER_ID_SHIFT = 2;
export const HOLDER_GEN_SHIFT = 14;
const GEN_MASK = 0x3ffff;

let table: Int32Array | undefined;
let myId = 0;
let myGen = 0;
/** id << 2 | gen << 14 once claimed: what this thread's lock words carry (0 until claimed). */
let myHolderBits = 0;

/** The process's participant table (Int32 view). */
export function participantTable(): Int32Array {
  if (table === undefined) {
    const t = new Int32Array(native().participantTable());
    if (Atomics.load(t, H_MAGIC) !== MAGIC) Atomics.compareExchange(t, H_MAGIC, 0, MAGIC);
    table = t;
  }
  return table;
}

/** This thread's participant id (1..MAX_PARTICIPANT), claimed on first use. */
export function participantId(): number {
  if (myId === 0) claim();
  return myId;
}

/** This thread's generation (the low 18 bits that lock words carry). */
export function participantGeneration(): number {
  if (myId === 0) claim();
  return myGen;
}

/** What this thread's holder-naming lock words carry besides their state bits (never 0). */
export function holderBits(): number {
  if (myHolderBits === 0) claim();
  return myHolderBits;
}

export function slotBase(id: number): number {
  return id * SLOT_WORDS;
}

/**
 * DAXSTORE_TEST_BREAK=death-unnoticed: no thread is ever seen as dead, so nothing a dead
 * thread held is recovered (the thread-death tests must go red).
 */
function deathUnnoticed(): boolean {
  return isBroken('death-unnoticed');
}

/** True unless participant `id` is a live thread (a FREE slot names nobody alive either). */
export function isParticipantDead(id: number): boolean {
  if (id === 0 || deathUnnoticed()) return false;
  return Atomics.load(participantTable(), slotBase(id) + P_STATE) !== STATE_ALIVE;
}

/** The generation participant `id` carries now (meaningful while it is alive). */
export function generationOf(id: number): number {
  return Atomics.load(participantTable(), slotBase(id) + P_GEN);
}

/** True when the holder named by a lock word (holderBits layout) is not the live thread it was. */
export function holderWordDead(word: number): boolean {
  const id = (word >>> HOLDER_ID_SHIFT) & MAX_PARTICIPANT;
  if (id === 0 || deathUnnoticed()) return false; // anonymous: cannot be judged
  const t = participantTable();
  const base = slotBase(id);
  return (
    Atomics.load(t, base + P_STATE) !== STATE_ALIVE ||
    (Atomics.load(t, base + P_GEN) & GEN_MASK) !== word >>> HOLDER_GEN_SHIFT
  );
}

/** The participant id a lock word (holderBits layout) names. */
export function holderIdOf(word: number): number {
  return (word >>> HOLDER_ID_SHIFT) & MAX_PARTICIPANT;
}

/** Word of participantTable() that counts deaths (a plain load of it is the cheapest "did anyone die since" check). */
export const DEATHS_WORD = H_DEATHS;

/** Deaths noticed in this process so far (wraps): a cheap "did anyone die since" check. */
export function deathCount(): number {
  return Atomics.load(participantTable(), H_DEATHS);
}

/** The highest id ever claimed (scans stop there). */
export function highestParticipant(): number {
  return Atomics.load(participantTable(), H_HIGH);
}

/** This thread's own slot words (its in-flight records): plain stores only by this thread. */
export function mySlotBase(): number {
  if (myId === 0) claim();
  return myId * SLOT_WORDS;
}

/**
 * A domain that participant `id` took part in no longer owes it a reap (it was reaped there,
 * or it left): one less, and a DEAD slot owed by none becomes FREE.
 */
export function releaseDomain(id: number): void {
  const t = participantTable();
  const base = slotBase(id);
  const left = Atomics.sub(t, base + P_DOMAINS, 1) - 1;
  if (left < 0) throw new Error(`participant ${id}: domain count below zero`);
  if (left === 0) Atomics.compareExchange(t, base + P_STATE, STATE_DEAD, STATE_FREE);
}

/** This thread now takes part in one more domain (each owes it a reap when it dies). */
export function enterDomain(): void {
  Atomics.add(participantTable(), mySlotBase() + P_DOMAINS, 1);
}

function claim(): void {
  const t = participantTable();
  for (let id = 1; id <= MAX_PARTICIPANT; id++) {
    const base = slotBase(id);
    const state = Atomics.load(t, base + P_STATE);
    if (state === STATE_FREE) {
      if (Atomics.compareExchange(t, base + P_STATE, STATE_FREE, STATE_ALIVE) !== STATE_FREE) continue;
    } else if (state === STATE_DEAD && Atomics.load(t, base + P_DOMAINS) === 0) {
      if (Atomics.compareExchange(t, base + P_STATE, STATE_DEAD, STATE_ALIVE) !== STATE_DEAD) continue;
    } else continue;
    const gen = (Atomics.load(t, base + P_GEN) + 1) & GEN_MASK || 1;
    Atomics.store(t, base + P_GEN, gen);
    Atomics.store(t, base + P_DOMAINS, 0);
    Atomics.store(t, base + P_THREAD, workerThreadId);
    for (let w = RECORDS_FIRST; w < SLOT_WORDS; w++) t[base + w] = 0;
    t[base + P_BATON_KEY_HI] = -1;
    let high = Atomics.load(t, H_HIGH);
    while (high < id) {
      const seen = Atomics.compareExchange(t, H_HIGH, high, id);
      if (seen === high) break;
      high = seen;
    }
    const rc = native().watchThreadExit(id, gen);
    if (rc !== 0) {
      Atomics.store(t, base + P_STATE, STATE_FREE);
      throw new DaxError('ESYS', `participant table: cannot watch this thread's exit (${rc})`);
    }
    myId = id;
    myGen = gen;
    myHolderBits = (id << HOLDER_ID_SHIFT) | (gen << HOLDER_GEN_SHIFT);
    return;
  }
  throw new DaxError('EBUSY', `participant table: all ${MAX_PARTICIPANT} participant ids are in use by live threads`);
}

/**
 * Test hook: a participant id that behaves as a thread that has just died (claimed, then
 * marked DEAD as the native hook would), for deterministic recovery tests in one thread.
 */
export function claimDeadParticipantForTest(): { id: number; gen: number; holderBits: number } {
  const t = participantTable();
  for (let id = MAX_PARTICIPANT; id >= 1; id--) {
    const base = slotBase(id);
    if (Atomics.compareExchange(t, base + P_STATE, STATE_FREE, STATE_ALIVE) !== STATE_FREE) continue;
    const gen = (Atomics.load(t, base + P_GEN) + 1) & GEN_MASK || 1;
    Atomics.store(t, base + P_GEN, gen);
    Atomics.store(t, base + P_DOMAINS, 0);
    for (let w = RECORDS_FIRST; w < SLOT_WORDS; w++) t[base + w] = 0;
    t[base + P_BATON_KEY_HI] = -1;
    return { id, gen, holderBits: (id << HOLDER_ID_SHIFT) | (gen << HOLDER_GEN_SHIFT) };
  }
  throw new Error('no free participant slot for the test');
}

/** Test hook: marks a test participant DEAD as the native hook does. */
export function markDeadForTest(id: number): void {
  const t = participantTable();
  if (Atomics.compareExchange(t, slotBase(id) + P_STATE, STATE_ALIVE, STATE_DEAD) === STATE_ALIVE)
    Atomics.add(t, H_DEATHS, 1);
}
