/**
 * The run's one validation pass: every check of a config that the schema (src/core/config.ts)
 * cannot make alone — rules between keys and sections, registry names, and the files and
 * folders the config names. `dcd run` (with --dry-run too), `dcd sweep` (each variant), the
 * Slurm driver and its jobs call {@link checkConfig} after loading and before the first stage,
 * so a run never fails minutes in on something the config already said. Nothing here writes.
 *
 * Each problem names the key, what was expected, what was found, and a fix; all problems are
 * reported at once.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { isDemoBackbone, isSslBackbone, type Config, type DemoBackboneConfig, type SslBackboneConfig } from '../core/config.js';
import { getModelSpec, modelNames } from '../models/registry.js';
import { nearest } from '../core/config-errors.js';
import { isDevkitPath } from '../data/devkit.js';
import { generateBroad, syntheticOptions, type ObjectSource } from '../data/synthetic.js';
import { DEFAULT_FASHION_CLASSES } from '../data/fashion-shift.js';
import { dinoOptions } from '../ssl/train.js';
import { broadDrawSource } from './stages/common.js';
import { pretrainData } from './stages/folders.js';
import { backboneLabel } from './experiment.js';
import { planFacts, slicesConfigProblems } from '../analysis/slices-config.js';

/** Names of sets a backbone must never be pretrained on (self-supervised). */
const DEBUG_SET_NAMES = ['train', 'test', 'mfreq', 'complement', 'seed', 'heldout', 'deval'];

/** The Fashion-MNIST files `data.fashion_dir` must hold (src/data/fashion-shift.ts reads them). */
const FASHION_FILES = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'];

