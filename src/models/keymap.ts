/**
 * Key mapping from official checkpoints to dcd's (PyTorch-named) parameters: one pure
 * function per family, in the style of timm's `checkpoint_filter_fn`. Each takes the
 * unpickled checkpoint tree and returns a flat state dict with the model's own keys.
 */
import { WeightsError } from '../core/errors.js';
import { flattenTensors, type TensorLeaf } from './checkpoint.js';
import type { KeyFamily } from './registry.js';

/** Options of the mapping. */
export interface KeyMapOptions {
  /** DINO full checkpoints hold `teacher` and `student`; DINO publishes the teacher. Default 'teacher'. */
  dinoBranch?: 'teacher' | 'student';
}

/** One rename rule: a key matching `from` is renamed by `to`, or dropped when `to` is null. */
interface Rule {
  from: RegExp;
  to: string | null;
}

/** Rules applied in order; the first that matches wins. Keys matching none pass unchanged. */
const RULES: Record<KeyFamily, Rule[]> = {
  // torchvision state dict; DataParallel adds `module.`.
  torchvision: [
    { from: /\.num_batches_tracked$/, to: null },
    { from: /^module\.(.*)$/, to: '$1' },
  ],
  // MadryLab robustness: {'model': {'module.model.*', 'module.attacker.model.*' (same
  // weights again, for the attacker), 'module.normalizer.*', 'module.attacker.normalize.*'}}.
  madrylab: [
    { from: /\.num_batches_tracked$/, to: null },
    { from: /^module\.attacker\./, to: null },
    { from: /^module\.model\.(.*)$/, to: '$1' },
    { from: /^module\.normalizer\.(.*)$/, to: 'normalizer.$1' },
    { from: /^module\.(.*)$/, to: '$1' },
  ],
  // DINO: plain backbone state dicts, or full checkpoints whose branches carry
  // `module.` (student, DDP) and `backbone.` prefixes and a DINOHead (`head.mlp`, `head.last_layer`).
  dino: [
    { from: /\.num_batches_tracked$/, to: null },
    { from: /^(module\.)?(backbone\.)?head\.(mlp|last_layer)\./, to: null },
    { from: /^(module\.)?backbone\.(.*)$/, to: '$2' },
    { from: /^module\.(.*)$/, to: '$1' },
  ],
};

/** The sub-tree that holds the state dict: unwraps `teacher`/`student`, `model`, `state_dict`. */
function stateDictRoot(tree: unknown, family: KeyFamily, opts: KeyMapOptions, file: string): unknown {
  if (!(tree instanceof Map)) return tree;
  if (family === 'dino' && tree.has('teacher')) {
    const b = opts.dinoBranch ?? 'teacher';
    if (!tree.has(b)) throw new WeightsError(`${file}: DINO checkpoint has no "${b}" entry`);
    return tree.get(b);
  }
  for (const k of ['model', 'state_dict', 'model_state_dict']) {
    const v = tree.get(k);
    if (v instanceof Map && flattenTensors(v).size > 0) return v;
  }
  return tree;
}

/**
 * Maps a checkpoint tree onto model keys.
 * @returns model key → tensor leaf (still lazy), plus the original key of each
 */
export function mapCheckpointKeys(
  tree: unknown,
  family: KeyFamily,
  opts: KeyMapOptions = {},
  file = '<checkpoint>',
): { tensors: Map<string, TensorLeaf>; source: Map<string, string> } {
  const flat = flattenTensors(stateDictRoot(tree, family, opts, file));
  return applyRules(flat, RULES[family], file);
}

/** Applies rename rules to flat keys; two source keys mapping to one target is an error. */
export function applyRules(flat: Map<string, TensorLeaf>, rules: Rule[], file: string): { tensors: Map<string, TensorLeaf>; source: Map<string, string> } {
  const tensors = new Map<string, TensorLeaf>();
  const source = new Map<string, string>();
  for (const [k, v] of flat) {
    let target: string | null = k;
    for (const r of rules) {
      if (r.from.test(k)) {
        target = r.to === null ? null : k.replace(r.from, r.to);
        break;
      }
    }
    if (target === null) continue;
    if (tensors.has(target)) throw new WeightsError(`${file}: keys ${source.get(target)} and ${k} both map to ${target}`);
    tensors.set(target, v);
    source.set(target, k);
  }
  return { tensors, source };
}
