/**
 * The experiment config: one zod schema that is both the TypeScript type
 * ({@link Config}) and the run-time validation, plus YAML loading with `extends:`,
 * `vars:` interpolation, `--set` overrides and path resolution.
 *
 * Every path in a config file is relative to the file that contains it (a base
 * pulled in with `extends:` resolves its own paths against its own folder); `--set`
 * values are relative to the working directory.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import YAML from 'yaml';
import { ConfigError } from './errors.js';
import { formatIssues } from './config-errors.js';
import { def, schemaAt, unwrap } from './schema-walk.js';
import { SELECT_SLICE_KEYS, SlicesSchema } from '../analysis/slices-config.js';

// ---------------------------------------------------------------------------------
// Path fields: a schema instance registered here holds a file-system path.

const PATH_SCHEMAS = new WeakSet<object>();

/** A string that names a file or folder; resolved relative to its config file. */
function pathField(describe: string) {
  const s = z.string().min(1).describe(describe);
  PATH_SCHEMAS.add(s);
  return s;
}

/** True when `s` is a path field created by {@link pathField}. */
export function isPathSchema(s: unknown): boolean {
  return typeof s === 'object' && s !== null && PATH_SCHEMAS.has(s);
}

// ---------------------------------------------------------------------------------
// The schema, section by section.

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const ExperimentSchema = z.strictObject({
  name: z.string().regex(NAME_RE).describe('experiment name; results go to runs/<name>'),
  out: pathField('output folder (default: runs/<name> under the working directory)').optional(),
  description: z.string().optional(),
});

/** ImageNet and the sets around it, read by the data area's adapters (src/data/build.ts). */
const ImagenetDataSchema = z.strictObject({
  train: pathField('ILSVRC2012 train folder (one sub-folder per wnid)'),
  val: pathField('ILSVRC2012 val folder (the 50,000 JPEGs)'),
  val_labels: pathField('val ground truth: LOC_val_solution.csv, the devkit (ILSVRC2012_devkit_t12.tar.gz or its folder), or its ILSVRC2012_validation_ground_truth.txt (then set val_id_map)'),
  val_id_map: pathField('ILSVRC2012_ID → wnid map (the devkit, its data/meta.mat, or map_clsloc.txt), needed with the ground-truth .txt').optional(),
  v2_matched_frequency: pathField('ImageNet-V2 MatchedFrequency folder (sub-folders 0..999)'),
  v2_threshold: pathField('ImageNet-V2 Threshold0.7 folder'),
  v2_top_images: pathField('ImageNet-V2 TopImages folder'),
  pool: pathField('the weak pool list (CSV, JSONL or Arrow: path or url, weak label, query)'),
});

/** A user's own data as ImageFolder sets (src/data/folders.ts): each role a folder `<set>/<class>/<image>`. */
const FoldersDataSchema = z.strictObject({
  train: pathField('the original model\'s training set (ImageFolder: one sub-folder per class)'),
  test: pathField('in-distribution test set (the "INet" columns)'),
  mfreq: pathField('deployment set whose failures become debug-seed ("MFreq")'),
  complement: pathField('deployment set whose failures become debug-heldout ("Compl.")'),
  pool: pathField('weak pool list: CSV / TSV / JSONL / Arrow with path (or url), weak_label, optional true_label, context'),
  classes: pathField('class order, one name a line (default: the sorted class folders of train)').optional(),
  contexts: pathField('CSV path,context for images of the sets (retention by context)').optional(),
});

const DataSchema = z.strictObject({
  kind: z.enum(['synthetic', 'fashion-mnist', 'imagenet', 'folders']).describe('which benchmark the sets come from'),
  synthetic: z.record(z.string(), z.unknown()).optional().describe('options of generateSynthetic (src/data/synthetic.ts)'),
  fashion: z.record(z.string(), z.unknown()).optional().describe('options of the Fashion-MNIST shift (src/data/fashion-shift.ts)'),
  fashion_dir: pathField('folder with the Fashion-MNIST IDX .gz files').default('/usr/share/datasets/fashion-mnist'),
  imagenet: ImagenetDataSchema.optional(),
  folders: FoldersDataSchema.optional(),
  image_size: z.number().int().min(8).max(1024).optional().describe('kind folders: every image is resized (shorter side) and centre-cropped to this once, in the data stage (default: the train model\'s input size)'),
  classes: z.number().int().positive().optional().describe('number of classes (default: from the data)'),
});

