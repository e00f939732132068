/**
 * Child process for the region tests: opens argv[2] as a region (argv[3] = JSON options),
 * optionally copies out from argv[4] = offset, and prints {ok} or {code, message} as JSON.
 */
import { openRegion } from '../../src/device/region.js';
import { isDaxError } from '../../src/errors.js';

const [file, optsJson = '{}', copyOffset] = process.argv.slice(2);
try {
  const media = openRegion(file ?? '', JSON.parse(optsJson) as Parameters<typeof openRegion>[1]);
  if (copyOffset !== undefined) {
    // Truncate the file first (the parent passes a file it will not touch), then copy.
    const { truncateSync } = await import('node:fs');
    truncateSync(file ?? '', 0);
    media.copyOut(Number(copyOffset), 64, new Uint8Array(64));
  }
  media.close();
  process.stdout.write(JSON.stringify({ ok: true, kind: media.kind }));
} catch (e) {
  if (!isDaxError(e)) throw e;
  process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message }));
}
