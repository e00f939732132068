/** `daxstore --version` prints the version in package.json (not a copy of it in the code). */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { cli } from './run-cli.js';

it('--version prints the version of package.json, exit 0', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const r = cli(['--version']);
  expect(r.status).toBe(0);
  expect(r.stdout.trim()).toBe(version);
});
