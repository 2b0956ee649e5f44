/**
 * `dcd weights inspect` and `dcd weights convert`: list a checkpoint's tensors, and
 * rewrite a checkpoint as safetensors or tfjs.
 */
import { ConfigError } from '../core/errors.js';
import { DCD_VERSION } from '../core/version.js';
import { flattenTensors, leafDType, materialize, readCheckpoint, writeStateDictSafetensors, writeTfjsWeights, type CheckpointFormat } from './checkpoint.js';
import { loadCheckpoint, saveCheckpoint } from './load.js';
import { createModel } from './registry.js';
import { numel, type StateDict } from './tensor-data.js';

/** One tensor of a checkpoint. */
export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
}

/** The tensors of a checkpoint, in file order, with their dotted paths. */
export async function inspectCheckpoint(file: string): Promise<{ format: CheckpointFormat; tensors: TensorInfo[]; elements: number }> {
  const ck = await readCheckpoint(file);
  const tensors = [...flattenTensors(ck.tree)].map(([name, t]) => ({ name, dtype: leafDType(t), shape: t.shape }));
  return { format: ck.format, tensors, elements: tensors.reduce((s, t) => s + numel(t.shape), 0) };
}

/** Formats {@link inspectCheckpoint}'s result as aligned text. */
export function formatInspect(file: string, r: Awaited<ReturnType<typeof inspectCheckpoint>>): string {
  const w = Math.max(4, ...r.tensors.map((t) => t.name.length));
  const lines = r.tensors.map((t) => `${t.name.padEnd(w)}  ${t.dtype.padEnd(5)}  [${t.shape.join(', ')}]`);
  return `${file}: ${r.format}, ${r.tensors.length} tensors, ${r.elements.toLocaleString('en-US')} elements\n${lines.join('\n')}`;
}

/**
 * Converts a checkpoint to safetensors or tfjs. With `backbone`, the file is loaded
 * strictly into that model (through its key mapping) and the model's weights are
 * written, so the output has exactly the model's keys; without, every tensor is
 * written under its dotted path.
 */
export async function convertCheckpoint(file: string, to: 'safetensors' | 'tfjs', out: string, backbone?: string): Promise<{ tensors: number }> {
  if (to !== 'safetensors' && to !== 'tfjs') throw new ConfigError(`--to: expected safetensors or tfjs, received "${String(to)}"`);
  if (backbone) {
    const model = createModel(backbone);
    try {
      await loadCheckpoint(model, file);
      await saveCheckpoint(model, out, to, { 'dcd.source': file });
      return { tensors: model.params().size + model.buffers().size };
    } finally {
      model.dispose();
    }
  }
  const ck = await readCheckpoint(file);
  const sd: StateDict = new Map();
  for (const [k, t] of flattenTensors(ck.tree)) sd.set(k, materialize(t));
  const meta = { 'dcd.source': file, 'dcd.version': DCD_VERSION };
  if (to === 'safetensors') await writeStateDictSafetensors(out, sd, meta);
  else await writeTfjsWeights(out, sd, meta);
  return { tensors: sd.size };
}
