/**
 * A minimal WebAssembly binary encoder: just enough to write the entry-lock fast path
 * (wasm-grab.ts) as readable code in the repository instead of a binary blob or a WAT
 * compiler dependency. One module, i32 functions only, one imported shared memory.
 *
 * Format: the WebAssembly core spec, section 5 (binary format) and the threads proposal
 * (shared memory limits flag 0x03, the 0xFE atomic opcodes), both shipped in Node 20.
 */

/** Opcodes used (core spec 5.4; atomics: threads proposal, prefix 0xFE). */
export const enum Op {
  unreachable = 0x00,
  block = 0x02,
  loop = 0x03,
  if_ = 0x04,
  else_ = 0x05,
  end = 0x0b,
  br = 0x0c,
  br_if = 0x0d,
  return_ = 0x0f,
  drop = 0x1a,
  select = 0x1b,
  local_get = 0x20,
  local_set = 0x21,
  local_tee = 0x22,
  i32_load = 0x28,
  i32_load8_u = 0x2d,
  i32_const = 0x41,
  i32_eqz = 0x45,
  i32_eq = 0x46,
  i32_ne = 0x47,
  i32_lt_u = 0x49,
  i32_gt_u = 0x4b,
  i32_le_u = 0x4d,
  i32_ge_u = 0x4f,
  i32_ctz = 0x68,
  i32_add = 0x6a,
  i32_sub = 0x6b,
  i32_mul = 0x6c,
  i32_and = 0x71,
  i32_or = 0x72,
  i32_xor = 0x73,
  i32_shl = 0x74,
  i32_shr_u = 0x76,
}

/** Atomic opcodes (after the 0xFE prefix). */
export const enum AtomicOp {
  i32_load = 0x10,
  i32_store = 0x17,
  i32_rmw_add = 0x1e,
  i32_rmw_or = 0x33,
  i32_rmw_cmpxchg = 0x48,
}

/**
 * The JS API of WebAssembly, typed here: the project's lib (ES2024, no DOM) has no
 * WebAssembly namespace. Only what the index uses.
 */
export interface WasmMemory {
  /** A SharedArrayBuffer over the whole current memory; a new object after growth. */
  readonly buffer: SharedArrayBuffer;
  /** Grow by `pages` 64 KiB pages; returns the old size in pages; throws RangeError past the maximum. */
  grow(pages: number): number;
}
export interface WasmApi {
  Memory: new (desc: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}
export const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
export const WASM_PAGE_BYTES = 65536;

export function isWasmMemory(x: unknown): x is WasmMemory {
  return x instanceof (globalThis as unknown as { WebAssembly: { Memory: new () => object } }).WebAssembly.Memory;
}

const I32 = 0x7f;
const BLOCK_VOID = 0x40;

export function uleb(n: number, out: number[]): void {
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
}

export function sleb(n: number, out: number[]): void {
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

/** Body of one function: every parameter and local is an i32, the result one i32. */
export class FnBuilder {
  readonly code: number[] = [];
  /** i32 locals declared after the parameters */
  locals = 0;

  constructor(
    readonly name: string,
    readonly params: number,
  ) {}

  /** A new i32 local; returns its index. */
  local(): number {
    return this.params + this.locals++;
  }

  op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }
  get(i: number): this {
    this.code.push(Op.local_get);
    uleb(i, this.code);
    return this;
  }
  set(i: number): this {
    this.code.push(Op.local_set);
    uleb(i, this.code);
    return this;
  }
  tee(i: number): this {
    this.code.push(Op.local_tee);
    uleb(i, this.code);
    return this;
  }
  const(n: number): this {
    this.code.push(Op.i32_const);
    sleb(n, this.code);
    return this;
  }
  /** Plain i32 load of the byte address on the stack (+ offset bytes). */
  load(offset = 0): this {
    this.code.push(Op.i32_load, 2);
    uleb(offset, this.code);
    return this;
  }
  load8(offset = 0): this {
    this.code.push(Op.i32_load8_u, 0);
    uleb(offset, this.code);
    return this;
  }
  /** Sequentially consistent i32 load (a plain mov on x86; ldar on arm64). */
  atomicLoad(offset = 0): this {
    this.code.push(0xfe, AtomicOp.i32_load, 2);
    uleb(offset, this.code);
    return this;
  }
  atomicStore(offset = 0): this {
    this.code.push(0xfe, AtomicOp.i32_store, 2);
    uleb(offset, this.code);
    return this;
  }
  atomicOr(offset = 0): this {
    this.code.push(0xfe, AtomicOp.i32_rmw_or, 2);
    uleb(offset, this.code);
    return this;
  }
  atomicAdd(offset = 0): this {
    this.code.push(0xfe, AtomicOp.i32_rmw_add, 2);
    uleb(offset, this.code);
    return this;
  }
  /** [addr, expected, replacement] -> the value seen (lock cmpxchg on x86). */
  cmpxchg(offset = 0): this {
    this.code.push(0xfe, AtomicOp.i32_rmw_cmpxchg, 2);
    uleb(offset, this.code);
    return this;
  }
  block(): this {
    return this.op(Op.block, BLOCK_VOID);
  }
  loop(): this {
    return this.op(Op.loop, BLOCK_VOID);
  }
  if(): this {
    return this.op(Op.if_, BLOCK_VOID);
  }
  else(): this {
    return this.op(Op.else_);
  }
  end(): this {
    return this.op(Op.end);
  }
  br(depth: number): this {
    return this.op(Op.br, depth);
  }
  brIf(depth: number): this {
    return this.op(Op.br_if, depth);
  }
  /** return n */
  ret(n: number): this {
    return this.const(n).op(Op.return_);
  }
}

function section(id: number, body: number[], out: number[]): void {
  out.push(id);
  uleb(body.length, out);
  out.push(...body);
}

function name(s: string, out: number[]): void {
  const b = Buffer.from(s, 'utf8');
  uleb(b.length, out);
  out.push(...b);
}

/**
 * A module importing `env.memory` (shared, `minPages`..`maxPages` 64 KiB pages) and exporting
 * each function under its name.
 */
export function encodeModule(fns: FnBuilder[], minPages: number, maxPages: number): Uint8Array {
  const out = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const types: number[] = [];
  uleb(fns.length, types);
  for (const f of fns) {
    types.push(0x60);
    uleb(f.params, types);
    for (let i = 0; i < f.params; i++) types.push(I32);
    types.push(1, I32);
  }
  section(1, types, out);
  const imports: number[] = [1];
  name('env', imports);
  name('memory', imports);
  imports.push(0x02, 0x03); // memory, limits: min + max, shared
  uleb(minPages, imports);
  uleb(maxPages, imports);
  section(2, imports, out);
  const funcs: number[] = [];
  uleb(fns.length, funcs);
  fns.forEach((_, i) => uleb(i, funcs));
  section(3, funcs, out);
  const exports: number[] = [];
  uleb(fns.length, exports);
  fns.forEach((f, i) => {
    name(f.name, exports);
    exports.push(0x00);
    uleb(i, exports);
  });
  section(7, exports, out);
  const code: number[] = [];
  uleb(fns.length, code);
  for (const f of fns) {
    const body: number[] = [];
    const nLocals = f.locals;
    if (nLocals > 0) {
      body.push(1);
      uleb(nLocals, body);
      body.push(I32);
    } else body.push(0);
    body.push(...f.code, Op.end);
    uleb(body.length, code);
    code.push(...body);
  }
  section(10, code, out);
  return Uint8Array.from(out);
}
