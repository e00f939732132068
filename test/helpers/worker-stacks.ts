/**
 * Where is a stuck worker? The JS stack of running worker threads, taken through the
 * in-process inspector (NodeWorker domain -> each worker's Debugger.pause), for test
 * harnesses to print on a timeout instead of a bare "timed out". Works while the worker
 * spins in a loop or sleeps in Atomics.wait (the pause is delivered as a V8 interrupt).
 * No port is opened; the worker is resumed before this returns.
 */
import { Session } from 'node:inspector';

interface WorkerMessage {
  id?: number;
  method?: string;
  params?: {
    callFrames?: Array<{
      functionName: string;
      location: { scriptId: string; lineNumber: number; columnNumber: number };
    }>;
    scriptId?: string;
    url?: string;
  };
}

/** threadId -> stack text (innermost frame first) for each of `threadIds` that answered within timeoutMs. */
export async function workerStacks(threadIds: readonly number[], timeoutMs = 3000): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  if (threadIds.length === 0) return out;
  const session = new Session();
  session.connect();
  const post = (method: string, params: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
  let next = 1;
  let finish = (): void => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const urls = new Map<string, Map<string, string>>(); // session -> scriptId -> url
  const threadOf = new Map<string, number>(); // inspector session id -> thread id
  const send = (sessionId: string, method: string, params: object = {}): Promise<unknown> =>
    post('NodeWorker.sendMessageToWorker', {
      sessionId,
      message: JSON.stringify({ id: next++, method, params }),
    }).catch(() => undefined);
  session.on(
    'NodeWorker.attachedToWorker',
    (m: { params: { sessionId: string; workerInfo: { workerId: string } } }) => {
      const { sessionId, workerInfo } = m.params;
      const threadId = Number(workerInfo.workerId);
      if (!threadIds.includes(threadId)) return;
      threadOf.set(sessionId, threadId);
      urls.set(sessionId, new Map());
      void send(sessionId, 'Debugger.enable').then(() => send(sessionId, 'Debugger.pause'));
    },
  );
  session.on('NodeWorker.receivedMessageFromWorker', (m: { params: { sessionId: string; message: string } }) => {
    const { sessionId, message } = m.params;
    const threadId = threadOf.get(sessionId);
    if (threadId === undefined) return;
    const msg = JSON.parse(message) as WorkerMessage;
    if (msg.method === 'Debugger.scriptParsed' && msg.params?.scriptId !== undefined)
      urls.get(sessionId)!.set(msg.params.scriptId, msg.params.url ?? '');
    if (msg.method !== 'Debugger.paused' || out.has(threadId)) return;
    const names = urls.get(sessionId)!;
    const frames = (msg.params?.callFrames ?? []).map((f) => {
      const url = (names.get(f.location.scriptId) ?? `script ${f.location.scriptId}`).replace(/^file:\/\//, '');
      return `    at ${f.functionName || '(anonymous)'} (${url}:${f.location.lineNumber + 1}:${f.location.columnNumber + 1})`;
    });
    out.set(threadId, frames.join('\n'));
    void send(sessionId, 'Debugger.resume').then(() => send(sessionId, 'Debugger.disable'));
    if (out.size === threadIds.length) finish();
  });
  const timer = setTimeout(finish, timeoutMs);
  try {
    await post('NodeWorker.enable', { waitForDebuggerOnStart: false });
    await done;
  } finally {
    clearTimeout(timer);
    await post('NodeWorker.disable', {}).catch(() => undefined);
    session.disconnect();
  }
  return out;
}