/** True when `a` is `b` or lies inside it. */
function within(a: string, b: string): boolean {
  const rel = path.relative(b, a);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function isDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/**
 * Checks `cfg` (already validated by the schema) as a whole, before any stage runs. Throws one
 * {@link ConfigError} listing every problem, each as `config.<key>: <what is wrong>; <fix>`.
 * @param where the config file, named at the head of the error
 */
export function checkConfig(cfg: Config, where = 'config'): void {
  const problems: string[] = [];
  const say = (key: string, text: string) => problems.push(`config.${key}: ${text}`);
  /** A path the config names must exist. */
  const exists = (p: string | undefined, key: string): boolean => {
    if (p === undefined || existsSync(p)) return true;
    // --set reaches keys of mappings only (not list items such as backbones[0])
    const override = key.includes('[') ? '' : ` or override it with --set ${key}=PATH`;
    say(key, `${p} does not exist; fix the path (relative paths are relative to the config file)${override} (or --set vars.NAME=PATH for the \${NAME} it uses)`);
    return false;
  };
  const modelName = (name: string, key: string) => {
    try {
      getModelSpec(name);
    } catch (e) {
      const near = nearest(name, modelNames());
      say(key, `${(e as Error).message}; ${near ? `did you mean "${near}"?` : 'use one of these names'}`);
    }
  };
  /** Weights a backbone embeds with: official weights are never downloaded here, so they must be a file. */
  const weightsFile = (w: string, name: string, key: string) => {
    if (w === 'official')
      say(key, `"official" weights need their checkpoint file here (this machine downloads nothing); fetch it with \`dcd weights fetch ${name}\` and give its path, or use random, demo or ssl`);
    else if (w !== 'random' && w !== 'demo' && w !== 'ssl') exists(w, key);
  };

  checkData(cfg, say, exists);

  exists(cfg.original.checkpoint, 'original.checkpoint');
  modelName(cfg.train.model, 'train.model');
  if (cfg.original.model) modelName(cfg.original.model, 'original.model');
  if (cfg.train.batch_size % cfg.train.grad_accum !== 0)
    say('train.grad_accum', `expected a divisor of train.batch_size (${cfg.train.batch_size}), received ${cfg.train.grad_accum}; pick a grad_accum that divides it, or change batch_size`);

  cfg.backbones.forEach((b, i) => {
    const key = `backbones[${i}]`;
    // A demo or ssl backbone's name is only its label; its architecture is pretrain.widths.
    if (isDemoBackbone(b)) checkDemoBackbone(cfg, b, key, say, exists);
    else if (isSslBackbone(b)) checkSslBackbone(cfg, b, key, say);
    else {
      modelName(b.name, `${key}.name`);
      weightsFile(b.weights, b.name, `${key}.weights`);
    }
  });
  const labels = cfg.backbones.map(backboneLabel);
  const dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup) say('backbones', `expected one row label per backbone, but two backbones have the label "${dup}"; give one of them another (label: NAME)`);

  if (cfg.filter.enabled) {
    const fb = cfg.filter.backbone;
    if (!isDemoBackbone(fb) && !isSslBackbone(fb)) {
      modelName(fb.name, 'filter.backbone.name');
      weightsFile(fb.weights, fb.name, 'filter.backbone.weights');
    }
  }

  if (cfg.failures.mode === 'multi' && cfg.failures.models.length === 0)
    say('failures.models', 'failures.mode is multi but no models are listed; list the models (name + checkpoint) whose common failures define the seed set');
  cfg.failures.models.forEach((m, i) => {
    modelName(m.name, `failures.models[${i}].name`);
    const key = `failures.models[${i}].checkpoint`;
    if (m.checkpoint === 'official' || m.checkpoint === 'random' || m.checkpoint === 'demo' || m.checkpoint === 'ssl') {
      if (cfg.failures.mode === 'multi') say(key, `expected a checkpoint file, received "${m.checkpoint}"; give the path of ${m.name}'s trained weights`);
    } else exists(m.checkpoint, key);
  });
  if (typeof cfg.failures.subset === 'string' && cfg.failures.subset !== 'pool' && cfg.failures.subset !== 'discover') exists(cfg.failures.subset, 'failures.subset');

  // slices and select.clean*: the rules across keys, and what the config's own data sizes allow
  problems.push(...slicesConfigProblems(cfg, [...new Set([...labels, ...cfg.backbones.map((b) => b.name)])], planFacts(cfg.data)).problems);
  if (cfg.select.per_slice !== undefined && cfg.select.pool_share !== undefined)
    say('select.per_slice', `sizes the debug-train picks per slice, but select.pool_share (${cfg.select.pool_share}) sizes them per seed image too; remove one of them (--set select.pool_share=null)`);
  if (cfg.slices.enabled && !cfg.eval.sets.includes('heldout'))
    say('slices.enabled', `per-slice accuracy is read on the debug-heldout set, but eval.sets (${cfg.eval.sets.join(', ')}) leaves it out; add heldout to eval.sets or set slices.enabled: false`);

  if (problems.length)
    throw new ConfigError(`${where}: invalid config (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  ${problems.join('\n  ')}`);
}

type Say = (key: string, text: string) => void;
type Exists = (p: string | undefined, key: string) => boolean;