const TrainFinetuneSchema = z.strictObject({
  epochs: z.number().int().positive().default(10),
  lr: z.number().positive().default(0.01),
  schedule: z.enum(['step', 'cosine', 'constant']).default('cosine'),
  warmup_epochs: z.number().nonnegative().default(0),
  max_steps: z.number().int().positive().optional().describe('stop after this many optimiser steps'),
});

const TrainSchema = z.strictObject({
  model: z.string().min(1).default('resnet50').describe('registry name of the trained classifier'),
  init: z.enum(['scratch', 'finetune']).default('scratch').describe('from scratch, or fine-tune the original model'),
  epochs: z.number().int().positive().default(90),
  batch_size: z.number().int().positive().default(256),
  grad_accum: z.number().int().positive().default(1).describe('micro-batches per optimiser step'),
  lr: z.number().positive().default(0.1).describe('peak learning rate for batch_size × grad_accum'),
  schedule: z.enum(['step', 'cosine', 'constant']).default('step'),
  step_epochs: z.array(z.number().int().positive()).default([30, 60, 80]).describe('epochs where a step schedule multiplies lr by gamma'),
  gamma: z.number().positive().max(1).default(0.1),
  warmup_epochs: z.number().nonnegative().default(0),
  momentum: z.number().min(0).max(1).default(0.9),
  nesterov: z.boolean().default(false),
  weight_decay: z.number().nonnegative().default(1e-4),
  decay_bn_bias: z.boolean().default(true).describe('apply weight decay to BatchNorm and bias parameters'),
  label_smoothing: z.number().min(0).max(1).default(0),
  augment: z.enum(['none', 'flip', 'random_resized_crop']).default('random_resized_crop'),
  max_steps: z.number().int().positive().optional().describe('stop after this many optimiser steps (short demo schedules)'),
  checkpoint_every_steps: z.number().int().nonnegative().default(0).describe('0: checkpoint at each epoch end only'),
  precision: z.enum(['fp32', 'bf16']).default('fp32').describe('mixed precision: bf16 convolutions/matmuls, fp32 master weights and BatchNorm (native backend)'),
  finetune: TrainFinetuneSchema.prefault({}).describe(
    'schedule used instead when init = finetune',
  ),
});

const WeightsRef = z.union([z.enum(['official', 'random', 'demo', 'ssl']), pathField('checkpoint file')]);

const BackboneSchema = z.strictObject({
  name: z.string().min(1).describe('registry name (dino_vits8, dino_vits16, resnet50, resnet50_robust, resnet_tiny, vit_tiny, ...)'),
  weights: WeightsRef.default('official').describe('official | random | demo | ssl (self-supervised pretraining by the run) | a checkpoint path'),
  label: z.string().regex(NAME_RE).optional().describe('row label suffix (default: name)'),
  pretrain: z
    .looseObject({
      data: z
        .union([z.enum(['pool', 'broad']), pathField('an ImageFolder the backbone is trained on')])
        .optional()
        .describe('data.kind folders: what a broad_cnn learns from: "pool" (the weak labels; default) or an ImageFolder (never test, mfreq or complement); weights = ssl: "pool" (labels ignored), "broad" (synthetic/fashion-mnist: a seed-independent broad draw, labels ignored) or a folder of images'),
    })
    .optional()
    .describe('weights = demo: how the demo backbone is trained; weights = ssl: {method: dino|simclr, data: pool|<folder>, epochs, ...} (src/ssl/train.ts DinoOptions)'),
});

const OriginalSchema = z.strictObject({
  checkpoint: pathField('a trained original model; when absent the run trains it with `train`').optional(),
  model: z.string().min(1).optional().describe('registry name of the original model (default: train.model)'),
  epochs: z.number().int().positive().optional().describe('override train.epochs when the run trains the original'),
  max_steps: z.number().int().positive().optional().describe('override train.max_steps when the run trains the original'),
  lr: z.number().positive().optional().describe('override train.lr when the run trains the original'),
});

