/**
 * Views of the media for the key-value layer, by window: a typed array ends at 2^32 elements
 * (V8 11), so a media past 4 GiB is seen through several windows, each a set of views over
 * 4 GiB of the one SharedArrayBuffer (never a second wrapping of the mapping).
 *
 * Invariants
 *   - Window k holds device bytes [k * WINDOW_BYTES, (k + 1) * WINDOW_BYTES) of the buffer; it
 *     is made once, when first asked for, and never changes.
 *   - Every user takes device offsets and indexes by offset - base of the window at(offset)
 *     returns. A log segment, a page and a 2 MiB extent never straddle a window (windows are
 *     4 GiB aligned, they are 2 MiB aligned), so one window serves everything inside one.
 *
 * Concurrency: views are per thread (each thread makes its own over the shared buffer).
 */
import { assert } from '../assert.js';
import { isBroken } from '../test-break.js';

/** Bytes per window: the longest Uint8Array V8 11 makes (2^32 elements). */
export const WINDOW_BYTES = 2 ** 32;

/**
 * Views over one window of the media: device bytes [base, end). A function handed one takes
 * device offsets and starts with `v = v.at(offset)` (the window holding it: below 4 GiB this
 * one, after one comparison), then indexes by offset - v.base.
 */
export class MediaViews {
  constructor(
    /** device offset of u8[0] (a multiple of WINDOW_BYTES) */
    readonly base: number,
    /** device offset after the window's last byte */
    readonly end: number,
    readonly u8: Uint8Array,
    readonly u32: Uint32Array,
    readonly u64: BigUint64Array,
    readonly buf: Buffer,
    /**
     * the whole media's buffer (u8.buffer, kept here: the getter is a builtin call of about 13 ns,
     * and a view made per get, over the media or of a copy, would pay it each time)
     */
    readonly buffer: ArrayBufferLike,
    /** every window of the buffer, made when first asked for (undefined: this is the only one) */
    private readonly windows: Array<MediaViews | undefined> | undefined,
  ) {}

  /** The window holding device offset `offset`. */
  at(offset: number): MediaViews {
    return offset >= this.base && offset < this.end ? this : this.other(offset);
  }

  private other(offset: number): MediaViews {
    if (isBroken('kv-no-window')) return this;
    const k = Math.floor(offset / WINDOW_BYTES);
    const all = this.windows;
    const buffer = all?.[0]?.u8.buffer;
    assert(
      buffer !== undefined && k >= 0 && k * WINDOW_BYTES < buffer.byteLength,
      () => `offset ${offset} outside the media`,
    );
    return (all![k] ??= windowOf(buffer, k * WINDOW_BYTES, all));
  }
}

function windowOf(
  buffer: ArrayBufferLike,
  base: number,
  windows: Array<MediaViews | undefined> | undefined,
): MediaViews {
  const length = Math.min(WINDOW_BYTES, buffer.byteLength - base);
  return new MediaViews(
    base,
    base + length,
    new Uint8Array(buffer, base, length),
    new Uint32Array(buffer, base, Math.floor(length / 4)),
    new BigUint64Array(buffer, base, Math.floor(length / 8)),
    Buffer.from(buffer, base, length),
    buffer,
    windows,
  );
}

/** The first window of a media buffer (the others are reached through its at()). */
export function mediaViews(buffer: ArrayBufferLike): MediaViews {
  const windows: Array<MediaViews | undefined> = [];
  windows[0] = windowOf(buffer, 0, windows);
  return windows[0];
}
