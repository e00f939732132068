/**
 * Worker for test/kv/msgpack-records.test.ts: runs the record reader against msgpackr
 * (test/helpers/msgpack-records-check.ts) in a thread of its own, where a break switch set in
 * its environment is read when the reader's module loads. Posts the RecordsCheck.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { checkRecordsAgainstMsgpackr } from '../helpers/msgpack-records-check.js';

const { seed, runs } = workerData as { seed: number; runs: number };
parentPort!.postMessage(checkRecordsAgainstMsgpackr(seed, runs));
