/**
 * Command-line flags of the bench scripts (`--name value`) and the package root a script runs
 * from, shared so every script reads them alike.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The value after `--name`; `fallback` when the flag is absent; with no fallback the flag is required. */
export function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) throw new Error(`--${name} is required`);
  return fallback;
}

/** Whether the bare flag `--name` is on the command line. */
export function flag(name: string): boolean {
  return process.argv.includes(`--${name}`);
}

/** The root of the package this script was compiled in (dist/bench/x.js is two levels below it). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
