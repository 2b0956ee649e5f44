/**
 * Reading any supported checkpoint file into a tree of plain values and tensors, and
 * writing dcd's own formats. Formats are detected from the bytes, not the extension:
 * PyTorch zip (torch ≥ 1.6), PyTorch legacy (torch < 1.6), safetensors, and tfjs
 * (`model.json` + `weights.bin`, or the folder holding them).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { WeightsError } from '../core/errors.js';
import { atomicWriteFile, ensureDir } from '../core/fsutil.js';
import { DCD_VERSION } from '../core/version.js';
import { PyObject } from './pickle.js';
import { decodeSafetensors, looksLikeSafetensors, writeSafetensors } from './safetensors.js';
import { numel, type HostTensor, type StateDict } from './tensor-data.js';
import { isPickle, isZip, LazyTensor, readTorchLegacy, readTorchZip } from './torch-format.js';

/** Formats dcd reads. */
export type CheckpointFormat = 'torch-zip' | 'torch-legacy' | 'safetensors' | 'tfjs';

/** A checkpoint as read: its format and its object tree (Maps, arrays, scalars, tensors). */
export interface Checkpoint {
  file: string;
  format: CheckpointFormat;
  tree: unknown;
}

/** A tensor leaf in a checkpoint tree. */
export type TensorLeaf = LazyTensor | HostTensor;

/** True for a tensor leaf. */
export function isTensorLeaf(v: unknown): v is TensorLeaf {
  return v instanceof LazyTensor || (typeof v === 'object' && v !== null && 'data' in v && 'shape' in v && 'dtype' in v && ArrayBuffer.isView((v as HostTensor).data));
}

/** The host tensor of a leaf (decoding it when lazy). */
export function materialize(v: TensorLeaf): HostTensor {
  return v instanceof LazyTensor ? v.materialize() : v;
}

/** dtype of a leaf as stored (e.g. F16 before conversion). */
export function leafDType(v: TensorLeaf): string {
  return v instanceof LazyTensor ? v.storageDType : v.dtype;
}

async function resolveTfjsPath(file: string): Promise<string | undefined> {
  try {
    const s = await stat(file);
    if (s.isDirectory()) return path.join(file, 'model.json');
  } catch {
    throw new WeightsError(`${file}: no such checkpoint file`);
  }
  return file.endsWith('.json') ? file : undefined;
}

/**
 * Reads a checkpoint of any supported format.
 * @throws WeightsError naming the file when it is missing, truncated or of no known format
 */
export async function readCheckpoint(file: string): Promise<Checkpoint> {
  const tfjsJson = await resolveTfjsPath(file);
  if (tfjsJson) return { file, format: 'tfjs', tree: await readTfjsWeights(tfjsJson) };
  const buf = new Uint8Array(await readFile(file));
  if (buf.length === 0) throw new WeightsError(`${file}: empty file; expected a PyTorch, safetensors or tfjs checkpoint (re-download it)`);
  if (isZip(buf)) return { file, format: 'torch-zip', tree: readTorchZip(buf, file) };
  if (isPickle(buf)) return { file, format: 'torch-legacy', tree: readTorchLegacy(buf, file) };
  if (looksLikeSafetensors(buf)) return { file, format: 'safetensors', tree: decodeSafetensors(buf, file).tensors };
  throw new WeightsError(
    `${file}: not a checkpoint: expected a PyTorch file (.pth/.pt, zip or legacy), a .safetensors file, or a tfjs model.json; check the path, or re-download if it is truncated`,
  );
}

/**
 * Every tensor in a tree with its dotted path (`teacher.backbone.norm.weight`,
 * `model.module.model.fc.bias`). Unknown objects contribute their BUILD state.
 */
