/**
 * Values of many record shapes for the msgpack structures tests (test/kv/kv-structures.test.ts
 * and its worker): value(writer, j) is an object whose key set is one of SHAPES_PER_WRITER
 * shapes of its writer (no shape shared between writers, so writers running at once each add
 * new shared structures), with a nested object of a shape of its own, a Map and a Date.
 */
export const SHAPES_PER_WRITER = 24;

export function shapeValue(writer: number, j: number): Record<string, unknown> {
  const s = j % SHAPES_PER_WRITER;
  const v: Record<string, unknown> = { id: j, writer };
  for (let f = 0; f <= s % 5; f++) v[`w${writer}s${s}f${f}`] = f % 2 === 0 ? `text ${j}.${f}` : j * 10 + f;
  v.nested = { [`n${writer}_${s}`]: [j, j + 1, j / 7], when: new Date(1_700_000_000_000 + j) };
  v.map = new Map<unknown, unknown>([
    [j, `m${j}`],
    ['k', { a: s }],
  ]);
  return v;
}
