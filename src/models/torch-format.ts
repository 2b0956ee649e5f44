/**
 * Readers for PyTorch checkpoint files, without Python:
 *  - the zip format (torch ≥ 1.6): `<prefix>/data.pkl` plus one entry per storage,
 *    `<prefix>/data/<key>`;
 *  - the legacy format (torch < 1.6, `_use_new_zipfile_serialization=False`): pickled
 *    magic number, protocol version and sys_info, the pickled object whose storages are
 *    persistent ids, a pickled list of storage keys, then each storage as an int64
 *    element count followed by its raw bytes.
 * Tensors come back as {@link LazyTensor}s, read only when asked for.
 */
import { inflateRawSync } from 'node:zlib';
import { WeightsError } from '../core/errors.js';
import { recordingResolver, refuseUnsafe, unpickle, PyObject, type GlobalResolver } from './pickle.js';
import { bf16ToFloat32, copyBytes, halfToFloat32, numel, stridedCopy, type HostTensor } from './tensor-data.js';

/** Element type of a torch storage. */
type StorageDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const STORAGE_TYPES: Record<string, StorageDType> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};
const ELEM: Record<StorageDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** A torch storage: its dtype and a way to get its bytes. */
interface Storage {
  dtype: StorageDType;
  key: string;
  bytes(): Uint8Array;
}

/** A tensor in a checkpoint, decoded on demand. */
export class LazyTensor {
  constructor(
    /** dtype as stored (F16 and F64 are converted to F32 by {@link materialize}). */
    readonly storageDType: StorageDType,
    readonly shape: number[],
    private readonly decode: () => HostTensor,
  ) {}
  /** Decodes the tensor into a C-contiguous host tensor. */
  materialize(): HostTensor {
    return this.decode();
  }
}

function decodeStorage(dtype: StorageDType, b: Uint8Array): Float32Array | Int32Array | BigInt64Array {
  const ab = copyBytes(b, 0, b.length);
  switch (dtype) {
    case 'F32':
      return new Float32Array(ab);
    case 'F64':
      return Float32Array.from(new Float64Array(ab));
    case 'F16':
      return halfToFloat32(new Uint16Array(ab));
    case 'BF16':
      return bf16ToFloat32(new Uint16Array(ab));
    case 'I64':
      return new BigInt64Array(ab);
    case 'I32':
      return new Int32Array(ab);
    case 'I16':
      return Int32Array.from(new Int16Array(ab));
    case 'I8':
      return Int32Array.from(new Int8Array(ab));
    default:
      return Int32Array.from(new Uint8Array(ab));
  }
}

function hostDType(d: StorageDType): HostTensor['dtype'] {
  return d === 'I64' ? 'I64' : d.startsWith('F') || d === 'BF16' ? 'F32' : 'I32';
}

/** The GLOBAL table torch checkpoints need. */
function torchResolver(file: string): GlobalResolver {
  const rebuild = (storage: unknown, offset: unknown, size: unknown, stride: unknown) => {
    if (!(storage as Storage)?.bytes) throw new WeightsError(`${file}: _rebuild_tensor got no storage`);
    const st = storage as Storage;
    const shape = (size as number[]).map(Number);
    const strides = (stride as number[]).map(Number);
    const off = Number(offset);
    return new LazyTensor(st.dtype, shape, () => {
      const bytes = st.bytes();
      const all = decodeStorage(st.dtype, bytes);
      let maxIdx = off;
      for (let d = 0; d < shape.length; d++) maxIdx += (shape[d]! - 1) * strides[d]!;
      if (numel(shape) > 0 && maxIdx >= all.length)
        throw new WeightsError(`${file}: storage ${st.key} has ${all.length} elements but a tensor [${shape}] needs ${maxIdx + 1}; the file is truncated or corrupt`);
      return { dtype: hostDType(st.dtype), shape, data: stridedCopy(all, off, shape, strides) };
    });
  };
  return (module, name) => {
    const q = `${module}.${name}`;
    switch (q) {
      case 'torch._utils._rebuild_tensor_v2':
      case 'torch._utils._rebuild_tensor':
        return (storage, offset, size, stride) => rebuild(storage, offset, size, stride);
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        return (data) => data;
      case 'collections.OrderedDict':
        return (items?: unknown) => new Map(Array.isArray(items) ? (items as [unknown, unknown][]) : []);
      case 'builtins.set':
      case '__builtin__.set':
      case 'builtins.list':
        return (items?: unknown) => (Array.isArray(items) ? [...items] : []);
      case 'torch.device':
        return (d) => String(d);
    }
    if (module === 'torch' && STORAGE_TYPES[name]) return () => ({ storageType: name });
    return undefined;
  };
}