const FailureModelSchema = z.strictObject({
  name: z.string().min(1),
  checkpoint: WeightsRef.default('official'),
});

const FailuresSchema = z.strictObject({
  mode: z.enum(['single', 'multi']).default('single').describe('single: the original model; multi: images every listed model gets wrong'),
  models: z.array(FailureModelSchema).default([]).describe('the models of the multi-model setting'),
  subset: z
    .union([z.enum(['pool', 'discover']), pathField('file of class wnids or indices (data.kind folders: class names), one a line'), z.array(z.number().int().nonnegative()).min(1)])
    .default('pool')
    .describe('Y_sub: "pool" (the weak labels in the pool), "discover" (Appendix A), a file of wnids/indices, or a list of indices'),
  min_failures: z
    .number()
    .int()
    .nonnegative()
    .default(0)
    .describe('subset = discover: keep classes with at least this many MFreq images that every failure model gets wrong'),
});

const FilterSchema = z.strictObject({
  enabled: z.boolean().default(true),
  backbone: BackboneSchema.prefault({ name: 'resnet50_robust' }).describe('features of the leakage filter (robust ResNet-50)'),
  scope: z.enum(['all', 'class']).default('all').describe('min distance over all test images, or only those of the weak class'),
  normalize: z.boolean().default(false).describe('L2-normalise features first'),
});

const SelectSchema = z.strictObject({
  k_val: z.number().int().nonnegative().default(5).describe('de-val images per seed image'),
  k_train: z.number().int().positive().default(46).describe('debug-train images per seed image'),
  candidates: z.enum(['weak_label', 'any_label']).default('weak_label').describe('restrict candidates to the seed class (W\'_y), or use all of W\''),
  normalize: z.boolean().default(false).describe('L2-normalise features before distances'),
  // select.per_slice and select.clean* (docs/slices-and-cleaning.md); their checks across keys run in checkConfig
  ...SELECT_SLICE_KEYS,
});

const MethodSchema = z.enum(['original', 'complete', 'random', 'dcd']);

const EvalSetSchema = z.enum(['seed', 'heldout', 'mfreq', 'complement', 'test', 'deval']);

const EvalSchema = z.strictObject({
  sets: z.array(EvalSetSchema).min(1).default(['seed', 'heldout', 'mfreq', 'complement', 'test']),
  batch_size: z.number().int().positive().default(128),
});

const ReportSchema = z.strictObject({
  formats: z.array(z.enum(['md', 'csv', 'json', 'html'])).min(1).default(['md', 'csv', 'json', 'html']),
  title: z.string().optional(),
  retention: z
    .strictObject({
      enabled: z.boolean().default(true).describe('add the backbones\' class/context retention table (paper Fig. 7) when the set has a context column'),
      set: z.enum(['mfreq', 'complement', 'test', 'train']).default('mfreq'),
      ks: z.array(z.number().int().positive()).min(1).default([1, 5, 10, 20]),
      rule: z.enum(['lenient', 'strict']).default('lenient'),
    })
    .prefault({}),
});

const ComputeSchema = z.strictObject({
  embed_batch_size: z.number().int().positive().default(64),
  concurrency: z.number().int().positive().default(4).describe('image decoding concurrency'),
  precision: z
    .enum(['fp32', 'bf16'])
    .default('fp32')
    .describe('embedding and retrieval: bf16 convolutions/matmuls (fp32 accumulation) on the native backend, fp32 elsewhere; retrieval answers stay exact'),
});

const SlurmResourcesSchema = z.strictObject({
  gres: z.string().optional().describe('generic resources, e.g. gpu:1 (sbatch --gres)'),
  cpus: z.number().int().positive().optional().describe('CPUs per task (sbatch --cpus-per-task)'),
  mem: z.union([z.string(), z.number().int().positive()]).optional().describe('memory per node, e.g. 16G or MB as a number (sbatch --mem)'),
  time: z.string().optional().describe('time limit, e.g. 4:00:00 or 2-00:00:00 (sbatch --time)'),
  partition: z.string().optional().describe('partition of this stage kind\'s jobs (--partition on the command line wins)'),
});

