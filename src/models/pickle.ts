/**
 * A minimal Python pickle virtual machine (protocols 0–5), enough for PyTorch
 * checkpoints: it builds dicts, lists, tuples and scalars, resolves GLOBALs through a
 * caller-supplied table (`_rebuild_tensor_v2`, `OrderedDict`, ...) and hands
 * persistent ids (torch storages) to a callback. Unknown classes become inert
 * {@link PyObject}s instead of failing, so a checkpoint that also pickles an
 * argparse Namespace or optimizer state still reads.
 */
import { WeightsError } from '../core/errors.js';

/** A reference to a Python global (module.name) that the table did not resolve. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of an unresolved class: constructor args and BUILD state, kept for inspection. */
export class PyObject {
  state: unknown = undefined;
  constructor(
    readonly cls: PyGlobal,
    readonly args: unknown[],
  ) {}
}

/** A Python dict: string/number keys in insertion order (Map). */
export type PyDict = Map<unknown, unknown>;

/** Resolves `module.name` to a callable; return undefined to get a {@link PyGlobal}. */
export type GlobalResolver = (module: string, name: string) => ((...args: unknown[]) => unknown) | undefined;

const MARK = Symbol('mark');

/**
 * Unpickles one object from `buf` starting at `offset`.
 * @returns the object and the offset just after its STOP opcode
 */