function storageDTypeOf(t: unknown, file: string): StorageDType {
  // GLOBAL torch.FloatStorage resolves to a function; its name is what matters.
  const name =
    typeof t === 'function' ? (t() as { storageType: string }).storageType : t instanceof Object && 'name' in t ? String((t as { name: string }).name) : String(t);
  const d = STORAGE_TYPES[name];
  if (!d) throw new WeightsError(`${file}: unsupported storage type ${name}`);
  return d;
}

/** True when `buf` is a zip archive (torch ≥ 1.6 checkpoints are). */
export function isZip(buf: Uint8Array): boolean {
  return buf.length >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && buf[2] === 0x03 && buf[3] === 0x04;
}

/** True when `buf` starts with a pickle (legacy torch format starts with protocol 2). */
export function isPickle(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x80 && buf[1]! >= 2 && buf[1]! <= 5;
}

/** Entries of a zip archive (stored or deflated, zip64 aware): name → bytes getter. */
export function readZipEntries(buf: Uint8Array, file: string): Map<string, () => Uint8Array> {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65557); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new WeightsError(`${file}: zip end-of-archive record not found; the checkpoint is truncated or corrupt (re-download it)`);
  let count = dv.getUint16(eocd + 10, true);
  let cdOff = dv.getUint32(eocd + 16, true);
  if ((count === 0xffff || cdOff === 0xffffffff) && eocd >= 20 && dv.getUint32(eocd - 20, true) === 0x07064b50) {
    const z64 = Number(dv.getBigUint64(eocd - 20 + 8, true));
    if (dv.getUint32(z64, true) !== 0x06064b50) throw new WeightsError(`${file}: bad zip64 end record; the checkpoint is corrupt`);
    count = Number(dv.getBigUint64(z64 + 32, true));
    cdOff = Number(dv.getBigUint64(z64 + 48, true));
  }
  const out = new Map<string, () => Uint8Array>();
  let p = cdOff;
  for (let k = 0; k < count; k++) {
    if (p + 46 > buf.length || dv.getUint32(p, true) !== 0x02014b50) throw new WeightsError(`${file}: zip central directory is corrupt at entry ${k}`);
    const method = dv.getUint16(p + 10, true);
    let csize = dv.getUint32(p + 20, true);
    let usize = dv.getUint32(p + 24, true);
    const nlen = dv.getUint16(p + 28, true);
    const elen = dv.getUint16(p + 30, true);
    const clen = dv.getUint16(p + 32, true);
    let loff = dv.getUint32(p + 42, true);
    const name = Buffer.from(buf.subarray(p + 46, p + 46 + nlen)).toString('utf8');
    // zip64 extra field: the 0xFFFFFFFF fields follow in order usize, csize, offset.
    let e = p + 46 + nlen;
    const eend = e + elen;
    while (e + 4 <= eend) {
      const id = dv.getUint16(e, true);
      const sz = dv.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        if (usize === 0xffffffff) (usize = Number(dv.getBigUint64(q, true))), (q += 8);
        if (csize === 0xffffffff) (csize = Number(dv.getBigUint64(q, true))), (q += 8);
        if (loff === 0xffffffff) loff = Number(dv.getBigUint64(q, true));
      }
      e += 4 + sz;
    }
    p = eend + clen;
    const off = loff;
    const cs = csize;
    const us = usize;
    out.set(name, () => {
      if (off + 30 > buf.length || dv.getUint32(off, true) !== 0x04034b50) throw new WeightsError(`${file}: zip entry ${name} is corrupt`);
      const start = off + 30 + dv.getUint16(off + 26, true) + dv.getUint16(off + 28, true);
      if (start + cs > buf.length) throw new WeightsError(`${file}: zip entry ${name} runs past the end of the file; the checkpoint is truncated`);
      const raw = buf.subarray(start, start + cs);
      if (method === 0) return raw;
      if (method === 8) {
        const d = inflateRawSync(raw);
        if (d.length !== us) throw new WeightsError(`${file}: zip entry ${name} inflates to ${d.length} bytes, expected ${us}`);
        return new Uint8Array(d.buffer, d.byteOffset, d.length);
      }
      throw new WeightsError(`${file}: zip entry ${name} uses unsupported compression method ${method}`);
    });
  }
  return out;
}

/** Reads a torch ≥ 1.6 zip checkpoint; returns the unpickled object with lazy tensors. */
export function readTorchZip(buf: Uint8Array, file: string): unknown {
  const entries = readZipEntries(buf, file);
  const pkl = [...entries.keys()].find((n) => n.endsWith('/data.pkl') || n === 'data.pkl');
  if (!pkl) throw new WeightsError(`${file}: zip archive has no data.pkl; it is not a PyTorch checkpoint`);
  const prefix = pkl.slice(0, pkl.length - 'data.pkl'.length);
  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: unknown) => {
    const t = pid as unknown[];
    if (!Array.isArray(t) || t[0] !== 'storage') throw new WeightsError(`${file}: unsupported persistent id ${JSON.stringify(pid)}`);
    const key = String(t[2]);
    let s = storages.get(key);
    if (!s) {
      const get = entries.get(`${prefix}data/${key}`);
      if (!get) throw new WeightsError(`${file}: storage ${key} is missing from the archive; the checkpoint is truncated or corrupt`);
      s = { dtype: storageDTypeOf(t[1], file), key, bytes: get };
      storages.set(key, s);
    }
    return s;
  };
  const g = recordingResolver(torchResolver(file));
  const value = unpickle(entries.get(pkl)!(), 0, g.resolve, persistentLoad, file).value;
  refuseUnsafe(value, g.unresolved, file);
  return value;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** Reads a legacy (torch < 1.6) checkpoint. */
