/**
 * SegmentTable: what the store knows, without reading the log, about each 2 MiB extent that
 * is a key-value segment: how much of it is written and how much of that is still live. It
 * is how reclamation picks its segments (the emptiest first) and decides whether compacting
 * is worth it, in O(extents) instead of a scan of every record and a lookup per entry.
 *
 * Shared state (one SharedArrayBuffer, carried by the store's handle), Int32 per extent e
 * (extent e = device blocks [512 e, 512 e + 512)):
 *   STATE  0: not a segment (free, or another owner's); 1: a key-value segment
 *   USED   bytes its writer appended (records and their padding), stored when the writer
 *          leaves it; 0 while a writer appends (the writer's progress line has it then)
 *   BORN   bytes of entries published into it (entryBytes + one record header each: what a
 *          copy of the entry costs), stored when the writer leaves it
 *   DIED   bytes of its entries superseded or deleted since (Atomics.add, any thread)
 *   DELS   bytes of its DEL entries (tombstones), stored when the writer leaves it
 *   GUESS  1 while BORN, DIED and DELS are recovery's estimate, 0 once they are counted
 *          (a writer opened the extent, or measuredAs replaced the estimate)
 * and after the extents' words: CHANGES (bumped whenever a segment opens, closes, is freed or
 * measured) and GUESSES (extents whose GUESS is 1).
 * Then the dead marks, one bit per 16 bytes of the first markedExtents extents (MARK_WORDS
 * Int32 per extent; bit g & 31 of word g >>> 5 covers segment bytes [16 g, 16 g + 16)): set,
 * the entry starting in that granule is dead for good (the index left it for a newer entry or
 * a compaction copy); clear, nothing is known. No two entries start in one granule (an entry
 * is at least ENTRY_HEADER_BYTES, 24). Compaction looks up in the index only the PUT entries
 * not marked (compaction.ts measure), instead of every one.
 * Live bytes of a closed segment = BORN - DIED; of an open one, the writer's progress-line
 * BORN - DIED. Tombstones are never born; compaction may have to copy them (compaction.ts,
 * the tombstone rule), so what moving a segment may take is at most live + DELS.
 *
 * Invariants
 *   - The counts are heuristic only: compaction decides what to move by the index (a lookup
 *     per entry not marked dead, and a re-check under the entry lock), never by these
 *     numbers; a wrong count changes which segment goes first, never what is kept. Recovered
 *     segments start with an estimate (recovery.ts: winners found in the segment times the
 *     segment's mean entry size).
 *   - STATE goes 0 -> 1 when a writer takes a new segment (before it announces it) or when
 *     recovery finds one; 1 -> 0 when compaction unpublishes it. An extent's counters are
 *     reset when it becomes a segment again.
 *   - Dead marks are exact where set: a mark is set only after the index stopped pointing at
 *     its entry (a key's index entry never moves back to an entry it left), and an extent's
 *     marks are cleared when it becomes a segment, before its writer writes an entry there
 *     (the segments recovery finds need none: its table is fresh, every mark clear). A
 *     mark never lands in a later life of its extent: a transaction's commit or a put sets it
 *     with an epoch pin taken before its index store left the entry (markDeadPinned), and a
 *     segment compaction unpublishes is freed through the epoch, after that pin (compaction
 *     sets its own marks before it retires the segment). A missing mark only costs a lookup:
 *     batches and deletes set none, puts only once their handle has compacted.
 *
 * Concurrency: STATE, USED and BORN are written by the segment's writer (or compaction under
 * its mutex); DIED by any thread with Atomics.add. Readers take plain loads: a stale number
 * only makes a worse choice. Dead marks are set with a plain read-modify-write: two threads
 * marking one word at once may lose one mark (a lookup more), never set one; a word covers
 * 512 bytes of one segment, so no clear of another life of it can interleave.
 *
 * Persistence ordering: none (volatile; rebuilt at open).
 */