export function flattenTensors(tree: unknown, prefix = ''): Map<string, TensorLeaf> {
  const out = new Map<string, TensorLeaf>();
  const walk = (v: unknown, p: string, depth: number) => {
    if (depth > 12) return;
    if (isTensorLeaf(v)) out.set(p, v);
    else if (v instanceof Map) for (const [k, x] of v) walk(x, p ? `${p}.${String(k)}` : String(k), depth + 1);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, p ? `${p}.${i}` : String(i), depth + 1));
    else if (v instanceof PyObject) walk(v.state, p, depth + 1);
  };
  walk(tree, prefix, 0);
  return out;
}

interface TfjsManifest {
  format: string;
  generatedBy?: string;
  modelTopology: null;
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: 'float32' | 'int32' }[] }[];
  userDefinedMetadata?: Record<string, string>;
}

async function readTfjsWeights(jsonFile: string): Promise<StateDict> {
  let m: TfjsManifest;
  try {
    m = JSON.parse(await readFile(jsonFile, 'utf8')) as TfjsManifest;
  } catch (e) {
    throw new WeightsError(`${jsonFile}: not a readable tfjs model.json (${(e as Error).message})`);
  }
  if (!Array.isArray(m.weightsManifest))
    throw new WeightsError(`${jsonFile}: a JSON file without a weightsManifest, so not a tfjs model.json; expected a PyTorch, safetensors or tfjs checkpoint`);
  const out: StateDict = new Map();
  for (const group of m.weightsManifest) {
    const parts = await Promise.all(group.paths.map((p) => readFile(path.join(path.dirname(jsonFile), p))));
    const all = Buffer.concat(parts);
    let off = 0;
    for (const w of group.weights) {
      const n = numel(w.shape);
      if (off + n * 4 > all.length) throw new WeightsError(`${jsonFile}: weight ${w.name} runs past the end of ${group.paths.join(', ')}; the weights file is truncated`);
      const ab = all.buffer.slice(all.byteOffset + off, all.byteOffset + off + n * 4);
      out.set(w.name, w.dtype === 'int32' ? { dtype: 'I32', shape: w.shape, data: new Int32Array(ab) } : { dtype: 'F32', shape: w.shape, data: new Float32Array(ab) });
      off += n * 4;
    }
  }
  return out;
}

/**
 * Writes tensors in tfjs's weights format: `dir/weights.bin` and `dir/model.json`
 * (a weights manifest, no topology). I64 is stored as int32. model.json is written
 * last, so the folder reads as a checkpoint only when complete.
 */
export async function writeTfjsWeights(dir: string, tensors: StateDict, metadata: Record<string, string> = {}): Promise<void> {
  await ensureDir(dir);
  const names = [...tensors.keys()].sort();
  const weights: TfjsManifest['weightsManifest'][0]['weights'] = [];
  const chunks: Uint8Array[] = [];
  for (const name of names) {
    const t = tensors.get(name)!;
    const data = t.dtype === 'I64' ? Int32Array.from(t.data as BigInt64Array, (x) => Number(x)) : t.data;
    weights.push({ name, shape: t.shape, dtype: t.dtype === 'F32' ? 'float32' : 'int32' });
    chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  await atomicWriteFile(path.join(dir, 'weights.bin'), Buffer.concat(chunks));
  const manifest: TfjsManifest = {
    format: 'dcd-weights',
    generatedBy: `dcd ${DCD_VERSION}`,
    modelTopology: null,
    weightsManifest: [{ paths: ['weights.bin'], weights }],
    userDefinedMetadata: metadata,
  };
  await atomicWriteFile(path.join(dir, 'model.json'), JSON.stringify(manifest, null, 1) + '\n');
}

/** Writes a state dict as safetensors (atomic). */
export async function writeStateDictSafetensors(file: string, tensors: StateDict, metadata: Record<string, string> = {}): Promise<void> {
  const rec: Parameters<typeof writeSafetensors>[1] = {};
  for (const [k, t] of tensors) rec[k] = t;
  await writeSafetensors(file, rec, metadata);
}
