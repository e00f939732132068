/**
 * Strict options: every options object of the store's API is checked. A misspelled option
 * name (one edit away from a real one: a letter dropped, added, changed, two swapped, a case
 * changed) is EINVAL on every method that takes options, and changes nothing (the store's
 * contents and counters are compared before and after; open() of an absent path creates no
 * file). Then a misuse matrix: every public method called with odd values in each argument
 * position either works or throws a DaxError, never a plain TypeError.
 *
 * Not covered: options of the lower layers (daxstore/dax, daxstore/advanced).
 */
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createSimMedia } from '../../src/device/sim-media.js';
import { isDaxError } from '../../src/errors.js';
import { describeValue } from '../../src/options.js';
import { attach, open, openMedia, type KvStore } from '../../src/kv/index.js';
import { scaled, withSeed } from '../helpers/seed.js';
import { daxCodeOf } from '../helpers/expect-code.js';

const FILE = 'test/kv/kv-strict-options.test.ts';
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyStore = KvStore<any, any>;

/** Every method that takes an options object, with its valid option names and a call with one options object. */
function optionTakers(
  db: AnyStore,
  dir: string,
): Array<{ name: string; options: string[]; call: (o: object) => unknown }> {
  const bounds = ['gt', 'gte', 'lt', 'lte', 'prefix', 'reverse', 'limit'];
  return [
    { name: 'open', options: ['size', 'durability'], call: (o) => open(path.join(dir, 'absent'), o as never) },
    {
      name: 'openMedia',
      options: ['durability', 'formatIfEmpty'],
      call: (o) => openMedia(createSimMedia(8 * 2 ** 20), o as never).close(),
    },
    { name: 'range', options: bounds, call: (o) => [...db.range(o as never)] },
    { name: 'deleteRange', options: bounds, call: (o) => db.deleteRange(o as never) },
    { name: 'compact', options: ['maxLiveRatio'], call: (o) => db.compact(o as never) },
  ];
}

/** A value of the right type for option `name` (so only the name is wrong). */
function validValue(name: string): unknown {
  switch (name) {
    case 'size':
      return 8 * 2 ** 20;
    case 'durability':
      return 'sync';
    case 'formatIfEmpty':
    case 'reverse':
      return false;
    case 'limit':
      return 10;
    case 'maxLiveRatio':
      return 0.5;
    default:
      return 'k';
  }
}

