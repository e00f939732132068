/**
 * attachMedia: rebuild a Media from a share() handle inside a worker thread, over the
 * same memory (no copy, no new mapping).
 */
import { DaxError } from '../errors.js';
import type { Media, MediaHandle } from './media.js';
import { attachMappedMedia } from './region.js';
import { attachSimMedia } from './sim-media.js';

export function attachMedia(handle: MediaHandle): Media {
  switch (handle.type) {
    case 'mapped':
      return attachMappedMedia(handle);
    case 'sim':
      return attachSimMedia(handle);
    default:
      throw new DaxError('EINVAL', `attachMedia: unknown handle type ${String((handle as { type?: unknown }).type)}`);
  }
}
