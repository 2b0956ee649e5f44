/**
 * Strict checkpoint loading and saving for {@link ImageModel}s. Loading validates every
 * key and shape before assigning anything: a missing, unexpected or mis-shaped tensor
 * is one WeightsError that lists each, and the model is left untouched.
 */
import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { DCD_VERSION } from '../core/version.js';
import { materialize, readCheckpoint, writeStateDictSafetensors, writeTfjsWeights, type CheckpointFormat, type TensorLeaf } from './checkpoint.js';
import { mapCheckpointKeys, type KeyMapOptions } from './keymap.js';
import { getModelSpec, type KeyFamily } from './registry.js';
import { shapeStr, type HostTensor, type StateDict } from './tensor-data.js';
import { readSafetensors } from './safetensors.js';

/** Options of {@link loadCheckpoint}. */
export interface LoadOptions extends KeyMapOptions {
  /** Key-mapping family; default the registry entry's. */
  family?: KeyFamily;
}

/** What {@link loadCheckpoint} loaded. */
export interface LoadResult {
  format: CheckpointFormat;
  /** Number of tensors assigned. */
  tensors: number;
}

/**
 * Loads `file` (PyTorch zip or legacy, safetensors, tfjs) into `model`, strictly.
 * @throws WeightsError listing every missing, unexpected and mis-shaped key; nothing is assigned then
 */
export async function loadCheckpoint(model: ImageModel, file: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const ck = await readCheckpoint(file);
  const family = opts.family ?? getModelSpec(model.name).keyFamily;
  const { tensors, source } = mapCheckpointKeys(ck.tree, family, opts, file);
  const targets = new Map<string, tf.Variable>([...model.params(), ...model.buffers()]);
  const missing: string[] = [];
  const unexpected: string[] = [];
  const misshaped: string[] = [];
  for (const [k, v] of targets) {
    const t = tensors.get(k);
    if (!t) missing.push(`${k} ${shapeStr(v.shape)}`);
    else if (shapeStr(t.shape) !== shapeStr(v.shape)) misshaped.push(`${k}: checkpoint ${shapeStr(t.shape)} (key ${source.get(k)}), model ${shapeStr(v.shape)}`);
  }
  for (const [k, t] of tensors) if (!targets.has(k)) unexpected.push(`${source.get(k)} ${shapeStr(t.shape)}`);
  if (missing.length || unexpected.length || misshaped.length) {
    const parts: string[] = [];
    const list = (title: string, xs: string[]) => {
      if (xs.length) parts.push(`${title} (${xs.length}):\n  ${xs.slice(0, 50).join('\n  ')}${xs.length > 50 ? `\n  … and ${xs.length - 50} more` : ''}`);
    };
    list('missing from the checkpoint', missing);
    list('unexpected in the checkpoint', unexpected);
    list('shape mismatch', misshaped);
    throw new WeightsError(
      `${file} (${ck.format}, ${family} keys) does not fit ${model.name}; nothing was loaded.\n${parts.join('\n')}\nCheck that the file is the checkpoint of ${model.name} (dcd weights inspect ${file}).`,
    );
  }
  // Decode everything first (a truncated storage fails here), check it, then assign.
  const host = new Map<string, HostTensor>();
  for (const k of targets.keys()) host.set(k, materialize(tensors.get(k) as TensorLeaf));
  checkFinite(host, file, (k) => source.get(k) ?? k);
  for (const [k, v] of targets) {
    const h = host.get(k)!;
    const data = h.data instanceof Float32Array ? h.data : Float32Array.from(h.data as ArrayLike<number | bigint>, (x) => Number(x));
    tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
  }
  return { format: ck.format, tensors: targets.size };
}

/**
 * Throws a WeightsError naming every float tensor of `tensors` that holds NaN or ±Inf (with
 * the count and the first position): such weights make every output NaN, which downstream
 * code would turn into silent garbage (e.g. all-zero normalised embeddings).
 * @param keyOf the key as the file spells it, for the message
 */
