/**
 * The seeded damage test: damage of every region of a key-value store, one region per trial,
 * is refused or salvaged, never served wrong (test/workers/kv-damage-trials.ts runs the trials
 * in a worker and says what each one does). Regions: a superblock copy, an owner record, the
 * log, a large value, an object-table record (one byte flipped); a 4 KiB block poisoned under
 * the log, a large value or the object table; a lost metadata page (a superblock copy, an
 * owner-table page); several of these at once. Counted over every trial, each must be 0:
 *   wrong values served as valid, deleted keys resurrected silently, keys lost silently, keys
 *   lost whose records do not overlap the damage, stores unopenable by salvage or after it,
 *   `check` saying ok about a store that cannot serve every key, `check --repair` leaving one
 *   that does not check clean, a strict open refusing damage it corrects or works around (one
 *   byte of an owner or object-table record, one superblock copy), and crashes (an exception
 *   that is not a DaxError). A hang is a
 *   failure naming its trial: the worker must report each trial within the watchdog.
 * A second test takes a closed 10,000-key store (every key written, then overwrites, deletes,
 * batches, large values and a compaction) and flips one byte chosen uniformly over everything
 * the store wrote, the same counts (and `rolledBack`: an older value served as current) at 0.
 * CI runs scaled(REGIONS.length * 10) trials of the mixed store (10 per region) and scaled(10) of
 * the 10,000-key one; DAXSTORE_LONG=<factor> runs more (the counts are printed; 10 gives the
 * 10,000-key store 100 trials).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { workerScript } from '../helpers/workers.js';
import { replayHint, scaled, testSeed } from '../helpers/seed.js';
import { breakEnv } from '../../src/test-break.js';
import { BAD_OUTCOMES, REGIONS, type Region } from '../helpers/damage-regions.js';
import type { TrialResult } from '../workers/kv-damage-trials.js';

const FILE = 'test/kv/kv-damage-seeded.test.ts';
/** Regions whose damage a strict open corrects (one byte of a record) or works around (the other superblock copy). */
const NEVER_REFUSED: readonly Region[] = ['superblock', 'poison-superblock', 'owner-record', 'object-record'];
const WATCHDOG_MS = 120_000;

function runTrials(
  seed: number,
  trials: number,
  dir: string,
  store: 'mixed' | 'issue',
  env: Record<string, string> = {},
  regions?: Region[],
): Promise<TrialResult[]> {
  return new Promise((resolve, reject) => {
    const results: TrialResult[] = [];
    const worker = new Worker(workerScript('kv-damage-trials'), {
      workerData: { seed, trials, checkEvery: 5, dir, store, regions },
      env: { ...process.env, ...env },
    });
    let watchdog: NodeJS.Timeout;
    const arm = (): void => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        void worker.terminate();
        reject(
          new Error(`hang: trial ${results.length} reported nothing for ${WATCHDOG_MS} ms (${replayHint(seed, FILE)})`),
        );
      }, WATCHDOG_MS);
    };
    arm();
    worker.on('message', (m: TrialResult | 'done') => {
      if (m === 'done') {
        clearTimeout(watchdog);
        resolve(results);
      } else {
        results.push(m);
        arm();
      }
    });
    worker.once('error', (e) => {
      clearTimeout(watchdog);
      reject(new Error(`trial ${results.length} crashed the worker: ${e.stack ?? String(e)}`));
    });
    worker.once('exit', (code) => {
      clearTimeout(watchdog);
      if (code !== 0) reject(new Error(`worker exited with ${code} at trial ${results.length}`));
    });
  });
}

/** Runs the trials and counts the bad outcomes (printed with the per-region counts). */
async function badOutcomes(
  store: 'mixed' | 'issue',
  trials: number,
  seed: number,
  env: Record<string, string> = {},
  regions?: Region[],
): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'kv-damage-'));
  try {
    const results = await runTrials(seed, trials, dir, store, env, regions);
    const sum = (f: keyof TrialResult): number => results.reduce((a, t) => a + Number(t[f]), 0);
    const bad = {
      ...Object.fromEntries(BAD_OUTCOMES.map((k) => [k, sum(k)])),
      // damage the store corrects or works around (one byte of a metadata record, one superblock copy) refused
      refusedNeedlessly: results.filter((t) => t.refusedStrict && NEVER_REFUSED.includes(t.region)).length,
      crashes: results.reduce((a, t) => a + t.crashes.length, 0),
    };
    const byRegion: Record<string, { trials: number; refused: number; corrected: number; lostKeys: number }> = {};
    for (const t of results) {
      const r = (byRegion[t.region] ??= { trials: 0, refused: 0, corrected: 0, lostKeys: 0 });
      r.trials++;
      if (t.refusedStrict) r.refused++;
      if (t.corrected) r.corrected++;
      r.lostKeys += t.lostKeys;
    }
    console.log(
      `damage trials, ${store} store${env.DAXSTORE_TEST_BREAK === undefined ? '' : ` with ${env.DAXSTORE_TEST_BREAK}`} (seed ${seed}): ${results.length} (${results.filter((t) => t.checked).length} also through check/repair); ` +
        `bad outcomes ${JSON.stringify(bad)}; per region ${JSON.stringify(byRegion)}`,
    );
    const details = results.flatMap((t) =>
      t.crashes.map(
        (c) => `trial ${t.trial} (${t.region} at ${t.ranges.map(([a, b]) => `${a}+${b - a}`).join(', ')}): ${c}`,
      ),
    );
    return { ...bad, details: details.slice(0, 10) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the trials and expects every bad outcome to be 0. */
async function expectNoBadOutcome(store: 'mixed' | 'issue', trials: number): Promise<void> {
  const seed = testSeed();
  expect(await badOutcomes(store, trials, seed), replayHint(seed, FILE)).toEqual({
    ...Object.fromEntries(BAD_OUTCOMES.map((k) => [k, 0])),
    refusedNeedlessly: 0,
    crashes: 0,
    details: [],
  });
}

describe('seeded damage', () => {
  it('over every region of a mixed store: refused or salvaged, never served wrong, never resurrected, never unopenable after repair', async () => {
    await expectNoBadOutcome('mixed', scaled(REGIONS.length * 10));
  }, 1_800_000);

  it('one random byte of a closed 10,000-key store: never served wrong or rolled back, repair leaves it clean', async () => {
    await expectNoBadOutcome('issue', scaled(10));
  }, 1_800_000);

  // each switch over the regions it concerns (a large value read unverified from a poisoned block
  // would fault the process: only flips there)
  it.each([
    ['kv-no-resync', ['log', 'poison-log'], ['resurrectedSilently', 'lostSilently', 'wrongValues']],
    ['kv-large-no-verify', ['large-value'], ['wrongValues']],
    [
      'owner-no-correct',
      ['owner-record'],
      ['refusedNeedlessly', 'unopenableAfterRepair', 'unopenableAfterSalvage', 'repairNotClean', 'lostSilently'],
    ],
    ['object-record-no-correct', ['object-record'], ['refusedNeedlessly', 'lostSilently', 'lostOutsideDamage']],
  ] as const)(
    'goes red with DAXSTORE_TEST_BREAK=%s',
    async (name, regions, counts) => {
      const seed = testSeed();
      const bad = await badOutcomes('mixed', 6, seed, breakEnv(name), [...regions]);
      expect(
        counts.reduce((a, c) => a + Number(bad[c]), 0),
        `${JSON.stringify(bad)}; ${replayHint(seed, FILE)}`,
      ).toBeGreaterThan(0);
    },
    600_000,
  );
});
