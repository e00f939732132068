// Writes a CommonJS twin (.d.cts) of every declaration file tsc emitted under dist/src.
//
// The package has one runtime build, ES modules with no top-level await, which CommonJS loads
// with require() (Node >= 20.19). TypeScript types a `require` of an ES module only in
// `--module nodenext` / `node20`; in `node16` / `node18` it refuses it (TS1479). The
// `require` condition of package.json's exports therefore points at these twins: the same
// declarations in CommonJS format, their relative imports renamed .js -> .cjs so that every
// file of the graph is a twin. Types only: no second copy of any code or module state.
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'src');

function* declarations(dir) {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) yield* declarations(p);
    else if (name.endsWith('.d.ts')) yield p;
  }
}

const relative = /((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]*?)\.js(['"])/g;
let n = 0;
for (const file of declarations(root)) {
  const twin = file.slice(0, -'.d.ts'.length) + '.d.cts';
  const text = readFileSync(file, 'utf8').replace(relative, '$1$2.cjs$3');
  let old;
  try {
    old = readFileSync(twin, 'utf8');
  } catch {
    old = undefined;
  }
  if (old !== text) writeFileSync(twin, text);
  n++;
}
if (n === 0) throw new Error(`cjs-types: no declaration files under ${root} (run tsc first)`);