import { HUGE_BLOCKS } from '../device/layout.js';
import { RECORD_HEADER_BYTES, SEGMENT_BYTES, entryBytes } from './layout.js';
import { isBroken } from '../test-break.js';
import { assert } from '../assert.js';

const STATE = 0;
const USED = 1;
const BORN = 2;
const DIED = 3;
const DELS = 4;
const GUESS = 5;
const WORDS = 6;
const SEGMENT = 1;

/** log2 of the bytes one dead mark covers: 16, less than the smallest entry (ENTRY_HEADER_BYTES, 24). */
const MARK_GRANULE_SHIFT = 4;
/** Int32 words of dead marks per extent: a bit per 16 bytes of its 2 MiB (16 KiB). */
const MARK_WORDS = SEGMENT_BYTES >>> (MARK_GRANULE_SHIFT + 5);
/**
 * Extents with dead marks: the first ones of the store's capacity, up to 8 GiB of log (a 64
 * MiB bitmap, untouched pages of which cost no memory); entries beyond are looked up.
 */
const MARKED_EXTENTS_MAX = 4096;

/** Bytes an entry stands for in BORN and DIED: its own and a record header (a copy's cost). */
export function entryCost(keyLength: number, valueLength: number): number {
  return entryBytes(keyLength, valueLength) + RECORD_HEADER_BYTES;
}

/**
 * The 16-bit note the index keeps beside an entry's offset (entry-lock.ts replace/valueNote):
 * bits 0-14 its cost (entryCost) in 8-byte units, bit 15 set when it has flags (a large value),
 * so that superseding it needs no read of its header. 0 (no note) when the cost does not fit.
 */
export function entryNote(cost: number, flags: number): number {
  const units = cost / 8;
  return units <= 0x7fff && units === Math.floor(units) ? (flags !== 0 ? 0x8000 : 0) | units : 0;
}

/** The cost an entry's note holds (entryNote). */
export function noteCost(note: number): number {
  return (note & 0x7fff) * 8;
}

/** Whether an entry's note says it has flags (entryNote). */
export function noteFlagged(note: number): boolean {
  return (note & 0x8000) !== 0;
}

export interface SegmentInfo {
  extent: number;
  /** BORN - DIED, at least 0 */
  liveBytes: number;
  /** liveBytes + DELS: the most moving it may copy */
  moveBytes: number;
  /** SEGMENT_BYTES - liveBytes: what compacting it gives back, less its copies */
  reclaimableBytes: number;
}

export class SegmentTable {
  readonly state: SharedArrayBuffer;
  private readonly words: Int32Array;
  readonly extents: number;

  /** The dead marks (header: after the extents' words), of the first markedExtents extents. */
  private readonly marks: Int32Array;
  private readonly markedExtents: number;

  constructor(
    readonly dataOffset: number,
    dataBlocks: number,
    state?: SharedArrayBuffer,
  ) {
    this.extents = Math.floor(dataBlocks / HUGE_BLOCKS);
    this.markedExtents = Math.min(this.extents, MARKED_EXTENTS_MAX);
    const words = this.extents * WORDS + 2;
    this.state = state ?? new SharedArrayBuffer((words + this.markedExtents * MARK_WORDS) * 4);
    this.words = new Int32Array(this.state, 0, words);
    this.marks = new Int32Array(this.state, words * 4, this.markedExtents * MARK_WORDS);
    this.changesWord = this.extents * WORDS;
    this.guessesWord = this.changesWord + 1;
  }

  /** Word after CHANGES: how many extents hold recovery's estimate (GUESS 1). */
  private readonly guessesWord: number;

  /** Word after the extents: bumped whenever a segment opens, closes or is freed (caches key on it). */
  private readonly changesWord: number;

  /** A counter that moves whenever the set of segments or which are closed changes. */
  get changes(): number {
    return Atomics.load(this.words, this.changesWord);
  }

  /** Extent of a device byte offset inside the data area. */
  extentOf(offset: number): number {
    return ((offset - this.dataOffset) / SEGMENT_BYTES) | 0;
  }

