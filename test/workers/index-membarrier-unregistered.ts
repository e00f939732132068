/**
 * Child process: the process's membarrier registration made to fail before anything starts it;
 * a domain created while the kernel offers membarrier pins asymmetrically, so each advance's
 * barrier must be the global one. Retires and collects until released; prints what it saw.
 */
import { EpochDomain } from '../../src/index/epoch.js';
import { native } from '../../src/native/addon.js';

const failing = native().membarrierRegisterFailing();

const domain = EpochDomain.create();
const released: number[] = [];
domain.registerReclaimer(1, (payload) => released.push(payload));
for (let i = 0; i < 8; i++) {
  domain.pin();
  domain.retire(1, i);
  domain.unpin();
}
for (let i = 0; i < 4 && released.length < 8; i++) domain.collect();
process.stdout.write(
  JSON.stringify({
    failing,
    offered: native().membarrierOffered(),
    ordering: domain.pinOrdering(),
    registered: native().membarrierRegister(),
    barrier: native().membarrier(),
    released: released.length,
    epoch: domain.stats().epoch,
  }),
);
domain.close();
