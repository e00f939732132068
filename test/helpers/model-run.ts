import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import type { KvStore } from '../../src/kv/index.js';
import { expectKeyMatches, expectStoreMatches, open } from './kv-bytes.js';
import { rng } from './seed.js';

export interface ModelRun {
  /** names the temporary directory (/dev/shm/<tag>-…) and the watchdog's message ("N of M <unit>") */
  tag: string;
  unit: string;
  seed: number;
  steps: number;
  /** the store's size at create */
  size: number;
  watchdogMs: number;
  /** how many keys the run uses, drawn first from the run's random sequence */
  keys: (random: () => number) => number;
}

/**
 * A seeded run of `steps` steps against a fresh store: `step` changes the store and the model
 * the same way (`key()` draws one of the run's keys, k0, k1, ...). After every step a random key
 * must read back as the model has it; half-way the store is reopened; at the end it is reopened
 * once more and must equal the model, with a clean block audit. A watchdog fails a run that has
 * not finished in watchdogMs (a write that keeps reclaiming without progress is a failure with
 * a message, not a suite timeout). The store and its directory are removed after.
 */
export function modelRun(
  run: ModelRun,
  step: (db: KvStore, i: number, random: () => number, key: () => string, model: Map<string, Buffer>) => void,
): void {
  withReopenedModel(run.tag, { size: run.size }, (store) => {
    const random = rng(run.seed);
    const keys = run.keys(random);
    const key = (): string => `k${Math.floor(random() * keys)}`;
    const model = new Map<string, Buffer>();
    const end = performance.now() + run.watchdogMs;
    for (let i = 0; i < run.steps; i++) {
      if (performance.now() > end)
        throw new Error(`watchdog: ${i} of ${run.steps} ${run.unit} after ${run.watchdogMs / 1000} s`);
      step(store.db, i, random, key, model);
      expectKeyMatches(store.db, model, key());
      if (i === run.steps >> 1) store.reopen();
    }
    return model;
  });
}

/** The store of withReopenedModel: `reopen()` closes it and opens the same file again. */
export interface ModelStore {
  db: KvStore;
  reopen(): void;
}

/**
 * A fresh store in a temporary directory (/dev/shm/<tag>-…), opened with `options`: `body` runs
 * against it and returns the model the store must hold. Then the store is reopened and must
 * equal the model, with a clean block audit. The store is closed and the directory removed
 * whatever happens.
 */
export function withReopenedModel(
  tag: string,
  options: Parameters<typeof open>[1],
  body: (store: ModelStore) => ReadonlyMap<string, Uint8Array>,
): void {
  const dir = mkdtempSync(`/dev/shm/${tag}-`);
  try {
    const file = path.join(dir, 'store');
    const store: ModelStore = {
      db: open(file, options),
      reopen() {
        this.db.close();
        this.db = open(file);
      },
    };
    try {
      const model = body(store);
      store.reopen();
      expectStoreMatches(store.db, model);
      expect(store.db.dax.device.audit()).toEqual([]);
    } finally {
      store.db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