export function checkFinite(tensors: ReadonlyMap<string, { data: Float32Array | Int32Array | BigInt64Array | ArrayLike<number> }>, file: string, keyOf: (k: string) => string = (k) => k): void {
  const bad: string[] = [];
  for (const [k, t] of tensors) {
    if (!(t.data instanceof Float32Array)) continue;
    let n = 0;
    let first = -1;
    for (let i = 0; i < t.data.length; i++)
      if (!Number.isFinite(t.data[i]!)) {
        if (first < 0) first = i;
        n++;
      }
    if (n) bad.push(`${keyOf(k)}: ${n} of ${t.data.length} values are NaN or ±Inf (first at flat index ${first}: ${t.data[first]})`);
  }
  if (bad.length)
    throw new WeightsError(`${file}: non-finite weights; nothing was loaded.\n  ${bad.slice(0, 20).join('\n  ')}${bad.length > 20 ? `\n  … and ${bad.length - 20} more` : ''}\nThe checkpoint is corrupt (or came from a diverged training run): use an earlier checkpoint, or export or download it again.`);
}

/** The model's parameters and buffers as a host state dict (PyTorch keys and layouts), read asynchronously (as webgpu must). */
export async function stateDictOf(model: ImageModel): Promise<StateDict> {
  const out: StateDict = new Map();
  for (const [k, v] of [...model.params(), ...model.buffers()]) out.set(k, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  return out;
}

/**
 * Saves a model's weights as safetensors (`file.safetensors`) or tfjs (a folder with
 * model.json + weights.bin), atomically. Metadata records the model name and dcd version.
 */
export async function saveCheckpoint(model: ImageModel, out: string, format: 'safetensors' | 'tfjs', metadata: Record<string, string> = {}): Promise<void> {
  const meta = { 'dcd.model': model.name, 'dcd.version': DCD_VERSION, 'dcd.num_classes': String(model.numClasses), ...metadata };
  const sd = await stateDictOf(model);
  if (format === 'safetensors') await writeStateDictSafetensors(out, sd, meta);
  else await writeTfjsWeights(out, sd, meta);
}

/**
 * Assigns tensors of a state dict to the model's variables. Every param and buffer
 * must be present with its shape (a partial load fails, naming each key), except the
 * names in `skip`. Unknown keys fail too, unless `allowUnexpected`.
 */
export function assignWeights(
  model: ImageModel,
  tensors: Map<string, { shape: number[]; data: Float32Array | Int32Array | BigInt64Array }>,
  file: string,
  opts: { skip?: (name: string) => boolean; allowUnexpected?: (name: string) => boolean } = {},
): void {
  const vars = new Map<string, tf.Variable>([...model.params(), ...model.buffers()]);
  const problems: string[] = [];
  for (const [name, v] of vars) {
    if (opts.skip?.(name)) continue;
    const t = tensors.get(name);
    if (!t) problems.push(`missing ${name} [${v.shape.join(', ')}]`);
    else if (t.shape.join(',') !== v.shape.join(',')) problems.push(`${name}: file has [${t.shape.join(', ')}], model needs [${v.shape.join(', ')}]`);
  }
  for (const name of tensors.keys()) if (!vars.has(name) && !opts.allowUnexpected?.(name)) problems.push(`unexpected ${name}`);
  if (problems.length) throw new WeightsError(`${file} does not fit ${model.name}:\n  ${problems.join('\n  ')}`);
  checkFinite(new Map([...vars.keys()].filter((n) => !opts.skip?.(n)).map((n) => [n, tensors.get(n)!])), file);
  for (const [name, v] of vars) {
    if (opts.skip?.(name)) continue;
    const t = tensors.get(name)!;
    const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>, Number);
    tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
  }
}

/**
 * Loads any checkpoint into `model`: a safetensors state dict with PyTorch names (what
 * the trainer and the pipeline write) directly, anything else through the strict
 * loader ({@link loadCheckpoint}: PyTorch zip or legacy, tfjs) and its key mapping.
 */
export async function loadAnyCheckpoint(model: ImageModel, file: string): Promise<void> {
  if (file.endsWith('.safetensors')) {
    const { tensors } = await readSafetensors(file);
    assignWeights(model, tensors as Map<string, { shape: number[]; data: Float32Array | Int32Array | BigInt64Array }>, file);
    return;
  }
  await loadCheckpoint(model, file);
}
