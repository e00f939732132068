/**
 * Starts roles of test/workers/dax-churn.ts against one space, with an optional break switch
 * in the workers' env. A role that has not exited after timeoutMs is a hang: before the
 * workers are terminated, the harness prints each live worker's JS stack (inspector) and the
 * shared lock words of the objects in play (churnLockReport), so a hang says what it waited on.
 */
import { Worker } from 'node:worker_threads';
import { workerScript } from '../helpers/workers.js';
import { workerStacks } from '../helpers/worker-stacks.js';
import type { DaxSpace } from '../../src/dax/space.js';
import { pageKey } from '../../src/dax/layout.js';
import { STATE_NAMES, ownerOf, stateOf, Ew } from '../../src/index/entry-word.js';
import { Lay } from '../../src/index/nodes.js';
import { H_TREE_LOCK } from '../../src/index/arena.js';
import { READY, STOP, controlWords } from '../workers/dax-churn-layout.js';

export interface RoleSpec {
  role: string;
  objectId: number;
  from?: number;
  to?: number;
  otherId?: number;
  huge?: boolean;
}

export interface Churn {
  control: Int32Array;
  /** Waits until every role is attached and looping. */
  ready(): Promise<void>;
  /** Sets STOP and resolves with each role's result (in start order). */
  stop(): Promise<unknown[]>;
  /** The hang report printed when a role timed out (stacks and lock words), else undefined. */
  hangReport(): string | undefined;
}

/** What a worker stuck after posting its result is (see test/helpers/workers.ts). */
const TEARDOWN_HANG =
  "Node's worker teardown (NodePlatform::DrainTasks) deadlocked with a V8 background job waiting for a GC, nodejs/node#54918";

