/**
 * Worker for the multi-worker DAX churn tests (R3, R5, R6, memory failure). Attaches the
 * space and plays one role until the main thread sets control[STOP]; posts a result object.
 *
 * Control words (Int32Array over job.control):
 *   [0] STOP       set by the main thread: every looping role finishes its current step
 *   [1] READY      each role adds 1 once it is attached and about to loop
 *   [2..] roles' own words (dax-churn-layout.ts): r5 stamps[p]; mf lastWrite[p], then poisoned[p]
 */
import { workerData, parentPort } from 'node:worker_threads';
import { DaxSpace, type DaxSpaceHandle } from '../../src/dax/space.js';
import { DaxObject } from '../../src/dax/object.js';
import { testHooks } from '../../src/test-break.js';
import { blockOfValue, pageKey, sameKey } from '../../src/dax/layout.js';
import { ownerOf, stateOf, Ew } from '../../src/index/entry-word.js';
import { Lay } from '../../src/index/nodes.js';
import { READY, ROLE_BASE, STOP, fillByte } from './dax-churn-layout.js';
import { rng } from '../helpers/seed.js';

const MF_BASE = ROLE_BASE;

interface ChurnJob {
  handle: DaxSpaceHandle;
  control: SharedArrayBuffer;
  role: string;
  objectId: number;
  pages: number;
  seed: number;
  /** role-specific: first page this role may write (mf-writer), first read-only page (mf-reader), other object id (r6-truncate) */
  from?: number;
  to?: number;
  otherId?: number;
  /** memory failure roles over a 2 MiB extent: writes of poisoned pages fail with EIO; readers also take huge views */
  huge?: boolean;
}

const PAGE = 4096;
const HOLD_MS = 3;
const job = workerData as ChurnJob;
const c = new Int32Array(job.control);
const space = DaxSpace.attach(job.handle);
const rand = rng(job.seed);
const int = (n: number): number => Math.floor(rand() * n);
const stopped = (): boolean => Atomics.load(c, STOP) !== 0;

function codeOf(e: unknown): string {
  return (e as { code?: string }).code ?? String(e);
}

/** Runs fn; an expected race outcome (size shrunk meanwhile, page poisoned) is counted, anything else rethrown. */
function tolerate(fn: () => void, expected: readonly string[], counts: Record<string, number>): void {
  try {
    fn();
  } catch (e) {
    const code = codeOf(e);
    if (!expected.includes(code)) throw e;
    counts[code] = (counts[code] ?? 0) + 1;
  }
}

function pageOf(byte: number): Uint8Array {
  return new Uint8Array(PAGE).fill(byte);
}

/** R3: fault, write, punch and truncate pages of one object at random. */
function r3Churn(obj: DaxObject): unknown {
  const counts: Record<string, number> = { ops: 0 };
  const full = job.pages * PAGE;
  while (!stopped()) {
    const p = int(job.pages);
    const kind = int(4);
    tolerate(
      () => {
        if (kind === 0) obj.write(p * PAGE, pageOf(1 + int(250)));
        else if (kind === 1) obj.punchHole(p * PAGE, PAGE);
        else if (kind === 2) {
          obj.truncate(int(job.pages) * PAGE);
          obj.truncate(full);
        } else
          space.read(() => {
            obj.fault(p, { write: true })[int(PAGE)] = 7;
          });
      },
      ['ERANGE', 'ENOSPC'],
      counts,
    ); // ENOSPC: limbo can hold many blocks while a pinned thread is descheduled
    counts['ops']++;
    if (counts['ops'] % 64 === 0) space.collect();
  }
  return counts;
}

/** R3: rmap every block seen owned by the object; check the answer under the lock it returns. */
function r3Rmap(): unknown {
  const { device, tree } = space;
  const i32 = tree.arena.i32;
  let rmaps = 0;
  let found = 0;
  let nulls = 0;
  const violations: string[] = [];
  while (!stopped() && violations.length < 5) {
    for (let b = 0; b < device.dataBlocks && violations.length < 5; b++) {
      const seen = device.ownerOf(b);
      if (seen.ownerId !== job.objectId || seen.state !== 'owned') continue;
      rmaps++;
      const r = space.rmap(device.blockOffset(b));
      if (r === null) {
        nulls++;
        continue;
      }
      found++;
      try {
        const e = Atomics.load(i32, r.ref.leaf + Lay.W_ENTRY);
        const value = (i32[r.ref.leaf + Lay.W_VALUE_HI] & 0xffff) * 2 ** 32 + (i32[r.ref.leaf + Lay.W_VALUE_LO] >>> 0);
        const now = device.ownerOf(b);
        const st = stateOf(e);
        const problem = !sameKey(r.ref.key, pageKey(r.objectId, r.index))
          ? 'returned ref is not the entry of (object, index)'
          : (e & Ew.LOCKED) === 0 || (e & Ew.DELETED) !== 0 || ownerOf(e) !== tree.threadId
            ? 'entry not locked by this thread'
            : st !== Ew.STATE_VALUE && st !== Ew.STATE_POISONED
              ? `entry state ${st} (not a mapped page)`
              : blockOfValue(value) !== r.block
                ? `entry maps block ${blockOfValue(value)}`
                : now.ownerId !== r.objectId || now.index !== r.index
                  ? `owner table now says object ${now.ownerId} page ${now.index}`
                  : undefined;
        if (problem !== undefined)
          violations.push(`rmap(block ${b}) -> object ${r.objectId} page ${r.index} block ${r.block}: ${problem}`);
      } finally {
        r.release();
      }
    }
  }
  return { rmaps, found, nulls, violations };
}