/** Per-stage-kind resources of `dcd run --executor slurm` (`default` applies to every kind). */
const ExecutorSchema = z.strictObject({
  slurm: z
    .strictObject(
      Object.fromEntries(
        ['default', 'data', 'original', 'failures', 'backbone', 'embed', 'filter', 'select', 'baseline', 'train', 'evaluate', 'retention', 'gallery', 'slices', 'report'].map((k) => [k, SlurmResourcesSchema.optional()]),
      ),
    )
    .prefault({}),
});

/** The whole experiment config. Keys not listed here are errors. */
export const ConfigSchema = z.strictObject({
  extends: z.union([z.string(), z.array(z.string())]).optional().describe('base config(s), merged under this file'),
  vars: z.record(z.string(), z.string()).default({}).describe('strings substituted for ${name} in other values'),
  experiment: ExperimentSchema,
  data: DataSchema,
  original: OriginalSchema.prefault({}),
  failures: FailuresSchema.prefault({}),
  backbones: z.array(BackboneSchema).min(1).describe('selection backbones; one DCD row each'),
  filter: FilterSchema.prefault({}),
  select: SelectSchema.prefault({}),
  slices: SlicesSchema.prefault({}).describe('failure slices of the debug-seed set and per-slice heldout accuracy (off by default; docs/slices-and-cleaning.md)'),
  methods: z.array(MethodSchema).min(1).default(['original', 'complete', 'random', 'dcd']),
  train: TrainSchema.prefault({}),
  eval: EvalSchema.prefault({}),
  report: ReportSchema.prefault({}),
  compute: ComputeSchema.prefault({}),
  executor: ExecutorSchema.prefault({}),
  seeds: z.array(z.number().int().nonnegative()).min(1).default([0]).describe('repeats of the random parts'),
  world_seed: z
    .number()
    .int()
    .nonnegative()
    .optional()
    .describe(
      'one world for every seed: the data draw, the original model, failure sets, backbones and selections come from this seed, and `seeds` vary only what the methods draw and train (the Random draw, the fine-tunes); absent: each seed redraws everything',
    ),
});

/** A validated config with defaults filled in and every path absolute. */
export type Config = z.output<typeof ConfigSchema>;
/** What a YAML file may contain (defaults optional). */
export type ConfigInput = z.input<typeof ConfigSchema>;
export type BackboneConfig = Config['backbones'][number];
export type TrainConfig = Config['train'];
export type ImagenetDataConfig = z.output<typeof ImagenetDataSchema>;
export type FoldersDataConfig = z.output<typeof FoldersDataSchema>;
export type Method = z.output<typeof MethodSchema>;

// ---------------------------------------------------------------------------------
// Schema walking (zod v4 internals: `_zod.def`; the helpers are in ./schema-walk.ts).

type AnySchema = z.ZodType;

/** Whether the value at `keyPath` is a path field (directly or as a union option). */
function pathOptionAt(root: AnySchema, keyPath: readonly (string | number)[]): { isPath: boolean; literals: string[] } {
  const s = schemaAt(root, keyPath);
  if (!s) return { isPath: false, literals: [] };
  const inner = unwrap(s);
  if (isPathSchema(inner)) return { isPath: true, literals: [] };
  const d = def(inner);
  if (d.type !== 'union') return { isPath: false, literals: [] };
  let isPath = false;
  const literals: string[] = [];
  for (const o of d.options as AnySchema[]) {
    const u = unwrap(o);
    if (isPathSchema(u)) isPath = true;
    const od = def(u);
    if (od.type === 'literal') literals.push(...(od.values as unknown[]).map(String));
    if (od.type === 'enum') literals.push(...Object.values(od.entries as Record<string, string>));
  }
  return { isPath, literals };
}

// ---------------------------------------------------------------------------------
// Loading.

type Plain = Record<string, unknown>;

function isPlainObject(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge: objects merge key by key, everything else (arrays included) is replaced by `over`. */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(over)) {
    const out: Plain = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in base ? deepMerge(base[k], v) : v;
    return out;
  }
  return over;
}