export function startChurn(
  space: DaxSpace,
  pages: number,
  seed: number,
  specs: RoleSpec[],
  breakName?: string,
  timeoutMs = 30_000,
): Churn {
  const control = new Int32Array(new SharedArrayBuffer(4 * controlWords(pages)));
  const env = { ...process.env, DAXSTORE_TEST_BREAK: breakName ?? '' };
  let failed = false; // a worker died (e.g. could not load its module): stop waiting for READY
  const live = new Map<number, string>(); // threadId -> role, until the worker exits
  const posted = new Set<number>(); // threadIds whose role returned and posted its result
  let diagnosis: Promise<void> | undefined;
  let report: string | undefined;
  const diagnose = (): Promise<void> => {
    diagnosis ??= (async () => {
      // The shared words first (what the workers are blocked on right now), then the stacks.
      const ids = [
        ...new Set(specs.flatMap((s) => (s.otherId === undefined ? [s.objectId] : [s.objectId, s.otherId]))),
      ];
      const locks = space.closed ? ['  (space closed: no lock report)'] : churnLockReport(space, ids, pages);
      const running = [...live];
      const stacks = await workerStacks(running.map(([threadId]) => threadId));
      const lines = [
        `dax churn (seed ${seed}): ${running.length} role(s) still running after ${timeoutMs} ms; STOP=${Atomics.load(control, STOP)} READY=${Atomics.load(control, READY)}`,
      ];
      for (const [threadId, role] of running) {
        const where =
          stacks.get(threadId) ??
          (posted.has(threadId)
            ? `    (no JS stack: the role finished and posted its result, but the thread never exited — ${TEARDOWN_HANG})`
            : '    (no stack: the worker did not answer the inspector)');
        lines.push(
          `  role ${role} (worker thread ${threadId}${posted.has(threadId) ? ', result posted' : ''}):\n${where}`,
        );
      }
      report = [...lines, ...locks].join('\n');
      console.error(report);
    })().catch((e) => console.error(`dax churn: diagnosis failed: ${String(e)}`));
    return diagnosis;
  };
  const results = specs.map(
    (spec, i) =>
      new Promise<unknown>((resolve, reject) => {
        const w = new Worker(workerScript('dax-churn'), {
          workerData: { handle: space.share(), control: control.buffer, pages, seed: (seed + i * 7919) >>> 0, ...spec },
          env,
        });
        const threadId = w.threadId;
        live.set(threadId, spec.role);
        let value: unknown = 'no result';
        const timer = setTimeout(() => {
          // Resolve only after the diagnosis: the caller closes the space once every role is in.
          // Not awaited: terminate() never settles for a worker stuck in its teardown.
          void diagnose().then(() => {
            void w.terminate();
            resolve(`timeout: ${spec.role}`);
          });
        }, timeoutMs);
        w.once('message', (v) => {
          value = v;
          posted.add(threadId);
        });
        w.once('error', (e) => {
          clearTimeout(timer);
          failed = true;
          reject(e);
        });
        w.once('exit', () => {
          live.delete(threadId);
          clearTimeout(timer);
          resolve(value);
        });
      }),
  );
  for (const r of results) r.catch(() => undefined); // reported by stop(), not as an unhandled rejection
  return {
    control,
    async ready() {
      const deadline = Date.now() + timeoutMs;
      while (!failed && Atomics.load(control, READY) < specs.length && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
    },
    async stop() {
      Atomics.store(control, STOP, 1);
      return Promise.all(results);
    },
    hangReport: () => report,
  };
}

/**
 * The shared words a churn role can wait on, read without taking any lock: per object its
 * invalidate lock and writeback mutex, every entry of pages [0, pages) that is locked, has
 * waiters or is deleted; the tree lock, wait table, epoch and tree counters.
 */
export function churnLockReport(space: DaxSpace, objectIds: readonly number[], pages: number): string[] {
  const { tree, objects, epoch } = space;
  const i32 = tree.arena.i32;
  const lines: string[] = [];
  for (const id of objectIds) {
    const slot = objects.find(id);
    if (slot < 0) {
      lines.push(`  object ${id}: not live`);
      continue;
    }
    const rw = Atomics.load(objects.words, objects.rwIndex(slot));
    const wb = Atomics.load(objects.words, objects.writebackLockIndex(slot));
    lines.push(
      `  object ${id}: invalidate lock word 0x${(rw >>> 0).toString(16)} (readers ${rw & 0x1fffffff}), writeback mutex ${wb}`,
    );
    const held: string[] = [];
    for (let p = 0; p < pages; p++) {
      const e = epoch.guard(() => {
        const leaf = tree.findLeafPinned(pageKey(id, p));
        return leaf === 0 ? undefined : Atomics.load(i32, leaf + Lay.W_ENTRY);
      });
      if (e === undefined || (e & (Ew.LOCKED | Ew.WAITERS | Ew.DELETED)) === 0) continue;
      const bits = [
        (e & Ew.LOCKED) !== 0 ? `LOCKED by participant ${ownerOf(e)}` : '',
        (e & Ew.WAITERS) !== 0 ? 'WAITERS' : '',
        (e & Ew.DELETED) !== 0 ? 'DELETED' : '',
      ].filter((s) => s !== '');
      held.push(`    page ${p}: ${STATE_NAMES[stateOf(e)]} ${bits.join(' ')}`);
    }
    lines.push(...(held.length > 0 ? held : ['    no page entry locked, waited on or deleted']));
  }
  const e = epoch.stats();
  lines.push(`  tree lock word ${Atomics.load(i32, H_TREE_LOCK)}; tree ${JSON.stringify(tree.stats())}`);
  lines.push(`  wait table ${JSON.stringify(tree.waitTable.stats())}`);
  lines.push(
    `  epoch ${e.epoch}, pinned participants ${e.pinned}, oldest pin ${e.oldestPinAgeMs} ms, limbo ${JSON.stringify(e.limbo.filter((n) => n > 0))}; this thread is participant ${epoch.threadId}`,
  );
  return lines;
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