/**
 * Dirties every page through write faults, round after round, stamping each with its round
 * (stamps[p] records it once stored). refault: fault the page AGAIN after the store, before
 * the record: the stand-in for the write-protect fault a store after writeback would take, so
 * a writeback that starts after the record must make that stamp durable.
 */
function stampRounds(obj: DaxObject, refault: boolean): unknown {
  const stamps = new Int32Array(job.control, 4 * MF_BASE, job.pages);
  let round = 0;
  while (!stopped()) {
    round++;
    for (let p = 0; p < job.pages; p++) {
      const view = obj.fault(p, { write: true });
      new DataView(view.buffer, view.byteOffset, 8).setInt32(0, round, true);
      if (refault) obj.fault(p, { write: true });
      Atomics.store(stamps, p, round);
    }
  }
  return { rounds: round };
}

/** R5: dirty pages through write faults, stamping each page with its round. */
const r5Writer = (obj: DaxObject): unknown => stampRounds(obj, false);
/** Writeback: like r5-writer, each stamp re-dirtied by a second write fault before it is recorded. */
const wbWriter = (obj: DaxObject): unknown => stampRounds(obj, true);

/** Writeback: write the whole object back over and over (a second writeback beside the main thread's), pausing inside each batch. */
function wbWriteback(obj: DaxObject): unknown {
  // Widen the window between clearing a batch's TOWRITE and flushing it (2 ms): without the
  // per-object writeback mutex the main thread's writeback then returns inside it.
  const nap = new Int32Array(new SharedArrayBuffer(4));
  testHooks.writebackWindow = () => void Atomics.wait(nap, 0, 0, 2);
  let calls = 0;
  let pages = 0;
  while (!stopped()) {
    pages += obj.writeback().pages;
    calls++;
  }
  return { calls, pages };
}

/** R5: invalidate the whole object over and over. */
function r5Invalidate(obj: DaxObject): unknown {
  let calls = 0;
  let dropped = 0;
  let busy = 0;
  while (!stopped()) {
    const r = obj.invalidate();
    calls++;
    dropped += r.dropped;
    busy += r.busy;
  }
  return { calls, dropped, busy };
}

/**
 * R6: pinned readers. Inside space.read(), fault a page and check its bytes for a while: a
 * page of object A holds only 0 (freshly allocated) or A's fill bytes (0xa0..0xaf); any
 * other byte means the block was freed and handed to object B while the view was pinned.
 */
function r6Reader(obj: DaxObject): unknown {
  let views = 0;
  let holes = 0;
  const violations: string[] = [];
  const media = space.device.media;
  while (!stopped() && violations.length < 5) {
    const p = int(job.pages);
    space.read(() => {
      let view: Uint8Array;
      try {
        view = obj.fault(p);
      } catch (e) {
        if (codeOf(e) === 'ERANGE') return;
        throw e;
      }
      if (view.buffer !== media.buffer) {
        holes++;
        return;
      }
      views++;
      // Hold the view for a while: long enough for the truncating worker to free and reallocate.
      for (const until = performance.now() + HOLD_MS; performance.now() < until;) {
        for (let i = 0; i < PAGE; i += 64) {
          const v = view[i];
          if (v !== 0 && (v & 0xf0) !== 0xa0) {
            violations.push(`page ${p} (device offset ${view.byteOffset}) byte ${i} = ${v} while pinned`);
            return;
          }
        }
      }
    });
  }
  return { views, holes, violations };
}

/**
 * R6: truncate A to nothing, write B over the freed space (the device is nearly full, so
 * B's blocks are A's old ones unless the epoch holds them), truncate B, write A again.
 */
