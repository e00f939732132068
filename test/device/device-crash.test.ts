/**
 * Crash consistency of the device's allocator protocol on SimMedia.
 *
 * A seeded loop allocates (order 0 and 9) and frees blocks. At every fence (SimMedia's
 * onFence hook runs before the drain makes anything durable) it takes crash images —
 * 'none', 'all' and a few random subsets of the pending words — opens each with
 * Device.open and checks: the superblock is valid (open succeeds), the rebuilt allocator
 * agrees with the owner table (audit), every acknowledged allocation not freed is owned
 * with its owner/index/order, every acknowledged free is free, and the operation in
 * flight shows either outcome, never a mix.
 *
 * Not covered here: poison during the loop, concurrent threads (device-workers test),
 * data written by the layers above.
 */
import { describe, expect, it, afterEach } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { isDaxError } from '../../src/errors.js';
import { setBroken, type SwitchName } from '../../src/test-break.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

const FILE = 'test/device/device-crash.test.ts';

const MiB = 1024 * 1024;
const seed = testSeed();
const replay = replayHint(seed, FILE);

interface Owned {
  ownerId: number;
  index: number;
  order: 0 | 9;
}

type InFlight =
  { kind: 'alloc'; rec: Owned } | { kind: 'free'; block: number; rec: Owned } | { kind: 'close' } | undefined;

interface CampaignResult {
  images: number;
  fences: number;
  violations: string[];
}

/** Checks one crash image against the model; returns what is wrong (empty when consistent). */
function checkImage(image: SimMedia, model: Map<number, Owned>, inFlight: InFlight): string[] {
  let device: Device;
  try {
    device = Device.open(image);
  } catch (e) {
    return [`Device.open failed: ${String(e)}`];
  }
  const problems = device.audit().map((p) => `allocator vs owner table: ${p}`);
  for (const [block, rec] of model) {
    const info = device.ownerOf(block);
    const same =
      info.state === 'owned' && info.ownerId === rec.ownerId && info.index === rec.index && info.order === rec.order;
    const freeing = inFlight?.kind === 'free' && inFlight.block === block;
    if (!same && !(freeing && info.state === 'free'))
      problems.push(`acknowledged block ${block} ${JSON.stringify(rec)} reads as ${JSON.stringify(info)}`);
    if (same && rec.order === 9 && device.ownerOf(block + 511).state !== 'covered')
      problems.push(`extent ${block} owned but its tail is not covered`);
  }
  device.forEachOwned((block, ownerId, index, order) => {
    const rec = model.get(block);
    if (rec !== undefined) return; // checked above
    const a = inFlight?.kind === 'alloc' ? inFlight.rec : undefined;
    if (a === undefined || a.ownerId !== ownerId || a.index !== index || a.order !== order) {
      problems.push(
        `block ${block} owned by ${ownerId}/${index}/order ${order}: not acknowledged, not the allocation in flight`,
      );
    }
  });
  const stats = device.stats();
  if (stats.freeBlocks + stats.ownedBlocks !== stats.dataBlocks)
    problems.push(`stats do not add up: ${JSON.stringify(stats)}`);
  device.close();
  return problems;
}

function runCampaign(
  runSeed: number,
  ops: number,
  randomImagesPerFence: number,
  stopAtFirst: boolean,
  onlyAtClose = false,
): CampaignResult {
  const random = rng(runSeed);
  const media = createSimMedia(8 * MiB);
  const device = Device.format(media);
  const model = new Map<number, Owned>();
  let inFlight: InFlight;
  const result: CampaignResult = { images: 0, fences: 0, violations: [] };
  const check = (image: SimMedia, label: string) => {
    result.images++;
    for (const p of checkImage(image, model, inFlight))
      result.violations.push(`fence ${result.fences} ${label} (${inFlight?.kind ?? 'idle'}): ${p}`);
    image.dispose();
  };
  media.onFence(() => {
    if (stopAtFirst && result.violations.length > 0) return;
    result.fences++;
    if (onlyAtClose && inFlight?.kind !== 'close') return;
    check(media.crashImage({ mode: 'none' }), 'none');
    check(media.crashImage({ mode: 'all' }), 'all');
    for (let k = 0; k < randomImagesPerFence; k++) {
      const imageSeed = Math.floor(random() * 2 ** 31);
      check(media.crashImage({ mode: 'random', seed: imageSeed, probability: 0.5 }), `random seed ${imageSeed}`);
    }
  });
  for (let op = 1; op <= ops && !(stopAtFirst && result.violations.length > 0); op++) {
    const roll = random();
    const live = [...model.keys()];
    if (live.length > 0 && (roll < 0.4 || model.size > 200)) {
      const block = live[Math.floor(random() * live.length)];
      inFlight = { kind: 'free', block, rec: model.get(block)! };
      device.free(block);
      model.delete(block);
    } else {
      const rec: Owned = { ownerId: 1 + Math.floor(random() * 1000), index: op, order: roll > 0.93 ? 9 : 0 };
      inFlight = { kind: 'alloc', rec };
      try {
        model.set(device.allocate(rec.ownerId, rec.index, rec.order), rec);
      } catch (e) {
        if (!isDaxError(e, 'ENOSPC')) throw e;
      }
    }
    inFlight = undefined;
  }
  inFlight = { kind: 'close' };
  device.close();
  return result;
}

describe('device crash consistency', () => {
  it('every crash image at every fence opens with acknowledged work intact and nothing both owned and free', () => {
    let result: CampaignResult | undefined;
    try {
      result = runCampaign(seed, 300, 3, false);
      console.log(`device crash: seed ${seed}, ${result.fences} fences, ${result.images} crash images checked`);
      expect(result.fences).toBeGreaterThan(350);
      expect(result.violations.slice(0, 5)).toEqual([]);
    } catch (e) {
      console.error(`device crash test failed with ${replay}`);
      throw e;
    }
  });

  describe('goes red when the protocol is switched off', () => {
    afterEach(() => {
      for (const name of ['alloc-publish-before-index', 'free-skip-persist', 'superblock-single-persist'] as const)
        setBroken(name, false);
    });
    const breaks: SwitchName[] = ['alloc-publish-before-index', 'free-skip-persist', 'superblock-single-persist'];
    for (const name of breaks) {
      it(`DAXSTORE_TEST_BREAK=${name} is caught by the crash checker`, () => {
        setBroken(name, true);
        // The superblock is written only at format/open/close: check the close's fences only.
        const result = runCampaign(
          seed,
          400,
          name === 'superblock-single-persist' ? 16 : 3,
          true,
          name === 'superblock-single-persist',
        );
        if (result.violations.length === 0) console.error(`break ${name} not detected with ${replay}`);
        else console.log(`break ${name}: ${result.violations[0]}`);
        expect(result.violations.length).toBeGreaterThan(0);
      });
    }
  });
});