/** One edit of `name` (seeded by `pick`), never equal to a real option name. */
const misspelling = (name: string) =>
  fc
    .tuple(fc.integer({ min: 0, max: 4 }), fc.nat(), fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCXYZ_'))
    .map(([kind, at, ch]) => {
      const i = at % (name.length + 1);
      const j = at % name.length;
      switch (kind) {
        case 0:
          return name.slice(0, j) + name.slice(j + 1); // dropped
        case 1:
          return name.slice(0, i) + ch + name.slice(i); // added
        case 2:
          return name.slice(0, j) + ch + name.slice(j + 1); // changed
        case 3:
          return j + 1 < name.length ? name.slice(0, j) + name[j + 1] + name[j] + name.slice(j + 2) : name + ch; // swapped
        default:
          return (
            name.slice(0, j) +
            (name[j] === name[j].toUpperCase() ? name[j].toLowerCase() : name[j].toUpperCase()) +
            name.slice(j + 1)
          ); // case
      }
    });

function contents(db: AnyStore): string {
  const s = db.stats();
  const rows = [...db.range()].map(([k, v]) => `${Buffer.from(k).toString('hex')}=${Buffer.from(v).toString('hex')}`);
  return JSON.stringify({ keys: s.keys, puts: s.puts, deletes: s.deletes, rows });
}

describe('strict options', () => {
  // DAXSTORE_LONG scales the misspellings tried and the time allowed alike
  test(
    'a misspelled option name is EINVAL on every method that takes options, and changes nothing',
    { timeout: scaled(60_000) },
    () =>
      withSeed(FILE, (seed) => {
        const dir = mkdtempSync('/dev/shm/kv-strict-');
        const db = openMedia(createSimMedia(16 * 2 ** 20));
        try {
          for (let i = 0; i < 200; i++) db.put(`user:${i}`, `v${i}`);
          const before = contents(db);
          let tried = 0;
          const methods = optionTakers(db, dir);
          for (const m of methods) {
            for (const real of m.options) {
              fc.assert(
                fc.property(misspelling(real), (wrong) => {
                  fc.pre(!m.options.includes(wrong));
                  tried++;
                  const code = daxCodeOf(() => m.call({ [wrong]: validValue(real) }));
                  expect(code, `${m.name}({ ${wrong} })`).toBe('EINVAL');
                  // beside a valid option too: the typo is refused, not ignored
                  const other = m.options.find((o) => o !== real && o !== 'limit' && o !== 'reverse');
                  if (other !== undefined)
                    expect(daxCodeOf(() => m.call({ [other]: validValue(other), [wrong]: validValue(real) }))).toBe(
                      'EINVAL',
                    );
                }),
                { seed: seed + real.length, numRuns: scaled(15) },
              );
            }
          }
          expect(contents(db)).toBe(before);
          expect(existsSync(path.join(dir, 'absent'))).toBe(false);
          console.log(`strict options: ${tried} misspelled option names on ${methods.length} methods, all EINVAL`);
        } finally {
          db.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
  );

  test('wrong types and nonsense values are EINVAL naming the option', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    try {
      db.put('a', 'b');
      const cases: Array<[() => unknown, string]> = [
        [() => [...db.range({ limit: -1 })], 'limit'],
        [() => [...db.range({ limit: 1.5 })], 'limit'],
        [() => [...db.range({ limit: NaN })], 'limit'],
        [() => [...db.range({ limit: '3' as never })], 'limit'],
        [() => [...db.range({ reverse: 'yes' as never })], 'reverse'],
        [() => [...db.range({ gt: {} as never })], 'gt'],
        [() => db.deleteRange({ prefix: undefined }), 'prefix'],
        [() => db.deleteRange({ lt: undefined }), 'lt'],
        [() => db.deleteRange({ limit: -2 }), 'limit'],
        [() => db.compact({ maxLiveRatio: 2 }), 'maxLiveRatio'],
        [() => openMedia(createSimMedia(8 * 2 ** 20), { durability: 'fast' as never }), 'durability'],
        [() => openMedia(createSimMedia(8 * 2 ** 20), { formatIfEmpty: 1 as never }), 'formatIfEmpty'],
        [() => open('/dev/shm/kv-strict-never', { size: -5 }), 'size'],
        [() => open('/dev/shm/kv-strict-never', { size: 2.5 }), 'size'],
      ];
      for (const [fn, name] of cases) {
        let caught: unknown;
        try {
          fn();
        } catch (e) {
          caught = e;
        }
        expect(isDaxError(caught, 'EINVAL'), `${fn}: ${String(caught)}`).toBe(true);
        expect((caught as Error).message).toContain(name);
      }
      expect(existsSync('/dev/shm/kv-strict-never')).toBe(false);
      expect(db.get('a')).toBeDefined();
    } finally {
      db.close();
    }
  });

  test('misuse matrix: odd arguments in every position give a DaxError or work, never a plain TypeError', async () => {
    const odd: unknown[] = [
      undefined,
      null,
      0,
      -1,
      NaN,
      '',
      'x',
      true,
      [],
      {},
      [1, 2],
      Symbol('s'),
      () => 1,
      new Uint8Array(0),
      Object.create(null),
      10n,
    ];
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    const dir = mkdtempSync('/dev/shm/kv-misuse-');
    try {
      db.put('k', 'v');
      const calls: Array<[string, (a: unknown) => unknown]> = [
        // a string path inside dir: open creates a store there (size is optional), never in the cwd
        ['open(path)', (a) => open((typeof a === 'string' && a !== '' ? path.join(dir, a) : a) as never)],
        ['open(path, opts)', (a) => open(path.join(dir, 's'), a as never)],
        ['openMedia(media)', (a) => openMedia(a as never)],
        ['openMedia(media, opts)', (a) => openMedia(createSimMedia(8 * 2 ** 20), a as never).close()],
        ['attach', (a) => attach(a as never)],
        ['get', (a) => db.get(a as never)],
        ['has', (a) => db.has(a as never)],
        ['getView', (a) => db.read(() => db.getView(a as never))],
        ['put(key)', (a) => db.put(a as never, 'v')],
        ['put(value)', (a) => db.put('p', a as never)],
        ['delete', (a) => db.delete(a as never)],
        ['batch', (a) => db.batch(a as never)],
        ['batch([op])', (a) => db.batch([a as never])],
        ['range', (a) => [...db.range(a as never)]],
        ['deleteRange', (a) => db.deleteRange(a as never)],
        ['compact', (a) => db.compact(a as never)],
        ['read', (a) => db.read(a as never)],
      ];
      for (const [name, call] of calls)
        for (const a of odd) {
          try {
            const r = call(a);
            if (r !== null && typeof r === 'object' && 'close' in r) (r as KvStore).close();
          } catch (e) {
            expect(isDaxError(e), `${name}(${describeValue(a)}): ${String(e)}`).toBe(true);
          }
        }
      // the promise-returning calls reject (with a DaxError) rather than throw
      for (const a of odd) {
        const outcome = await db.batchAsync(a as never).then(
          () => 'ok',
          (e: unknown) => (isDaxError(e) ? 'DaxError' : String(e)),
        );
        expect(['ok', 'DaxError']).toContain(outcome);
      }
      db.put('k', 'after'); // still a working store (the matrix's deleteRange({}) emptied it)
      expect(Buffer.from(db.get('k')!).toString()).toBe('after');
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