/** A relative path in a config marked to be resolved later, once `${var}`s are known. */
interface VarOrigin {
  value: string;
  dir: string;
}

const VAR_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Resolves the path fields of one file's raw object against `dir`. Values that begin
 * with `${var}` are left for {@link interpolate}, which resolves them against the
 * folder of the file that defined the variable.
 */
function resolvePaths(raw: unknown, dir: string, keyPath: (string | number)[] = []): unknown {
  if (Array.isArray(raw)) return raw.map((v, i) => resolvePaths(v, dir, [...keyPath, i]));
  if (isPlainObject(raw)) {
    const out: Plain = {};
    for (const [k, v] of Object.entries(raw)) out[k] = keyPath.length === 0 && (k === 'vars' || k === 'extends') ? v : resolvePaths(v, dir, [...keyPath, k]);
    return out;
  }
  if (typeof raw === 'string' && !raw.startsWith('${')) {
    const { isPath, literals } = pathOptionAt(ConfigSchema, keyPath);
    if (isPath && !literals.includes(raw)) return path.resolve(dir, raw);
  }
  return raw;
}

/** Substitutes `${name}` in every string; a path field that starts with a variable is resolved against the variable's folder. */
function interpolate(raw: unknown, vars: Map<string, VarOrigin>, where: string, keyPath: (string | number)[] = []): unknown {
  if (Array.isArray(raw)) return raw.map((v, i) => interpolate(v, vars, where, [...keyPath, i]));
  if (isPlainObject(raw)) {
    const out: Plain = {};
    for (const [k, v] of Object.entries(raw)) out[k] = interpolate(v, vars, where, [...keyPath, k]);
    return out;
  }
  if (typeof raw !== 'string' || !raw.includes('${')) return raw;
  const key = ['config', ...keyPath].join('.');
  const lead = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(raw);
  const text = raw.replace(VAR_RE, (_m, name: string) => {
    const v = vars.get(name);
    if (!v)
      throw new ConfigError(
        `${where}: ${key}: unknown variable \${${name}}; define it under vars: (known: ${[...vars.keys()].join(', ') || 'none'}) or pass --set vars.${name}=VALUE`,
      );
    return v.value;
  });
  const { isPath, literals } = pathOptionAt(ConfigSchema, keyPath);
  if (isPath && !literals.includes(text) && lead) return path.resolve(vars.get(lead[1]!)!.dir, text);
  return text;
}