  /** A writer took extent e as its new segment (or recovery found it): counters from zero. */
  opened(e: number): void {
    const w = e * WORDS;
    this.unguess(e);
    this.clearMarks(e);
    this.words[w + USED] = 0;
    this.words[w + BORN] = 0;
    this.words[w + DELS] = 0;
    Atomics.store(this.words, w + DIED, 0);
    Atomics.store(this.words, w + STATE, SEGMENT);
    Atomics.add(this.words, this.changesWord, 1);
  }

  /** The writer left extent e (it is closed now) having appended `used` bytes, published `born` and written `dels` of tombstones. */
  left(e: number, used: number, born: number, dels: number): void {
    const w = e * WORDS;
    this.words[w + USED] = used;
    this.words[w + BORN] = born;
    this.words[w + DELS] = dels;
    Atomics.add(this.words, this.changesWord, 1);
  }

  /** Compaction unpublished extent e: no longer a segment. */
  freed(e: number): void {
    Atomics.store(this.words, e * WORDS + STATE, 0);
    Atomics.add(this.words, this.changesWord, 1);
  }

  /** `bytes` of an entry at device offset `at` are dead now (superseded or deleted). Any thread. */
  died(at: number, bytes: number): void {
    Atomics.add(this.words, this.extentOf(at) * WORDS + DIED, bytes);
  }

  /**
   * The entry at device offset `at` is dead for good: the index left it (for a newer entry or a
   * compaction copy). The caller has held an epoch pin since before the index store that left
   * it, or is the compaction that will retire its segment (header: Invariants).
   */
  markDeadPinned(at: number): void {
    const rel = at - this.dataOffset;
    const e = (rel / SEGMENT_BYTES) | 0;
    if (e >= this.markedExtents) return;
    const g = (rel - e * SEGMENT_BYTES) >>> MARK_GRANULE_SHIFT;
    const w = e * MARK_WORDS + (g >>> 5);
    this.marks[w] |= 1 << (g & 31);
  }

  /** The word of dead marks that holds the entry at device offset `at`'s (0 beyond the marked extents): a load that brings its cache line in. */
  markWord(at: number): number {
    const rel = at - this.dataOffset;
    const e = (rel / SEGMENT_BYTES) | 0;
    if (e >= this.markedExtents) return 0;
    return this.marks[e * MARK_WORDS + ((rel - e * SEGMENT_BYTES) >>> (MARK_GRANULE_SHIFT + 5))];
  }

  /** Whether the entry at device offset `at` is marked dead (markDeadPinned); false says nothing. */
  markedDead(at: number): boolean {
    const rel = at - this.dataOffset;
    const e = (rel / SEGMENT_BYTES) | 0;
    if (e >= this.markedExtents) return false;
    const g = (rel - e * SEGMENT_BYTES) >>> MARK_GRANULE_SHIFT;
    return (this.marks[e * MARK_WORDS + (g >>> 5)] & (1 << (g & 31))) !== 0;
  }

  /** Clears the dead marks of extent e: those of an earlier life go before any entry of this one is written. */
  private clearMarks(e: number): void {
    if (isBroken('kv-dead-marks-kept')) return; // sabotaged: marks of entries freed with an earlier life stay
    if (e < this.markedExtents) this.marks.fill(0, e * MARK_WORDS, (e + 1) * MARK_WORDS);
  }

  /**
   * Recovery's estimate for a segment it found, in a table no writer has used: every change so
   * far is an earlier recovered() (one open and one close each), so no extent has been a
   * segment before and no dead mark is set. The marks are fresh memory, all clear, and are not
   * cleared again: writing them would fault in 16 KiB of the bitmap per segment for nothing.
   */
  recovered(e: number, used: number, liveBytes: number): void {
    assert(
      this.changes === 2 * this.guesses && !this.isSegment(e),
      () => `recovered(${e}): the table has been used (${this.changes} changes, ${this.guesses} recovered)`,
    );
    const w = e * WORDS;
    Atomics.store(this.words, w + STATE, SEGMENT);
    Atomics.add(this.words, this.changesWord, 1);
    this.left(e, used, liveBytes, 0);
    this.words[e * WORDS + GUESS] = 1;
    Atomics.add(this.words, this.guessesWord, 1);
  }