export function readTorchLegacy(buf: Uint8Array, file: string): unknown {
  // the header pickles (magic, protocol, sys_info, storage keys) hold plain values: any global in them is refused
  const headerGlobals = recordingResolver(() => undefined);
  const none: GlobalResolver = headerGlobals.resolve;
  const noPid = () => {
    throw new WeightsError(`${file}: unexpected persistent id in the header`);
  };
  let r = unpickle(buf, 0, none, noPid, file);
  if (r.value !== LEGACY_MAGIC) throw new WeightsError(`${file}: not a PyTorch legacy checkpoint (bad magic number)`);
  r = unpickle(buf, r.end, none, noPid, file); // protocol version
  r = unpickle(buf, r.end, none, noPid, file); // sys_info
  const sysInfo = r.value as Map<string, unknown>;
  if (sysInfo instanceof Map && sysInfo.get('little_endian') === false) throw new WeightsError(`${file}: big-endian checkpoints are not supported`);
  const types = new Map<string, StorageDType>();
  const views: { key: string; root: string; offset: number; size: number }[] = [];
  const storages = new Map<string, Storage>();
  const data = new Map<string, Uint8Array>();
  const storageOf = (key: string): Storage => {
    let s = storages.get(key);
    if (!s) {
      const dtype = types.get(key)!;
      s = {
        dtype,
        key,
        bytes: () => {
          const b = data.get(key);
          if (!b) throw new WeightsError(`${file}: storage ${key} has no data; the checkpoint is truncated`);
          return b;
        },
      };
      storages.set(key, s);
    }
    return s;
  };
  const persistentLoad = (pid: unknown) => {
    const t = pid as unknown[];
    if (!Array.isArray(t)) throw new WeightsError(`${file}: unsupported persistent id`);
    if (t[0] === 'module') return new PyObject({ module: 'torch', name: 'Module', qualname: 'torch.Module' } as never, []);
    if (t[0] !== 'storage') throw new WeightsError(`${file}: unsupported persistent id ${String(t[0])}`);
    const key = String(t[2]);
    const dtype = storageDTypeOf(t[1], file);
    types.set(key, dtype);
    const view = t[5] as unknown[] | null | undefined;
    if (view && Array.isArray(view)) {
      // (view_key, offset, view_size): a slice of the root storage.
      const vkey = String(view[0]);
      if (!storages.has(vkey)) {
        views.push({ key: vkey, root: key, offset: Number(view[1]), size: Number(view[2]) });
        const root = storageOf(key);
        storages.set(vkey, {
          dtype,
          key: vkey,
          bytes: () => {
            const v = views.find((x) => x.key === vkey)!;
            return root.bytes().subarray(v.offset * ELEM[dtype], (v.offset + v.size) * ELEM[dtype]);
          },
        });
      }
      return storages.get(vkey);
    }
    return storageOf(key);
  };
  const g = recordingResolver(torchResolver(file));
  r = unpickle(buf, r.end, g.resolve, persistentLoad, file);
  const obj = r.value;
  refuseUnsafe(obj, g.unresolved, file);
  r = unpickle(buf, r.end, none, noPid, file);
  const keys = r.value as unknown[];
  refuseUnsafe({ sys_info: sysInfo, storage_keys: keys }, headerGlobals.unresolved, file);
  if (!Array.isArray(keys)) throw new WeightsError(`${file}: legacy checkpoint has no storage key list`);
  let p = r.end;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const k of keys) {
    const key = String(k);
    const dtype = types.get(key);
    if (!dtype) throw new WeightsError(`${file}: storage ${key} listed but never referenced`);
    if (p + 8 > buf.length) throw new WeightsError(`${file}: checkpoint ends before storage ${key}; the file is truncated (re-download it)`);
    const n = Number(dv.getBigInt64(p, true));
    p += 8;
    const len = n * ELEM[dtype];
    if (p + len > buf.length)
      throw new WeightsError(`${file}: storage ${key} needs ${len} bytes but only ${buf.length - p} remain; the file is truncated (re-download it)`);
    data.set(key, buf.subarray(p, p + len));
    p += len;
  }
  return obj;
}
