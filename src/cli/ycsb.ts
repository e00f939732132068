/**
 * YCSB workloads (Cooper et al., SoCC 2010) and the fill/read/scan micro workloads: the
 * operation mix, and the key choosers (scrambled zipfian with theta 0.99, uniform, latest).
 * Keys are 'user' + 12 digits so their order is numeric order; inserts take new numbers
 * from a counter shared by all workers.
 */
export type WorkloadName = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'fill' | 'read' | 'scan';
export const WORKLOADS: readonly WorkloadName[] = ['a', 'b', 'c', 'd', 'e', 'f', 'fill', 'read', 'scan'];
export type Op = 'read' | 'update' | 'insert' | 'scan' | 'rmw';
export type Distribution = 'zipfian' | 'uniform';

interface Mix {
  ops: Array<[Op, number]>;
  /** 'latest' reads favour recently inserted keys (workload D) */
  chooser: 'request' | 'latest' | 'uniform';
}

export const MIXES: Record<WorkloadName, Mix> = {
  a: {
    ops: [
      ['read', 0.5],
      ['update', 0.5],
    ],
    chooser: 'request',
  },
  b: {
    ops: [
      ['read', 0.95],
      ['update', 0.05],
    ],
    chooser: 'request',
  },
  c: { ops: [['read', 1]], chooser: 'request' },
  d: {
    ops: [
      ['read', 0.95],
      ['insert', 0.05],
    ],
    chooser: 'latest',
  },
  e: {
    ops: [
      ['scan', 0.95],
      ['insert', 0.05],
    ],
    chooser: 'request',
  },
  f: {
    ops: [
      ['read', 0.5],
      ['rmw', 0.5],
    ],
    chooser: 'request',
  },
  fill: { ops: [['insert', 1]], chooser: 'uniform' },
  read: { ops: [['read', 1]], chooser: 'uniform' },
  scan: { ops: [['scan', 1]], chooser: 'uniform' },
};

/** YCSB's default: scans of 1..100 records, uniformly. */
export const MAX_SCAN_LENGTH = 100;

export function keyOf(n: number): string {
  return `user${String(n).padStart(12, '0')}`;
}

/** Gray et al.'s zipfian generator over [0, items), as in YCSB's ZipfianGenerator. */
export class Zipfian {
  private readonly zetan: number;
  private readonly alpha: number;
  private readonly eta: number;
  private readonly zeta2: number;
  constructor(
    private readonly items: number,
    private readonly random: () => number,
    private readonly theta = 0.99,
  ) {
    let z = 0;
    for (let i = 1; i <= items; i++) z += 1 / i ** theta;
    this.zetan = z;
    this.zeta2 = 1 + 1 / 2 ** theta;
    this.alpha = 1 / (1 - theta);
    this.eta = (1 - (2 / items) ** (1 - theta)) / (1 - this.zeta2 / this.zetan);
  }
  next(): number {
    const u = this.random();
    const uz = u * this.zetan;
    if (uz < 1) return 0;
    if (uz < this.zeta2) return 1;
    return Math.min(this.items - 1, Math.floor(this.items * (this.eta * u - this.eta + 1) ** this.alpha));
  }
}

/** FNV-1a of the rank: YCSB scrambles zipfian ranks so the hot keys are spread over the key space. */
export function scramble(rank: number, items: number): number {
  let h = 0x811c9dc5;
  for (let x = rank, i = 0; i < 6; i++, x = Math.floor(x / 256)) h = Math.imul(h ^ (x & 0xff), 0x01000193) >>> 0;
  return h % items;
}

export class OpChooser {
  private readonly zipf: Zipfian | undefined;
  constructor(
    private readonly workload: WorkloadName,
    private readonly distribution: Distribution,
    private readonly loadedKeys: number,
    private readonly random: () => number,
    zipf?: Zipfian,
  ) {
    this.zipf = distribution === 'zipfian' ? (zipf ?? new Zipfian(loadedKeys, random)) : undefined;
  }
  op(): Op {
    let u = this.random();
    for (const [op, p] of MIXES[this.workload].ops) {
      if (u < p) return op;
      u -= p;
    }
    return MIXES[this.workload].ops[0][0];
  }
  /** A key number to read or update, given how many keys exist now. */
  existing(keyCount: number): number {
    const mix = MIXES[this.workload];
    if (mix.chooser === 'latest') {
      const back = this.zipf !== undefined ? this.zipf.next() : Math.floor(this.random() * this.loadedKeys);
      return Math.max(0, keyCount - 1 - back);
    }
    if (mix.chooser === 'uniform' || this.zipf === undefined) return Math.floor(this.random() * keyCount);
    return scramble(this.zipf.next(), this.loadedKeys);
  }
  scanLength(): number {
    return 1 + Math.floor(this.random() * MAX_SCAN_LENGTH);
  }
}
