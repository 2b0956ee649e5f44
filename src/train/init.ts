/** Initialising a model for fine-tuning from a checkpoint, with a new head when the class count differs. */
import { WeightsError } from '../core/errors.js';
import type { ImageModel } from '../core/types.js';
import { materialize, readCheckpoint } from '../models/checkpoint.js';
import { mapCheckpointKeys } from '../models/keymap.js';
import { getModelSpec, type KeyFamily } from '../models/registry.js';
import type { HostTensor } from '../models/tensor-data.js';
import { assignWeights } from '../models/load.js';

/** Names of the classification head's parameters (torchvision spelling). */
const HEAD = (name: string) => name === 'fc.weight' || name === 'fc.bias';

/**
 * Loads every weight of `file` (any format `readCheckpoint` knows) into `model`
 * strictly, except the head when its shape differs from the model's (fine-tuning to
 * another class count) or the checkpoint has none: the head then keeps its fresh
 * random init. Returns whether the head was replaced.
 * @throws WeightsError listing missing, unexpected and mis-shaped keys
 */
export async function initFromCheckpoint(model: ImageModel, file: string, opts: { family?: KeyFamily } = {}): Promise<{ newHead: boolean }> {
  const ck = await readCheckpoint(file);
  const family = opts.family ?? getModelSpec(model.name).keyFamily;
  const { tensors } = mapCheckpointKeys(ck.tree, family, {}, file);
  const host = new Map<string, HostTensor>();
  for (const [k, v] of tensors) host.set(k, materialize(v));
  const fc = model.params().get('fc.weight');
  const fileFc = host.get('fc.weight');
  const newHead = fc !== undefined && (fileFc === undefined || fileFc.shape.join(',') !== fc.shape.join(','));
  if (!fc && fileFc) host.delete('fc.weight'), host.delete('fc.bias');
  try {
    assignWeights(model, host, file, { skip: newHead ? HEAD : undefined, allowUnexpected: newHead ? HEAD : undefined });
  } catch (e) {
    if (e instanceof WeightsError) throw new WeightsError(`${e.message}\n(fine-tuning loads every weight but the head fc.*; is ${file} a ${model.name} checkpoint?)`);
    throw e;
  }
  return { newHead };
}