/** The data section: the sets of `data.kind` exist and have the expected shape; the draw's options agree with each other. */
function checkData(cfg: Config, say: Say, exists: Exists): void {
  const d = cfg.data;
  if (d.kind !== 'folders' && d.folders) say('data.folders', `only used when data.kind is folders (data.kind is ${d.kind}); remove it or set data.kind: folders`);
  if (d.kind !== 'imagenet' && d.imagenet) say('data.imagenet', `only used when data.kind is imagenet (data.kind is ${d.kind}); remove it or set data.kind: imagenet`);
  if (d.kind === 'imagenet') {
    const inet = d.imagenet;
    if (!inet) return say('data.imagenet', 'data.kind is imagenet but the imagenet section is missing; add data.imagenet with train, val, val_labels, v2_*, pool');
    const present = (['train', 'val', 'val_labels', 'val_id_map', 'v2_matched_frequency', 'v2_threshold', 'v2_top_images', 'pool'] as const).filter((k) => exists(inet[k], `data.imagenet.${k}`));
    // Structure, cheaply (one directory listing each), so a dry run catches a wrong root.
    const entries = (p: string) => (statSync(p).isDirectory() ? readdirSync(p) : null);
    if (present.includes('train') && !entries(inet.train)?.some((e) => /^n\d{8}$/.test(e)))
      say('data.imagenet.train', `${inet.train} has no wnid sub-folders (n01440764, ...); point it at ILSVRC2012's train folder`);
    if (present.includes('val') && !entries(inet.val)) say('data.imagenet.val', `${inet.val} is not a folder; point it at ILSVRC2012's val folder`);
    for (const k of ['v2_matched_frequency', 'v2_threshold', 'v2_top_images'] as const)
      if (present.includes(k) && !entries(inet[k])?.some((x) => /^\d+$/.test(x)))
        say(`data.imagenet.${k}`, `${inet[k]} has no class sub-folders 0..999; point it at the extracted ImageNet-V2 folder`);
    if (!inet.val_labels.endsWith('.csv') && !isDevkitPath(inet.val_labels) && !inet.val_id_map)
      say(
        'data.imagenet.val_id_map',
        `val_labels ${path.basename(inet.val_labels)} is the devkit ground truth, which needs the ILSVRC2012_ID → wnid map; set val_id_map (the devkit or its data/meta.mat), point val_labels at ILSVRC2012_devkit_t12.tar.gz itself, or use LOC_val_solution.csv`,
      );
  }
  if (d.kind === 'folders') {
    const f = d.folders;
    if (!f) return say('data.folders', 'data.kind is folders but the folders section is missing; add data.folders with train, test, mfreq, complement and pool (`dcd init DIR` writes it)');
    for (const k of ['train', 'test', 'mfreq', 'complement', 'pool', 'classes', 'contexts'] as const) exists(f[k], `data.folders.${k}`);
  }
  if (d.kind === 'fashion-mnist' && exists(d.fashion_dir, 'data.fashion_dir')) {
    const missing = FASHION_FILES.filter((f) => !existsSync(path.join(d.fashion_dir, f)));
    if (missing.length) say('data.fashion_dir', `${d.fashion_dir} lacks ${missing.join(', ')}; point it at the folder of the Fashion-MNIST IDX .gz files (Debian: dataset-fashion-mnist)`);
  }
  if (d.kind === 'synthetic' || d.kind === 'fashion-mnist') {
    // The library checks a draw's options against each other (with its defaults for what is left
    // out); a draw of zero images runs exactly that check.
    const section = d.kind === 'synthetic' ? 'data.synthetic' : 'data.fashion';
    const { options, objects } = drawOf(cfg);
    try {
      generateBroad(options, 0, 0, objects);
    } catch (e) {
      sayThrown(e, say, 'synthetic', section, `; change it in ${section}`);
    }
  }
}

/** A `weights: demo` backbone: where a broad_cnn learns from, never a debug set. */
function checkDemoBackbone(cfg: Config, b: DemoBackboneConfig, key: string, say: Say, exists: Exists): void {
  const data = b.pretrain?.data;
  if (data === undefined) return;
  if (cfg.data.kind !== 'folders') return say(`${key}.pretrain.data`, `only used when data.kind is folders (a demo backbone on ${cfg.data.kind} data learns from a broad draw); remove it`);
  const f = cfg.data.folders;
  const d = pretrainData(b);
  if (d === 'pool' || !f) return;
  for (const role of ['test', 'mfreq', 'complement'] as const)
    if (within(d, f[role]) || within(f[role], d))
      return say(
        `${key}.pretrain.data`,
        `${d} ${d === f[role] ? 'is' : 'overlaps'} the ${role} set (data.folders.${role}); a backbone must never learn from the sets DCD is evaluated on — use "pool", the train folder, or another ImageFolder`,
      );
  if (exists(d, `${key}.pretrain.data`) && !isDir(d)) say(`${key}.pretrain.data`, `${d} is not a folder; give "pool" or an ImageFolder (one sub-folder per class)`);
}

