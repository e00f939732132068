/** Shared layout of the R6 epoch stress (writer, readers and the test agree on it). */
export const WORDS = 16; // words per object slot
export const POISON = -0x21524111; // 0xdeadbeef: what the reclaimer writes into a released slot
export const CONTROL = { PTR: 0, STOP: 1, READY: 2, DONE: 3 } as const;
