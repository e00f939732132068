/**
 * The one seed helper of every randomized test: the run's seed comes from DAXSTORE_SEED or is
 * fresh, and a failure is rethrown with the seed and the command that replays it. `scaled()`
 * sizes a test for CI by default and lets DAXSTORE_LONG=<factor> run it longer.
 */
import { mulberry32 } from '../../src/device/sim-media.js';

/** The seed of this run: DAXSTORE_SEED when set, else a fresh 32-bit one. */
export function testSeed(): number {
  const env = process.env['DAXSTORE_SEED'];
  return env !== undefined && env !== '' ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** The line a failure prints: the seed and the command that replays it. */
export function replayHint(seed: number, file: string): string {
  return `seed ${seed}; replay: DAXSTORE_SEED=${seed} npx vitest run ${file}`;
}

/** Runs fn(seed); on failure rethrows with the seed and the command that replays it. */
export async function withSeed<T>(file: string, fn: (seed: number) => T | Promise<T>): Promise<T> {
  const seed = testSeed();
  try {
    return await fn(seed);
  } catch (e) {
    const hint = replayHint(seed, file);
    console.error(hint);
    if (e instanceof Error) e.message = `${e.message}\n${hint}`;
    throw e;
  }
}

/** A small deterministic generator (mulberry32): uniform in [0, 1). */
export const rng = mulberry32;

/** `ciCount` times DAXSTORE_LONG (a positive number; default 1), rounded up. */
export function scaled(ciCount: number): number {
  const env = process.env['DAXSTORE_LONG'];
  const factor = env !== undefined && env !== '' ? Number(env) : 1;
  if (!(factor > 0)) throw new Error(`DAXSTORE_LONG=${env} must be a positive number`);
  return Math.ceil(ciCount * factor);
}
