/**
 * What every subcommand shares: the exit codes, the usage error, and printing a result
 * either as text or as one JSON document (--json).
 */
export const EXIT_OK = 0;
/** the command ran and found problems (check) or violations (crash) */
export const EXIT_PROBLEMS = 1;
export const EXIT_USAGE = 2;
/** an I/O or store error (a DaxError) stopped the command */
export const EXIT_STORE = 3;
/** a bug in daxstore (assertion): printed with its stack */
export const EXIT_INTERNAL = 4;

/** A mistake in the command line that commander cannot see (a bad number, a missing file name). */
export class UsageError extends Error {
  readonly code = 'EUSAGE';
}

/** Prints `data` as JSON when asked, else the text `render` makes. */
export function emit(json: boolean, data: unknown, render: () => string): void {
  if (json) process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  else process.stdout.write(`${render()}\n`);
}

/** A fixed-width table: first row is the header. */
export function table(rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  // Numbers right-aligned, text left-aligned; the header follows its column.
  const numeric = cells[0].map((_, i) => rows.slice(1).every((r) => typeof r[i] === 'number'));
  return cells
    .map((r) =>
      r
        .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(bytes % 2 ** 20 === 0 ? 0 : 2)} MiB`;
}

/** Bytes as UTF-8 text when printable, else hex (prefixed 'hex:' so it round-trips to --prefix). */
export function showBytes(bytes: Uint8Array, max = 64): string {
  const text = Buffer.from(bytes).toString('utf8');
  const printable = /^[\x20-\x7e]*$/.test(text);
  const shown = printable ? text : `hex:${Buffer.from(bytes).toString('hex')}`;
  return shown.length > max ? `${shown.slice(0, max)}… (${bytes.length} B)` : shown;
}

/** Parses a key given on the command line: 'hex:0a0b' or UTF-8 text. */
export function parseKeyArg(text: string): Uint8Array {
  if (!text.startsWith('hex:')) return new TextEncoder().encode(text);
  const hex = text.slice(4);
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new UsageError(`'${text}' is not valid hex (hex:<pairs of hex digits>)`);
  return new Uint8Array(Buffer.from(hex, 'hex'));
}
