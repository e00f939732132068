/**
 * `daxstore/testing`: a simulated persistent-memory device for crash-testing code built on
 * daxstore. `SimMedia` keeps a durable image beside the working one (flush marks lines, drain
 * makes them durable); `crashImage()` gives the durable image plus any subset of the 8-byte
 * words not yet durable, which is what a power failure may leave.
 */
export { createSimMedia, attachSimMedia, SimMedia, type CrashSelection } from '../device/sim-media.js';
export type { Media, MediaInfo, MediaHandle } from '../device/media.js';
