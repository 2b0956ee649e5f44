/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header `{name: {dtype, shape, data_offsets}}`
 * with optional `__metadata__`, then the raw little-endian tensor bytes.
 */
import { readFile } from 'node:fs/promises';
import { WeightsError } from '../core/errors.js';
import { atomicWriteFile } from '../core/fsutil.js';
import { bf16ToFloat32, copyBytes, halfToFloat32, numel, type HostTensor } from './tensor-data.js';

/** A tensor as given to {@link writeSafetensors}. */
export interface SafetensorsInput {
  dtype: 'F32' | 'I64' | 'I32';
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array;
}

const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/**
 * Writes tensors (and string metadata) as a safetensors file that appears only when
 * complete. Keys are written in sorted order.
 */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, SafetensorsInput>,
  metadata?: Record<string, string>,
): Promise<void> {
  await atomicWriteFile(file, encodeSafetensors(tensors, metadata));
}

/** The bytes of a safetensors file (see {@link writeSafetensors}). */
export function encodeSafetensors(tensors: Record<string, SafetensorsInput>, metadata?: Record<string, string>): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const want = BYTES[t.dtype]! * numel(t.shape);
    if (t.data.byteLength !== want)
      throw new WeightsError(`writeSafetensors: tensor ${name} has ${t.data.byteLength} bytes, shape [${t.shape}] ${t.dtype} needs ${want}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + want] };
    off += want;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned.
  const pad = (8 - ((8 + Buffer.byteLength(json)) % 8)) % 8;
  json += ' '.repeat(pad);
  const hbytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + hbytes.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const name of names) {
    const d = tensors[name]!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), p);
    p += d.byteLength;
  }
  return out;
}

/**
 * Reads a safetensors file. Float tensors of any width come back as F32, I64 and I32
 * as themselves; other integer types as I32. Errors name the file and what is wrong.
 */
export async function readSafetensors(file: string): Promise<{ tensors: Map<string, HostTensor>; metadata: Record<string, string> }> {
  const buf = new Uint8Array(await readFile(file));
  return decodeSafetensors(buf, file);
}

/**
 * True when `buf` starts like a safetensors file (a plausible header length, then `{`), even
 * when it is cut short: {@link decodeSafetensors} then says it is truncated.
 */
export function looksLikeSafetensors(buf: Uint8Array): boolean {
  if (buf.length < 10) return false;
  const n = new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true);
  return n > 1n && n < BigInt(MAX_HEADER) && buf[8] === 0x7b;
}

/** The safetensors format caps its JSON header at 100 MB. */
const MAX_HEADER = 100_000_000;

/** What to do about a file cut short. */
const TRUNCATED_FIX =
  'An interrupted download or copy? Download it again (`dcd weights fetch NAME` resumes and checks sha256), or copy or export it again.';

/** One tensor of a checked safetensors header. */
interface HeaderEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * The header's tensors, checked as the safetensors format requires (its Rust reader's
 * `validate`): every entry names a known dtype, a shape of non-negative integers and
 * integer `data_offsets` [begin, end] with end − begin = the shape's bytes; sorted by
 * offset, the tensors tile the data exactly (the first begins at 0, each begins where
 * the previous ends, no overlap, no hole, and the last ends at the end of the file), and
 * `__metadata__` maps strings to strings. A file cut short is reported as truncated.
 */
function checkHeader(header: unknown, base: number, fileBytes: number, file: string): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  const dataBytes = fileBytes - base;
  const corrupt = (what: string) => new WeightsError(`${file}: safetensors header: ${what}; the file is corrupt: export or download it again`);
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw corrupt('expected a JSON object of tensors');
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (info === null || typeof info !== 'object' || Array.isArray(info)) throw corrupt('__metadata__ is not an object');
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw corrupt(`__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const t = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (t === null || typeof t !== 'object') throw corrupt(`tensor ${name} is not an object`);
    const dtype = String(t.dtype);
    const size = BYTES[dtype];
    if (size === undefined) throw new WeightsError(`${file}: tensor ${name} has unsupported dtype ${dtype} (dcd reads ${Object.keys(BYTES).join(', ')})`);
    const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    if (!Array.isArray(t.shape) || !t.shape.every(isCount)) throw corrupt(`tensor ${name} has shape ${JSON.stringify(t.shape)}, expected an array of integers ≥ 0`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !isCount(off[0]) || !isCount(off[1]) || off[1] < off[0])
      throw corrupt(`tensor ${name} has data_offsets ${JSON.stringify(off)}, expected [begin, end] with 0 ≤ begin ≤ end`);
    const shape = t.shape as number[];
    const want = size * shape.reduce((a, b) => a * b, 1);
    if (off[1] - off[0] !== want)
      throw corrupt(`tensor ${name} (${dtype} [${shape}]) spans bytes ${off[0]}..${off[1]} (${off[1] - off[0]} bytes), but its shape needs ${want}`);
    entries.push({ name, dtype, shape, begin: off[0], end: off[1] });
  }
  const need = Math.max(0, ...entries.map((t) => t.end));
  if (need > dataBytes) {
    const cut = entries.filter((t) => t.end > dataBytes).sort((a, b) => a.begin - b.begin)[0]!.name;
    throw new WeightsError(
      `${file}: truncated safetensors file: ${fileBytes} of its ${base + need} bytes (${((100 * fileBytes) / (base + need)).toFixed(1)}%); tensor ${cut} and the ones after it are cut off. ${TRUNCATED_FIX}`,
    );
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const t of sorted) {
    if (t.begin < at) throw corrupt(`tensor ${t.name} (bytes ${t.begin}..${t.end}) overlaps the tensor before it (which ends at ${at})`);
    if (t.begin > at) throw corrupt(`bytes ${at}..${t.begin} before tensor ${t.name} belong to no tensor`);
    at = t.end;
  }
  if (at !== dataBytes) throw corrupt(`the tensors end at data byte ${at}, but the file has ${dataBytes} data bytes (${dataBytes - at} left over)`);
  return { entries, metadata };
}