  /** Extents whose numbers are still recovery's estimate. */
  get guesses(): number {
    return Atomics.load(this.words, this.guessesWord);
  }

  /** Closed segments (not in `open`) whose numbers are still recovery's estimate. */
  guessed(open: ReadonlySet<number>): number[] {
    const out: number[] = [];
    for (let e = 0; e < this.extents; e++)
      if (this.isSegment(e) && !open.has(e) && this.words[e * WORDS + GUESS] === 1) out.push(e);
    return out;
  }

  /**
   * A closed segment's live bytes and tombstone bytes, counted by a read of it (compaction.ts
   * measureSegment), in place of recovery's estimate. A death counted meanwhile may be lost:
   * the live figure then errs high (the safe side).
   */
  measuredAs(e: number, liveBytes: number, delBytes: number): void {
    const w = e * WORDS;
    this.words[w + BORN] = liveBytes;
    this.words[w + DELS] = delBytes;
    Atomics.store(this.words, w + DIED, 0);
    this.unguess(e);
    Atomics.add(this.words, this.changesWord, 1);
  }

  private unguess(e: number): void {
    const w = e * WORDS;
    if (this.words[w + GUESS] === 0) return;
    this.words[w + GUESS] = 0;
    Atomics.sub(this.words, this.guessesWord, 1);
  }

  isSegment(e: number): boolean {
    return this.words[e * WORDS + STATE] === SEGMENT;
  }

  /** BORN - DIED of extent e, given BORN (an open segment's is in its writer's progress line). */
  liveBytes(e: number, born = this.words[e * WORDS + BORN]): number {
    return Math.max(0, born - this.words[e * WORDS + DIED]);
  }

  usedBytes(e: number): number {
    return this.words[e * WORDS + USED];
  }

  /** DIED summed over every segment: grows with every overwrite and delete (a clock for reclamation's retries). */
  diedBytes(): number {
    let n = 0;
    for (let e = 0; e < this.extents; e++) if (this.isSegment(e)) n += this.words[e * WORDS + DIED];
    return n;
  }

  /**
   * Live and dead bytes of the whole log: live = BORN - DIED per segment (an open one's BORN
   * from `openBorn`, its writer's progress line); dead = DIED plus tombstones, or USED less
   * the live bytes when that is more (recovered segments).
   */
  totals(openBorn: ReadonlyMap<number, number>): { liveBytes: number; deadBytes: number } {
    let liveBytes = 0;
    let deadBytes = 0;
    for (let e = 0; e < this.extents; e++) {
      if (!this.isSegment(e)) continue;
      const w = e * WORDS;
      const open = openBorn.get(e);
      const live = this.liveBytes(e, open ?? this.words[w + BORN]);
      liveBytes += live;
      // USED less the live bytes also counts what recovery found dead (its estimate sets no
      // DIED) and record overhead: the larger of the two. (USED is 0 in a segment a writer
      // opened, recovery's figure in one a writer adopted.)
      const died = this.words[w + DIED] + this.words[w + DELS];
      deadBytes += Math.max(died, this.words[w + USED] - live);
    }
    return { liveBytes, deadBytes };
  }

  /** Segments not in `open` (extents some writer appends to), emptiest first. */
  closedSegments(open: ReadonlySet<number>): SegmentInfo[] {
    const out: SegmentInfo[] = [];
    for (let e = 0; e < this.extents; e++) {
      if (!this.isSegment(e) || open.has(e)) continue;
      const liveBytes = this.liveBytes(e);
      const moveBytes = Math.min(SEGMENT_BYTES, liveBytes + this.words[e * WORDS + DELS]);
      out.push({ extent: e, liveBytes, moveBytes, reclaimableBytes: SEGMENT_BYTES - liveBytes });
    }
    return out.sort((a, b) => a.moveBytes - b.moveBytes);
  }
}
