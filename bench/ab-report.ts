/**
 * What the A/B scripts of bench/ share: the median of a row's samples, the load average as
 * printed beside a figure, and the per-row report of two builds' runs (ab.ts, txn-ab.ts).
 */
import { loadavg } from 'node:os';

/** The median of `xs` (the mean of the middle two for an even count); `xs` is not changed. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The 1-, 5- and 15-minute load averages, as quoted beside a figure. */
export function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

/**
 * Per row named in any run: the median of build A's runs and of B's, B / A, and every run's
 * value. `nameWidth`, `valueWidth` and `unit` lay the columns out (unit: 'x' for ratios).
 */
export function printMedians(
  results: Record<'a' | 'b', ReadonlyArray<ReadonlyMap<string, number>>>,
  layout: { nameWidth: number; valueWidth: number; unit: string },
): void {
  const names = new Set<string>();
  for (const m of [...results.a, ...results.b]) for (const k of m.keys()) names.add(k);
  for (const name of names) {
    const a = results.a.map((m) => m.get(name)).filter((x): x is number => x !== undefined);
    const b = results.b.map((m) => m.get(name)).filter((x): x is number => x !== undefined);
    if (a.length === 0 || b.length === 0) continue;
    const ma = median(a);
    const mb = median(b);
    const { nameWidth, valueWidth, unit } = layout;
    console.log(
      `${name.padEnd(nameWidth)} A ${ma.toFixed(2).padStart(valueWidth)}${unit}   B ${mb.toFixed(2).padStart(valueWidth)}${unit}   B/A ${(mb / ma).toFixed(3)}   (A ${a.map((x) => x.toFixed(2)).join(' ')} | B ${b.map((x) => x.toFixed(2)).join(' ')})`,
    );
  }
}
