/**
 * Kill test: a child process writing with 'sync' durability to a store in tmpfs is killed
 * with SIGKILL at random moments, many times; after each kill the store reopens (the flock
 * is released with the process) and every put and batch the child acknowledged is there.
 * On tmpfs the page cache survives the process, so this tests the software protocol (torn
 * tails, recovery, the lock), not power loss (kv-crash.test.ts covers that on SimMedia).
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from '../helpers/kv-bytes.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-kill.test.ts';

const seed = testSeed();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const child = path.join(root, 'dist', 'test', 'workers', 'kv-kill-child.js');

function runAndKill(file: string, round: number, delayMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, file, String(round)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acked = -1;
    let buffered = '';
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line === 'ready') setTimeout(() => p.kill('SIGKILL'), delayMs);
        else acked = Number(line);
      }
    });
    p.on('error', reject);
    p.on('close', (code, signal) =>
      signal === 'SIGKILL' ? resolve(acked) : reject(new Error(`child exited with ${code} ${signal}`)),
    );
  });
}

describe('kv survives SIGKILL', () => {
  it('every acknowledged sync put and batch is present after each of many kills', async () => {
    const rand = rng(seed);
    const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-kill-'));
    const file = path.join(dir, 'store');
    const acked: number[] = [];
    try {
      for (let round = 0; round < 8; round++) {
        acked.push(await runAndKill(file, round, 5 + Math.floor(rand() * 60)));
        const db = open(file);
        try {
          for (let r = 0; r <= round; r++) {
            for (let i = 0; i <= acked[r]; i++) {
              const got = db.get(`${r}-${i}`);
              const plain = `value of ${r}-${i} `.repeat(1 + (i % 7));
              const again = `again ${i + 4}`;
              // The batch of i+4 runs after put i+4 and before its acknowledgement. An operation
              // is acknowledged when the parent reads its line, and the child can be several
              // operations ahead of that (its synchronous loop never lets a queued stdout write
              // drain before the kill), so any batch past the last acknowledgement may or may
              // not have happened.
              const allowed = i % 5 !== 0 ? [plain] : i + 4 <= acked[r] ? [again] : [plain, again];
              const text = got === undefined ? undefined : Buffer.from(got).toString();
              expect(allowed, `round ${r} key ${i} (acked up to ${acked[r]}) holds ${text?.slice(0, 40)}`).toContain(
                text,
              );
              if (i % 5 === 4) expect(db.has(`${r}-b${i}`)).toBe(true);
            }
          }
          expect(db.stats().lostWakeups).toBe(0);
        } finally {
          db.close();
        }
      }
      expect(acked.some((n) => n > 10)).toBe(true);
    } catch (e) {
      console.error(`kv kill failed with ${replayHint(seed, FILE)}`);
      throw e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