function r6Truncate(obj: DaxObject): unknown {
  const other = space.object(job.otherId!);
  let rounds = 0;
  const counts: Record<string, number> = {};
  const fill = (o: DaxObject, pages: number, byte: number): void => {
    for (let p = 0; p < pages; p++) tolerate(() => o.write(p * PAGE, pageOf(byte)), ['ENOSPC'], counts);
  };
  while (!stopped()) {
    rounds++;
    obj.truncate(0);
    obj.truncate(job.pages * PAGE);
    fill(other, job.to!, 0xb0 | (rounds & 0xf));
    other.truncate(0);
    other.truncate(job.to! * PAGE);
    fill(obj, job.pages, 0xa0 | (rounds & 0xf));
    space.collect();
  }
  return { rounds, ...counts };
}

/** Memory failure: write pages [from, to) with (page, round) fill bytes; lastWrite[p] records the byte once write() returned. */
function mfWriter(obj: DaxObject): unknown {
  const last = new Int32Array(job.control, 4 * MF_BASE, job.pages);
  let writes = 0;
  let eio = 0;
  while (!stopped()) {
    const p = job.from! + int(job.to! - job.from!);
    const byte = fillByte(p, 1 + int(15));
    try {
      obj.write(p * PAGE, pageOf(byte));
    } catch (e) {
      // A page of a 2 MiB extent cannot be rewritten on a fresh block: its writes fail with EIO once it is poisoned.
      if (job.huge !== true || codeOf(e) !== 'EIO') throw e;
      eio++;
      continue;
    }
    Atomics.store(last, p, byte);
    writes++;
  }
  return { writes, eio };
}

/**
 * Memory failure: read random pages (read() and fault views). A page flagged poisoned before
 * the read started must give EIO, never bytes; bytes must be 0 (a fresh block before its
 * first write lands) or page p's fill bytes, and exactly the initial fill on read-only pages.
 */
function mfReader(obj: DaxObject): unknown {
  const poisoned = new Int32Array(job.control, 4 * (MF_BASE + job.pages), job.pages);
  let reads = 0;
  let eio = 0;
  const violations: string[] = [];
  // Pages from job.from on were filled before the roles started and nobody writes them: only
  // their fill is right (a zero there is a page read as a hole). Written pages may be 0 (before
  // the first write lands) or any of page p's fills.
  const readOnlyFrom = job.from ?? job.pages;
  const good = (p: number, v: number): boolean =>
    p >= readOnlyFrom ? v === fillByte(p, 1) : v === 0 || (v & 0xf) === (p & 0xf);
  while (!stopped() && violations.length < 5) {
    const p = int(job.pages);
    const how = job.huge === true ? int(3) : int(2); // 0 fault, 1 read(), 2 a 2 MiB view
    // only read-only pages are ever flagged; a 2 MiB view covers every page of its extent
    const flagged = how === 2 ? poisoned.some((f) => f === 1) : Atomics.load(poisoned, p) === 1;
    try {
      const bytes =
        how === 0
          ? space.read(() => obj.fault(p).slice())
          : how === 1
            ? obj.read(p * PAGE, PAGE)
            : space.read(() => obj.fault(p, { huge: true }).slice(p * PAGE, (p + 1) * PAGE));
      reads++;
      if (flagged)
        violations.push(`page ${p}: poisoned before the read, got bytes (${['fault', 'read', '2 MiB view'][how]})`);
      for (let i = 0; i < PAGE; i += 256)
        if (!good(p, bytes[i])) {
          violations.push(`page ${p} byte ${i} = ${bytes[i]}`);
          break;
        }
    } catch (e) {
      if (codeOf(e) !== 'EIO') throw e;
      eio++;
    }
  }
  return { reads, eio, violations };
}

const roles: Record<string, (obj: DaxObject) => unknown> = {
  'r3-churn': r3Churn,
  'r3-rmap': () => r3Rmap(),
  'r5-writer': r5Writer,
  'r5-invalidate': r5Invalidate,
  'wb-writer': wbWriter,
  'wb-writeback': wbWriteback,
  'r6-reader': r6Reader,
  'r6-truncate': r6Truncate,
  'mf-writer': mfWriter,
  'mf-reader': mfReader,
};

let result: unknown;
try {
  const play = roles[job.role];
  if (play === undefined) throw new Error(`unknown role ${job.role}`);
  const obj = space.object(job.objectId);
  Atomics.add(c, READY, 1);
  result = play(obj);
} catch (e) {
  result = { error: `${codeOf(e)}: ${(e as Error).stack ?? String(e)}` };
}
space.close();
parentPort!.postMessage(result);
