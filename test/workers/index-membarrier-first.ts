/** Worker: the process's membarrier registration asked for first here (ahead, then waited for); reports what it got. */
import { parentPort } from 'node:worker_threads';
import { EpochDomain, prepareEpochDomains } from '../../src/index/epoch.js';
import { native } from '../../src/native/addon.js';

prepareEpochDomains();
const domain = EpochDomain.create(); // does not wait for the registration; the next line does
parentPort!.postMessage({ registered: native().membarrierRegister(), ordering: domain.pinOrdering() });
domain.close();