/** Reads one YAML file, follows its `extends:` chain, and returns the merged raw object with paths resolved. */
function loadRaw(file: string, vars: Map<string, VarOrigin>, seen: string[]): Plain {
  const abs = path.resolve(file);
  if (seen.includes(abs)) throw new ConfigError(`${abs}: extends: cycle (${[...seen, abs].join(' → ')}); remove one of the extends`);
  if (!existsSync(abs)) {
    const from = seen.length ? ` (named by extends: in ${seen[seen.length - 1]})` : '';
    throw new ConfigError(`${abs}: config file not found${from}; check the path (paths in a config are relative to the config file)`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(readFileSync(abs, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${abs}: not valid YAML: ${(e as Error).message.split('\n')[0]}; fix the syntax at that line`);
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isPlainObject(doc)) throw new ConfigError(`${abs}: expected a YAML mapping (key: value lines) at the top level, received ${describeValue(doc)}`);
  const dir = path.dirname(abs);
  let merged: Plain = {};
  const ext = doc.extends;
  if (ext !== undefined) {
    const list = typeof ext === 'string' ? [ext] : Array.isArray(ext) && ext.every((e) => typeof e === 'string') ? (ext as string[]) : null;
    if (!list) throw new ConfigError(`${abs}: config.extends: expected a file name or a list of file names, received ${describeValue(ext)}`);
    for (const base of list) merged = deepMerge(merged, loadRaw(path.resolve(dir, base), vars, [...seen, abs])) as Plain;
  }
  if (doc.vars !== undefined) {
    if (!isPlainObject(doc.vars)) throw new ConfigError(`${abs}: config.vars: expected a mapping of names to strings, received ${describeValue(doc.vars)}`);
    for (const [k, v] of Object.entries(doc.vars)) vars.set(k, { value: String(v), dir });
  }
  const own = resolvePaths(doc, dir) as Plain;
  delete own.extends;
  return deepMerge(merged, own) as Plain;
}

/** Short description of a received value for error messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (the key is missing)';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === 'object') return `a mapping with keys ${Object.keys(v).join(', ') || '(none)'}`;
  return String(v);
}

/** Parses `a.b.c=value` (the value read as YAML, so `0.1` is a number and `[1,2]` a list). */
export function parseSet(expr: string): { keyPath: string[]; value: unknown } {
  const eq = expr.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--set ${expr}: expected KEY=VALUE, e.g. --set train.lr=0.05`);
  const key = expr.slice(0, eq).trim();
  const keyPath = key.split('.');
  if (keyPath.some((k) => k === '')) throw new ConfigError(`--set ${expr}: key "${key}" has an empty part; write it as section.key, e.g. train.lr`);
  let value: unknown;
  try {
    value = YAML.parse(expr.slice(eq + 1));
  } catch {
    value = expr.slice(eq + 1);
  }
  if (value === null && expr.slice(eq + 1).trim() === '') value = '';
  return { keyPath, value };
}

/** Sets `value` at `keyPath` in `obj`, creating mappings on the way; `null` removes the key (back to its default). */
export function setDeep(obj: Plain, keyPath: readonly string[], value: unknown): void {
  let cur: Plain = obj;
  for (const k of keyPath.slice(0, -1)) {
    if (!isPlainObject(cur[k])) {
      if (value === null) return;
      cur[k] = {};
    }
    cur = cur[k] as Plain;
  }
  const last = keyPath[keyPath.length - 1]!;
  if (value === null) delete cur[last];
  else cur[last] = value;
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** `--set key=value` overrides, applied after `extends:` and the file itself. */
  set?: readonly string[];
  /** Folder that relative `--set` paths resolve against (default: the working directory). */
  cwd?: string;
}

/**
 * Loads, merges, interpolates and validates a config file. Throws {@link ConfigError}
 * naming the file, each bad key's path, what was expected, what was received, and a fix.
 */
export function loadConfig(file: string, opts: LoadConfigOptions = {}): Config {
  const cwd = opts.cwd ?? process.cwd();
  const vars = new Map<string, VarOrigin>();
  let raw = loadRaw(path.resolve(cwd, file), vars, []);
  for (const expr of opts.set ?? []) {
    const { keyPath, value } = parseSet(expr);
    if (keyPath[0] === 'vars' && keyPath.length === 2) {
      vars.set(keyPath[1]!, { value: String(value), dir: cwd });
      setDeep(raw, keyPath, String(value));
      continue;
    }
    const resolved = resolvePaths(value, cwd, keyPath);
    setDeep(raw, keyPath, resolved);
  }
  raw = interpolate(raw, vars, path.resolve(cwd, file)) as Plain;
  return validateConfig(raw, path.resolve(cwd, file));
}

/** Validates an already merged raw object (`where` names the file in errors). */
export function validateConfig(raw: unknown, where: string): Config {
  const r = ConfigSchema.safeParse(raw, { reportInput: true });
  if (r.success) return r.data;
  const lines = formatIssues(r.error.issues, ConfigSchema);
  throw new ConfigError(`${where}: invalid config (${lines.length} problem${lines.length > 1 ? 's' : ''}):\n  ${lines.join('\n  ')}`);
}

/** The folder results go to: `experiment.out`, else `runs/<name>` under `cwd`. */
export function outDirOf(cfg: Config, cwd = process.cwd()): string {
  return cfg.experiment.out ?? path.resolve(cwd, 'runs', cfg.experiment.name);
}

/** The config as YAML (the resolved config written next to the results). */
export function configToYaml(cfg: Config): string {
  return YAML.stringify(cfg, { lineWidth: 0 });
}

/** JSON with sorted keys: the canonical text that config hashes are taken of. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isPlainObject(v))
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}
