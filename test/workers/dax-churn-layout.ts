/** Control-word layout and fill bytes shared by test/workers/dax-churn.ts and the tests that start it. */
export const STOP = 0;
export const READY = 1;
/** r5 stamps[page] / mf lastWrite[page] start here; mf poisoned[page] follows them. */
export const ROLE_BASE = 2;

/** Int32 words a control buffer needs for `pages` pages. */
export function controlWords(pages: number): number {
  return ROLE_BASE + 2 * pages;
}

/** The fill byte of page p in round r (1..15): its low nibble names the page, so bytes of another page show. */
export function fillByte(p: number, r: number): number {
  return ((r & 0xf) << 4) | (p & 0xf);
}