export function unpickle(
  buf: Uint8Array,
  offset: number,
  resolve: GlobalResolver,
  persistentLoad: (pid: unknown) => unknown,
  file = '<pickle>',
): { value: unknown; end: number } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = offset;
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  const fail = (msg: string): never => {
    throw new WeightsError(`${file}: cannot read pickle at byte ${p}: ${msg}; the file is truncated, corrupt, or not a PyTorch checkpoint`);
  };
  const need = (n: number) => {
    if (p + n > buf.length) fail(`needs ${n} more bytes but the file ends`);
  };
  const u8 = () => (need(1), buf[p++]!);
  const u16 = () => (need(2), (p += 2), dv.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), dv.getUint32(p - 4, true));
  const i32 = () => (need(4), (p += 4), dv.getInt32(p - 4, true));
  const u64 = () => (need(8), (p += 8), Number(dv.getBigUint64(p - 8, true)));
  const bytes = (n: number) => (need(n), (p += n), buf.subarray(p - n, p));
  const str = (n: number) => Buffer.from(bytes(n)).toString('utf8');
  const line = () => {
    const start = p;
    while (p < buf.length && buf[p] !== 0x0a) p++;
    if (p >= buf.length) fail('unterminated line');
    return Buffer.from(buf.subarray(start, p++)).toString('latin1');
  };
  const popMark = (): unknown[] => {
    const items: unknown[] = [];
    for (;;) {
      if (!stack.length) fail('MARK not found');
      const v = stack.pop();
      if (v === MARK) break;
      items.push(v);
    }
    return items.reverse();
  };
  const top = () => (stack.length ? stack[stack.length - 1] : fail('stack underflow'));
  const pop = () => (stack.length ? stack.pop() : fail('stack underflow'));
  const key = (k: unknown) => (Array.isArray(k) ? JSON.stringify(k) : k);
  const setItems = (d: unknown, kv: unknown[]) => {
    if (d instanceof Map) for (let i = 0; i < kv.length; i += 2) d.set(key(kv[i]), kv[i + 1]);
    else if (d instanceof PyObject) {
      // dict subclass without a resolver: keep items as state
      const m = (d.state instanceof Map ? d.state : (d.state = new Map())) as Map<unknown, unknown>;
      for (let i = 0; i < kv.length; i += 2) m.set(key(kv[i]), kv[i + 1]);
    }
  };
  const makeGlobal = (module: string, name: string) => resolve(module, name) ?? new PyGlobal(module, name);
  const call = (f: unknown, args: unknown[]) => {
    if (typeof f === 'function') return f(...args);
    if (f instanceof PyGlobal) return new PyObject(f, args);
    return fail(`cannot call ${typeof f}`);
  };
  const longFrom = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return { value: pop(), end: p };
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x8f: // EMPTY_SET
        stack.push([]);
        break;
      case 0x74: // TUPLE
      case 0x6c: // LIST
      case 0x91: // FROZENSET
        stack.push(popMark());
        break;
      case 0x64: {
        // DICT
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x85:
        stack.push([pop()]);
        break;
      case 0x86: {
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        (top() as unknown[]).push(v);
        break;
      }
      case 0x65: // APPENDS
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const l = top();
        if (Array.isArray(l)) l.push(...items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: {
        // GET
        const i = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line());
        if (!memo.has(i)) fail(`memo key ${i} missing`);
        stack.push(memo.get(i));
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        stack.push(makeGlobal(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop() as string;
        stack.push(makeGlobal(pop() as string, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop() as unknown[];
        stack.push(call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop() as unknown[];
        stack.push(call(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop();
        const args = pop() as unknown[];
        stack.push(call(pop(), args));
        break;
      }
      case 0x6f: {
        // OBJ
        const items = popMark();
        stack.push(call(items[0], items.slice(1)));
        break;
      }
      case 0x69: {
        // INST
        const g = makeGlobal(line(), line());
        stack.push(call(g, popMark()));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x50: // PERSID
        stack.push(persistentLoad(line()));
        break;
      case 0x4a:
        stack.push(i32());
        break;
      case 0x4b:
        stack.push(u8());
        break;
      case 0x4d:
        stack.push(u16());
        break;
      case 0x49: {
        // INT
        const s = line();
        stack.push(s === '00' ? false : s === '01' ? true : Number(s));
        break;
      }
      case 0x4c: {
        // LONG
        const s = line().replace(/L$/, '');
        const b = BigInt(s);
        stack.push(b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b);
        break;
      }
      case 0x8a:
        stack.push(longFrom(bytes(u8())));
        break;
      case 0x8b:
        stack.push(longFrom(bytes(u32())));
        break;
      case 0x47: {
        need(8);
        p += 8;
        stack.push(dv.getFloat64(p - 8, false));
        break;
      }
      case 0x46:
        stack.push(Number(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64()));
        break;
      case 0x56: // UNICODE
        stack.push(line());
        break;
      case 0x54: // BINSTRING
        stack.push(Buffer.from(bytes(i32())).toString('latin1'));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(Buffer.from(bytes(u8())).toString('latin1'));
        break;
      case 0x53: {
        // STRING
        const s = line();
        stack.push(s.slice(1, -1));
        break;
      }
      case 0x42: // BINBYTES
        stack.push(bytes(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()));
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      default:
        fail(`unknown opcode 0x${op.toString(16)}`);
    }
  }
}

/**
 * Globals a checkpoint may name without being refused although dcd's resolvers do not build
 * them: inert records that research checkpoints carry beside their weights (DINO's full
 * checkpoints pickle their `argparse.Namespace`; numpy scalars hold a best accuracy) and the
 * parts of PyTorch's weights_only allow-list (torch/_weights_only_unpickler.py) that have no
 * resolver here. They stay {@link PyObject}s: data to look at, never code to run.
 */
const INERT_GLOBALS = new Set([
  'argparse.Namespace',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
  'numpy.dtype',
  'collections.Counter',
  'collections.defaultdict',
  'builtins.frozenset',
  'builtins.bytearray',
  'builtins.slice',
  '_codecs.encode',
  'torch.Size',
  'torch.nn.parameter.Parameter',
  'torch.serialization._get_layout',
]);

/**
 * Wraps `resolve` so that every global it leaves unresolved is recorded; {@link refuseUnsafe}
 * then refuses the pickle if one of them is outside {@link INERT_GLOBALS}. The unpickler never
 * runs what a pickle names (an unresolved global is an inert {@link PyGlobal}), but a file that
 * names `posix.system` or `builtins.eval` is not a checkpoint of weights: like PyTorch's
 * `weights_only=True` loader, dcd refuses it rather than load around it.
 */
export function recordingResolver(resolve: GlobalResolver): { resolve: GlobalResolver; unresolved: Set<string> } {
  const unresolved = new Set<string>();
  return {
    unresolved,
    resolve: (module, name) => {
      const f = resolve(module, name);
      if (!f) unresolved.add(`${module}.${name}`);
      return f;
    },
  };
}

/**
 * Throws a WeightsError when `unresolved` names a global outside the allow-list, naming each
 * with the key(s) of `tree` where it sits (`(not under any key)` when the pickle dropped it).
 */
export function refuseUnsafe(tree: unknown, unresolved: ReadonlySet<string>, file: string): void {
  const bad = [...unresolved].filter((q) => !INERT_GLOBALS.has(q));
  if (!bad.length) return;
  const where = new Map<string, string[]>(bad.map((q) => [q, []]));
  const seen = new Set<unknown>();
  const walk = (v: unknown, p: string, depth: number) => {
    if (depth > 16 || v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    const q = v instanceof PyGlobal ? v.qualname : v instanceof PyObject ? v.cls.qualname : undefined;
    if (q && where.has(q)) where.get(q)!.push(p || '(top level)');
    if (v instanceof Map) for (const [k, x] of v) walk(x, p ? `${p}.${String(k)}` : String(k), depth + 1);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, p ? `${p}.${i}` : String(i), depth + 1));
    else if (v instanceof PyObject) {
      v.args.forEach((x, i) => walk(x, `${p}(arg ${i})`, depth + 1));
      walk(v.state, p, depth + 1);
    }
  };
  walk(tree, '', 0);
  const list = bad.map((q) => `${q} at ${where.get(q)!.length ? where.get(q)!.slice(0, 5).map((k) => `key ${k}`).join(', ') : '(not under any key)'}`);
  throw new WeightsError(
    `${file}: refused: the pickle names Python global(s) outside the allow-list of a weights file (as PyTorch's weights_only=True loader refuses them): ${list.join('; ')}. Nothing was run or loaded. A checkpoint needs none of these: save the state dict alone (torch.save(model.state_dict(), PATH)) or export safetensors, from a source you trust.`,
  );
}
