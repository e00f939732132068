/**
 * The facts the thread-death design rests on (docs/ARCHITECTURE.md "Thread death"), checked on
 * this Node: a thread's end — return, throw, process.exit(), terminate() in a loop or asleep —
 * runs the addon's cleanup hook, which marks its participant DEAD; terminate() skips finally
 * blocks; termination lands only at calls and loop back edges, so a compare-exchange followed by
 * stores with no call in between is never cut in two (and with a call in between it is, which
 * shows the check can see it); a native store wakes no Atomics.wait sleeper.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { isParticipantDead, participantTable, slotBase, P_STATE } from '../../src/device/participants.js';
import { scaled } from '../helpers/seed.js';
import { workerScript } from '../helpers/workers.js';

function start(
  mode: string,
  flags = new Int32Array(new SharedArrayBuffer(32)),
): {
  worker: Worker;
  id: Promise<number>;
  exited: Promise<number>;
  flags: Int32Array;
} {
  const worker = new Worker(workerScript('participant-fact'), { workerData: { mode, flags: flags.buffer } });
  worker.on('error', () => {}); // 'throw' ends with an error on purpose
  return {
    worker,
    flags,
    id: new Promise((resolve) => worker.once('message', resolve)),
    exited: new Promise((resolve) => worker.once('exit', resolve)),
  };
}

describe('facts about thread ends (Node 20, V8 11.3)', () => {
  it.each(['return', 'throw', 'exit', 'loop', 'wait'])(
    'a worker that ends by %s has its participant marked dead by the cleanup hook',
    async (mode) => {
      const w = start(mode);
      const id = await w.id;
      expect(isParticipantDead(id)).toBe(false);
      Atomics.store(w.flags, 7, 1); // go: 'return', 'throw' and 'exit' wait for it
      Atomics.notify(w.flags, 7);
      if (mode === 'loop' || mode === 'wait') await w.worker.terminate();
      await w.exited;
      expect(isParticipantDead(id)).toBe(true);
    },
  );

  it('terminate() skips finally blocks', async () => {
    const w = start('finally');
    await w.id;
    while (Atomics.load(w.flags, 0) === 0) await new Promise((r) => setTimeout(r, 1));
    await w.worker.terminate();
    expect(Atomics.load(w.flags, 1)).toBe(0);
  });

  it('termination never lands between a compare-exchange and the stores after it, only at a call or a back edge', async () => {
    const trials = scaled(40);
    const cut = { plain: 0, call: 0 };
    for (let t = 0; t < trials; t++) {
      for (const mode of ['cas-store', 'cas-call-store'] as const) {
        const w = start(mode);
        await w.id;
        while (Atomics.load(w.flags, 0) === 0) await new Promise((r) => setTimeout(r, 1));
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        await w.worker.terminate();
        if (w.flags[2] === 1 && w.flags[3] === 0) cut[mode === 'cas-store' ? 'plain' : 'call']++;
      }
    }
    console.log(`terminations that cut between the CAS and the store: ${JSON.stringify(cut)} of ${trials} each`);
    expect(cut.plain).toBe(0);
    expect(cut.call).toBeGreaterThan(0); // the same check does see a cut when a call is in between
  }, 600_000);

  it('a store from native code wakes no Atomics.wait sleeper', async () => {
    const w = start('loop');
    const id = await w.id;
    const table = participantTable();
    const word = slotBase(id) + P_STATE;
    const sleeper = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const t = new Int32Array(workerData.buffer);
       parentPort.postMessage('asleep');
       const start = performance.now();
       const r = Atomics.wait(t, workerData.word, 1, 800);
       parentPort.postMessage({ r, ms: performance.now() - start, now: Atomics.load(t, workerData.word) });`,
      { eval: true, workerData: { buffer: table.buffer, word } },
    );
    const messages: unknown[] = [];
    const answered = new Promise<void>((resolve) =>
      sleeper.on('message', (m) => {
        messages.push(m);
        if (messages.length === 2) resolve();
      }),
    );
    while (messages.length === 0) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, 50));
    await w.worker.terminate(); // its hook stores DEAD into the very word the sleeper waits on
    await answered;
    const result = messages[1] as { r: string; ms: number; now: number };
    expect(result.now).toBe(2); // DEAD was stored...
    expect(result.r).toBe('timed-out'); // ...and woke nobody
    expect(result.ms).toBeGreaterThan(700);
    await sleeper.terminate();
  });
});