/** Parses safetensors bytes; `file` only names the source in errors. */
export function decodeSafetensors(buf: Uint8Array, file = '<buffer>'): { tensors: Map<string, HostTensor>; metadata: Record<string, string> } {
  if (buf.length < 8) throw new WeightsError(`${file}: too short for a safetensors file (${buf.length} bytes); the file is truncated or not safetensors`);
  const hlen = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
  if (hlen <= 0 || hlen >= MAX_HEADER) throw new WeightsError(`${file}: safetensors header length ${hlen} is implausible; the file is not safetensors (or is corrupt)`);
  if (8 + hlen > buf.length)
    throw new WeightsError(`${file}: truncated safetensors file: its ${hlen}-byte header runs past the end of the file (${buf.length} bytes). ${TRUNCATED_FIX}`);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(buf.subarray(8, 8 + hlen)).toString('utf8'));
  } catch (e) {
    throw new WeightsError(`${file}: safetensors header is not valid JSON (${(e as Error).message}); the file is corrupt: export or download it again`);
  }
  const base = 8 + hlen;
  const { entries, metadata } = checkHeader(header, base, buf.length, file);
  const tensors = new Map<string, HostTensor>();
  for (const { name, dtype, shape, begin: b, end: e } of entries) {
    const ab = copyBytes(buf, base + b, e - b);
    let t: HostTensor;
    switch (dtype) {
      case 'F32':
        t = { dtype: 'F32', shape, data: new Float32Array(ab) };
        break;
      case 'F64':
        t = { dtype: 'F32', shape, data: Float32Array.from(new Float64Array(ab)) };
        break;
      case 'F16':
        t = { dtype: 'F32', shape, data: halfToFloat32(new Uint16Array(ab)) };
        break;
      case 'BF16':
        t = { dtype: 'F32', shape, data: bf16ToFloat32(new Uint16Array(ab)) };
        break;
      case 'I64':
        t = { dtype: 'I64', shape, data: new BigInt64Array(ab) };
        break;
      case 'I32':
        t = { dtype: 'I32', shape, data: new Int32Array(ab) };
        break;
      case 'I16':
        t = { dtype: 'I32', shape, data: Int32Array.from(new Int16Array(ab)) };
        break;
      case 'I8':
        t = { dtype: 'I32', shape, data: Int32Array.from(new Int8Array(ab)) };
        break;
      default:
        t = { dtype: 'I32', shape, data: Int32Array.from(new Uint8Array(ab)) };
    }
    tensors.set(name, t);
  }
  return { tensors, metadata };
}