/** A `weights: ssl` backbone: its pretraining data and options. */
function checkSslBackbone(cfg: Config, b: SslBackboneConfig, key: string, say: Say): void {
  const { data = 'pool', broadSize, ...rest } = b.pretrain ?? {};
  const at = `${key}.pretrain.data`;
  const drawn = cfg.data.kind === 'synthetic' || cfg.data.kind === 'fashion-mnist';
  if (broadSize !== undefined && data !== 'broad') say(`${key}.pretrain.broadSize`, `only used with data: broad (data is ${JSON.stringify(data)}); remove it or set data: broad`);
  // a config file's relative "mfreq" arrives resolved against its folder: judge the last path part too
  const named = DEBUG_SET_NAMES.includes(data) ? data : DEBUG_SET_NAMES.find((f) => path.isAbsolute(data) && path.basename(data) === f);
  if (named) say(at, `"${data}" is a debug or test set (${named}); a backbone is pretrained on unlabelled images that are never evaluated on — use "pool" or a folder of other images`);
  else if (data === 'broad' && !drawn) say(at, `"broad" is a synthetic draw (data.kind synthetic or fashion-mnist); for ${cfg.data.kind} data give "pool" or a folder of images`);
  else if (data === 'pool' && cfg.data.kind === 'imagenet') say(at, '"pool" is read into memory for pretraining, which needs synthetic, fashion-mnist or folders data; give a folder of images');
  else if (data !== 'pool' && data !== 'broad') {
    if (!path.isAbsolute(data)) say(at, `expected "pool", "broad" or a folder path; received ${JSON.stringify(data)}`);
    else if (!isDir(data)) say(at, `${data} is not a folder; give "pool", "broad" or a folder of images`);
  }
  let options: ReturnType<typeof dinoOptions>;
  try {
    options = dinoOptions(rest, `config.${key}.pretrain`);
  } catch (e) {
    return sayThrown(e, say, `config.${key}.pretrain`, `${key}.pretrain`);
  }
  // A step takes batchSize images: the pretraining set must hold at least one batch.
  const images = data === 'broad' ? (broadSize ?? 3000) : data === 'pool' && drawn ? syntheticOptions(drawOf(cfg).options).pool.size : undefined;
  if (images !== undefined && options.batchSize > images)
    say(`${key}.pretrain.batchSize`, `expected at most the ${images} pretraining images (${data === 'broad' ? 'pretrain.broadSize' : 'the pool'}), received ${options.batchSize}; lower it`);
}

/**
 * Records a library's ConfigError `<from>.<key>: <text>` as the problem `<to>.<key>: <text><fix>` (of
 * `to` itself when it names no key); rethrows any other error.
 */
function sayThrown(e: unknown, say: Say, from: string, to: string, fix = ''): void {
  if (!(e instanceof ConfigError)) throw e;
  const m = e.message.startsWith(`${from}.`) ? /^(.+?): (.*)$/s.exec(e.message.slice(from.length + 1)) : null;
  if (m) say(`${to}.${m[1]}`, `${m[2]}${fix}`);
  else say(to, e.message);
}

/**
 * The options of the run's synthetic or Fashion-MNIST draw, and an object source that stands in
 * for the garments (their count is all a check needs; nothing is drawn from it).
 */
function drawOf(cfg: Config): { options: ReturnType<typeof broadDrawSource>['synthetic']; objects?: ObjectSource } {
  const { synthetic } = broadDrawSource(cfg);
  if (cfg.data.kind !== 'fashion-mnist') return { options: synthetic };
  const n = (cfg.data.fashion?.classes ?? DEFAULT_FASHION_CLASSES).length;
  return { options: synthetic, objects: { numClasses: n, classNames: Array.from({ length: n }, (_, i) => String(i)), draw: () => undefined } };
}
