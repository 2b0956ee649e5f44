/**
 * The experiment config: one zod schema that is both the TypeScript type
 * ({@link Config}) and the run-time validation, plus YAML loading with `extends:`,
 * `vars:` interpolation, `--set` overrides and path resolution.
 *
 * Every path in a config file is relative to the file that contains it (a base
 * pulled in with `extends:` resolves its own paths against its own folder); `--set`
 * values are relative to the working directory.
 */
import { readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import YAML from 'yaml';
import { ConfigError } from './errors.js';
import { formatIssues } from './config-errors.js';
import { def, schemasAt, unwrap } from './schema-walk.js';
import { SELECT_SLICE_KEYS, SlicesSchema } from './slices-schema.js';

// ---------------------------------------------------------------------------------
// Path fields: a schema instance registered here holds a file-system path.

const PATH_SCHEMAS = new WeakSet<object>();

/** A string that names a file or folder; resolved relative to its config file. */
function pathField(describe: string) {
  return asPath(z.string().min(1).describe(describe));
}

/** Registers `s` (a string schema, e.g. a refined {@link pathField}) as a path field. */
function asPath<T extends z.ZodType>(s: T): T {
  PATH_SCHEMAS.add(s);
  return s;
}

/** True when `s` is a path field created by {@link pathField}. */
export function isPathSchema(s: unknown): boolean {
  return typeof s === 'object' && s !== null && PATH_SCHEMAS.has(s);
}

const TAGGED = new WeakMap<object, string>();

/**
 * A union of object schemas told apart by the value of `tag` (as `weights` tells a backbone's
 * kind). Unlike zod's discriminatedUnion an option's tag may be any string (a checkpoint path);
 * the error formatter reports the issues of the option whose tag matched (see config-errors.ts).
 */
function taggedUnion<const T extends readonly [z.ZodObject, ...z.ZodObject[]]>(tag: string, options: T) {
  const u = z.union(options);
  TAGGED.set(u, tag);
  return u;
}

/** The tag key of a union made by {@link taggedUnion}, else undefined. */
export function unionTag(s: unknown): string | undefined {
  return typeof s === 'object' && s !== null ? TAGGED.get(s) : undefined;
}

// ---------------------------------------------------------------------------------
// The schema, section by section.

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const ExperimentSchema = z.strictObject({
  name: z.string().regex(NAME_RE).describe('experiment name; results go to runs/<name>'),
  out: pathField('output folder (default: runs/<name> under the working directory)').optional(),
  description: z.string().optional().describe('one line on what the experiment is (shown in the report)'),
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

const rate = (describe: string) => z.number().min(0).max(1).describe(describe);
const setSize = (describe: string) => z.number().int().nonnegative().describe(describe);

/**
 * The options of the synthetic draw (src/data/synthetic.ts SyntheticOptions). Every key is
 * optional: what is left out takes the library's default (DEFAULT_SYNTHETIC), so no default is
 * written here and a stage's key holds exactly what the config says. Rules between keys
 * (subsetClasses ≤ numClasses, the two pool noise rates summing to at most 1, ...) are checked,
 * against those defaults, by the run's one validation pass (src/pipeline/config-check.ts).
 */
const syntheticShape = {
  imageSize: z.number().int().min(8).max(128).optional().describe('images are imageSize × imageSize RGB pixels (default 16)'),
  numClasses: z.number().int().min(2).max(8).optional().describe('classes (objects): at most one per drawn shape, 8 (default 6)'),
  numContexts: z.number().int().min(2).optional().describe('contexts (backgrounds); at most 8 for variant textured (default 6)'),
  subsetClasses: z.number().int().min(1).optional().describe('Y_sub: the first subsetClasses classes, the only ones of the weak pool and the debug sets; at most numClasses (default 4)'),
  train: z
    .strictObject({
      size: setSize('images of the train set (default 2400)').optional(),
      homeRate: rate('fraction of each class\'s train images in its home context (default 0.75)').optional(),
    })
    .optional()
    .describe('the original model\'s train set'),
  test: z.strictObject({ size: setSize('images of the in-distribution test set (default 1200)').optional() }).optional().describe('the in-distribution test set (the "INet" analogue), drawn like train'),
  shifted: z
    .strictObject({
      size: setSize('images of each shifted set (default 800)').optional(),
      rareRate: rate('fraction of the shifted images in a non-home context (default 0.8)').optional(),
    })
    .optional()
    .describe('the two shifted sets (mfreq and complement)'),
  pool: z
    .strictObject({
      size: setSize('images of the weak pool (default 8000)').optional(),
      homeRate: rate('fraction of pool images in their weak class\'s home context (default 0.4)').optional(),
      wrongLabelRate: rate('fraction of pool images that show another class than their weak label (default 0.15)').optional(),
      objectlessRate: rate('fraction of pool images with no object (default 0.15); with wrongLabelRate at most 1').optional(),
      offTopicRate: rate('fraction of pool images showing an object of no class, a random polygon: unrelated web hits (default 0)').optional(),
      nearDuplicateRate: z.number().min(0).max(0.7).optional().describe('fraction of pool images that are near-copies of another pool image of the same query (reposts; contrast ±5%, brightness ±3%, fresh noise), at most 0.7 (default 0)'),
      clusterSize: z.number().int().min(2).optional().describe('images per near-duplicate cluster, the original included (default 5)'),
    })
    .optional()
    .describe('the weak pool: classes of Y_sub only, every context'),
  objectScale: z
    .tuple([z.number().gt(0).max(1), z.number().gt(0).max(1)])
    .optional()
    .describe('[min, max] object size as a fraction of imageSize, 0 < min ≤ max ≤ 1 (default [0.45, 0.65])'),
  pixelNoise: z.number().nonnegative().optional().describe('std of the Gaussian pixel noise in [0, 1] pixel units (default 0.03)'),
  objectContrast: z.number().min(0).max(1).optional().describe('least luminance difference between an object and its background (default 0.35)'),
  variant: z.enum(['flat', 'textured']).optional().describe('flat: a context is a colour plus a light texture; textured: contexts are procedural textures whose colours come from one shared distribution (default flat)'),
};

const SyntheticSchema = z.strictObject(syntheticShape);

/** `data.fashion`: the synthetic options (numClasses follows `classes`) plus the garment classes. */
const FashionSchema = z.strictObject({
  ...(({ numClasses: _n, ...rest }) => rest)(syntheticShape),
  classes: z
    .array(z.number().int().min(0).max(9))
    .min(2)
    .refine((c) => new Set(c).size === c.length, { message: 'expected distinct Fashion-MNIST labels; remove the repeated one' })
    .optional()
    .describe('Fashion-MNIST labels 0..9 used as classes 0..n-1, in this order (default [0, 1, 3, 7, 8, 9])'),
});

const DataSchema = z.strictObject({
  kind: z.enum(['synthetic', 'fashion-mnist', 'imagenet', 'folders']).describe('which benchmark the sets come from'),
  synthetic: SyntheticSchema.optional().describe('kind synthetic: the options of the synthetic draw (src/data/synthetic.ts)'),
  fashion: FashionSchema.optional().describe('kind fashion-mnist: the options of the Fashion-MNIST shift (src/data/fashion-shift.ts)'),
  fashion_dir: pathField('folder with the Fashion-MNIST IDX .gz files').default('/usr/share/datasets/fashion-mnist'),
  imagenet: ImagenetDataSchema.optional().describe('kind imagenet: ILSVRC2012, ImageNet-V2 and the weak pool'),
  folders: FoldersDataSchema.optional().describe('kind folders: a user\'s own ImageFolder sets (`dcd init DIR` writes this section)'),
  image_size: z.number().int().min(8).max(1024).optional().describe('kind folders: every image is resized (shorter side) and centre-cropped to this once, in the data stage (default: the train model\'s input size)'),
  classes: z.number().int().positive().optional().describe('number of classes (default: from the data)'),
});

const TrainFinetuneSchema = z.strictObject({
  epochs: z.number().int().positive().default(10).describe('epochs of fine-tuning'),
  lr: z.number().positive().default(0.01).describe('peak learning rate of fine-tuning'),
  schedule: z.enum(['step', 'cosine', 'constant']).default('cosine').describe('learning-rate schedule of fine-tuning'),
  warmup_epochs: z.number().nonnegative().default(0).describe('epochs of linear warm-up'),
  max_steps: z.number().int().positive().optional().describe('stop after this many optimiser steps'),
});

const TrainSchema = z.strictObject({
  model: z.string().min(1).default('resnet50').describe('registry name of the trained classifier'),
  init: z.enum(['scratch', 'finetune']).default('scratch').describe('from scratch, or fine-tune the original model'),
  epochs: z.number().int().positive().default(90).describe('training epochs'),
  batch_size: z.number().int().positive().default(256).describe('images per optimiser step (split into grad_accum micro-batches)'),
  grad_accum: z.number().int().positive().default(1).describe('micro-batches per optimiser step'),
  lr: z.number().positive().default(0.1).describe('peak learning rate for batch_size × grad_accum'),
  schedule: z.enum(['step', 'cosine', 'constant']).default('step').describe('learning-rate schedule'),
  step_epochs: z.array(z.number().int().positive()).default([30, 60, 80]).describe('epochs where a step schedule multiplies lr by gamma'),
  gamma: z.number().positive().max(1).default(0.1).describe('factor of the step schedule'),
  warmup_epochs: z.number().nonnegative().default(0).describe('epochs of linear learning-rate warm-up'),
  momentum: z.number().min(0).max(1).default(0.9).describe('SGD momentum'),
  nesterov: z.boolean().default(false).describe('Nesterov momentum'),
  weight_decay: z.number().nonnegative().default(1e-4).describe('L2 weight decay'),
  decay_bn_bias: z.boolean().default(true).describe('apply weight decay to BatchNorm and bias parameters'),
  label_smoothing: z.number().min(0).max(1).default(0).describe('label smoothing of the cross-entropy'),
  augment: z.enum(['none', 'flip', 'random_resized_crop']).default('random_resized_crop').describe('training augmentation: none, horizontal flip, or random-resized crop with flip'),
  max_steps: z.number().int().positive().optional().describe('stop after this many optimiser steps (short demo schedules)'),
  checkpoint_every_steps: z.number().int().nonnegative().default(0).describe('0: checkpoint at each epoch end only'),
  precision: z.enum(['fp32', 'bf16']).default('fp32').describe('mixed precision: bf16 convolutions/matmuls, fp32 master weights and BatchNorm (native backend)'),
  finetune: TrainFinetuneSchema.prefault({}).describe(
    'schedule used instead when init = finetune',
  ),
});

const WeightsRef = z.union([z.enum(['official', 'random', 'demo', 'ssl']), pathField('checkpoint file')]);

const widths = () => z.array(z.number().int().min(1)).min(1).describe('conv widths of the small CNN, one per stage (default [16, 32, 64])');
const pair = (lo: z.ZodNumber, describe: string) => z.tuple([lo, z.number()]).describe(describe);
const prob = (describe: string) => z.number().min(0).max(1).describe(describe);

/** `pretrain` of a `weights: demo` backbone (src/train/demo-backbones.ts DemoBackboneSpec); library defaults apply to what is left out. */
const DemoPretrainSchema = z.strictObject({
  kind: z
    .enum(['broad_cnn', 'random_cnn', 'self'])
    .optional()
    .describe('broad_cnn: a small CNN trained on a broad draw (or, data.kind folders, on pretrain.data); random_cnn: untrained, seeded; self: the original model\'s own features (default broad_cnn)'),
  widths: widths().optional(),
  broadSize: z.number().int().min(1).optional().describe('broad_cnn on synthetic or fashion-mnist data: images of the broad draw (default 3000)'),
  steps: z.number().int().nonnegative().optional().describe('broad_cnn: training steps of batch 64 (default 400)'),
  lr: z.number().positive().optional().describe('broad_cnn: Adam learning rate (default 0.002)'),
  seed: z.number().int().nonnegative().optional().describe('seed of the weights and of the broad draw, fixed across experiment seeds like a public checkpoint (default 1000)'),
  data: z
    .union([z.literal('pool'), pathField('an ImageFolder the backbone is trained on')])
    .optional()
    .describe('data.kind folders: what a broad_cnn learns from: "pool" (the weak labels; default) or an ImageFolder (never test, mfreq or complement)'),
});

/** Multi-crop augmentation of self-supervised pretraining (src/ssl/augment.ts MultiCropOptions). */
const CropsSchema = z.strictObject({
  globalCrops: z.number().int().min(2).optional().describe('global views per image, ≥ 2: the teacher sees them (default 2)'),
  globalSize: z.number().int().min(4).optional().describe('side of a global view in pixels (default 32)'),
  globalScale: pair(z.number().gt(0).max(1), '[min, max] area fraction of a global view, 0 < min ≤ max ≤ 1 (default [0.4, 1])').optional(),
  localCrops: z.number().int().nonnegative().optional().describe('local views per image (default 4)'),
  localSize: z.number().int().min(4).optional().describe('side of a local view in pixels (default 16)'),
  localScale: pair(z.number().gt(0).max(1), '[min, max] area fraction of a local view, 0 < min ≤ max ≤ 1 (default [0.1, 0.4])').optional(),
  ratio: pair(z.number().gt(0), '[min, max] aspect ratio of the crops, 0 < min ≤ max (default [0.75, 1.33])').optional(),
  jitter: z.tuple([z.number(), z.number(), z.number(), z.number()]).optional().describe('colour-jitter strengths: brightness, contrast, saturation, hue (default [0.4, 0.4, 0.2, 0.1])'),
  pJitter: prob('probability of colour jitter (default 0.8)').optional(),
  pGray: prob('probability of grayscale (default 0.2)').optional(),
  pFlip: prob('probability of a horizontal flip (default 0.5)').optional(),
  pBlur: z.tuple([prob('global view 1'), prob('global views ≥ 2'), prob('local views')]).optional().describe('blur probability of global view 1, global views ≥ 2 and local views (default [1, 0.1, 0.5])'),
  pSolarize: prob('solarisation probability of global views ≥ 2 (default 0.2)').optional(),
  mean: z.tuple([z.number(), z.number(), z.number()]).optional().describe('per-channel mean subtracted last, on [0, 1] pixels (default [0.5, 0.5, 0.5])'),
  std: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]).optional().describe('per-channel std divided by last (default [0.25, 0.25, 0.25])'),
});

/** `pretrain` of a `weights: ssl` backbone (src/ssl/train.ts DinoOptions, plus its data); library defaults apply to what is left out. */
const SslPretrainSchema = z.strictObject({
  method: z.enum(['dino', 'simclr']).optional().describe('dino: student/teacher distillation; simclr: NT-Xent on two global views (default dino)'),
  data: z
    .union([z.enum(['pool', 'broad']), pathField('a folder of images (searched recursively)')])
    .optional()
    .describe('what the backbone is pretrained on, labels ignored: "pool" (the weak pool; synthetic and fashion-mnist data), "broad" (a seed-independent broad draw; synthetic and fashion-mnist data) or a folder of images — never a debug or test set (default pool)'),
  broadSize: z.number().int().min(1).optional().describe('data: broad: images of the broad draw (default 3000)'),
  widths: widths().optional(),
  epochs: z.number().int().min(1).optional().describe('passes over the pretraining images (default 10)'),
  maxSteps: z.number().int().min(1).optional().describe('cap on the total steps (a short schedule over part of the epochs)'),
  batchSize: z.number().int().min(1).optional().describe('images per step; at most the number of pretraining images (default 64)'),
  lr: z.number().positive().optional().describe('peak AdamW learning rate (default 0.002)'),
  minLr: z.number().nonnegative().optional().describe('floor of the cosine learning-rate schedule (default 1e-5)'),
  warmupEpochs: z.number().nonnegative().optional().describe('epochs of linear learning-rate warm-up (default 1)'),
  weightDecay: z.number().nonnegative().optional().describe('AdamW weight decay, not on biases (default 0.04)'),
  temperature: z.number().positive().optional().describe('simclr: temperature τ of NT-Xent (default 0.2)'),
  momentum: prob('dino: base teacher EMA momentum, raised to 1 by a cosine (default 0.99)').optional(),
  warmupTeacherTemp: z.number().positive().optional().describe('dino: teacher temperature at the start (default 0.04)'),
  teacherTemp: z.number().positive().optional().describe('dino: teacher temperature after warmupTeacherTempEpochs (default 0.04)'),
  warmupTeacherTempEpochs: z.number().nonnegative().optional().describe('dino: epochs of teacher-temperature warm-up (default 0)'),
  studentTemp: z.number().positive().optional().describe('dino: student temperature (default 0.1)'),
  centerMomentum: prob('dino: EMA momentum of the centre (default 0.9)').optional(),
  freezeLastLayerEpochs: z.number().nonnegative().optional().describe('dino: epochs during which the head\'s last layer is not updated (default 0)'),
  head: z
    .strictObject({
      hiddenDim: z.number().int().min(1).optional().describe('hidden width (default 256)'),
      bottleneckDim: z.number().int().min(1).optional().describe('bottleneck width (default 64)'),
      outDim: z.number().int().min(1).optional().describe('output dimension K (default 256)'),
      layers: z.number().int().min(1).optional().describe('linear layers (default 3)'),
      useBn: z.boolean().optional().describe('BatchNorm between the layers (default true)'),
    })
    .optional()
    .describe('dino: the projection head'),
  crops: CropsSchema.optional().describe('multi-crop augmentation (src/ssl/augment.ts)'),
  seed: z.number().int().nonnegative().optional().describe('seed of the weights, batches and crops (default 1000)'),
  checkpointEvery: z.number().int().min(1).optional().describe('steps between resumable checkpoints (default 50)'),
});

const backboneName = () => z.string().min(1).describe('registry name (dino_vits8, dino_vits16, resnet50, resnet50_robust, resnet_tiny, vit_tiny, ...); for demo and ssl backbones only a name');
const labelField = () => z.string().regex(NAME_RE).optional().describe('row label suffix (default: name)');

/**
 * A selection backbone: one option per kind of `weights`. `demo` and `ssl` are trained by the
 * run and take a `pretrain` block of their own shape; official, random and checkpoint weights
 * take none. Errors name the option the `weights` value picked (see {@link taggedUnion}).
 */
const BackboneSchema = taggedUnion('weights', [
  z.strictObject({
    name: backboneName(),
    weights: z
      .union([z.enum(['official', 'random']), asPath(pathField('a checkpoint file (.pth, .pt or .safetensors)').refine((w) => w !== 'demo' && w !== 'ssl', { message: 'demo and ssl weights are trained by the run', abort: true }))])
      .default('official')
      .describe('official (the published weights: give their file here, this machine downloads nothing), random (seeded), or a checkpoint path (.pth, .pt, .safetensors)'),
    label: labelField(),
  }),
  z.strictObject({
    name: backboneName(),
    weights: z.literal('demo').describe('demo: a small CNN the run trains or draws (pretrain.kind)'),
    label: labelField(),
    pretrain: DemoPretrainSchema.optional().describe('how the demo backbone is built (src/train/demo-backbones.ts)'),
  }),
  z.strictObject({
    name: backboneName(),
    weights: z.literal('ssl').describe('ssl: a small CNN the run pretrains self-supervised (DINO or SimCLR)'),
    label: labelField(),
    pretrain: SslPretrainSchema.optional().describe('the self-supervised pretraining (src/ssl/train.ts)'),
  }),
]);

const OriginalSchema = z.strictObject({
  checkpoint: pathField('a trained original model; when absent the run trains it with `train`').optional(),
  model: z.string().min(1).optional().describe('registry name of the original model (default: train.model)'),
  epochs: z.number().int().positive().optional().describe('override train.epochs when the run trains the original'),
  max_steps: z.number().int().positive().optional().describe('override train.max_steps when the run trains the original'),
  lr: z.number().positive().optional().describe('override train.lr when the run trains the original'),
});

const FailureModelSchema = z.strictObject({
  name: z.string().min(1).describe('registry name of the model'),
  checkpoint: WeightsRef.default('official').describe('its trained weights: a checkpoint file (failures.mode multi needs one)'),
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
  enabled: z.boolean().default(true).describe('drop pool images near a test image (leakage filter) before selection'),
  backbone: BackboneSchema.prefault({ name: 'resnet50_robust' }).describe('features of the leakage filter (robust ResNet-50)'),
  scope: z.enum(['all', 'class']).default('all').describe('min distance over all test images, or only those of the weak class'),
  normalize: z.boolean().default(false).describe('L2-normalise features first'),
});

/** select.k_train's default: the paper's 46 debug-train images per seed image. */
export const DEFAULT_K_TRAIN = 46;

const SelectSchema = z.strictObject({
  k_val: z.number().int().nonnegative().default(5).describe('de-val images per seed image'),
  k_train: z.number().int().positive().default(DEFAULT_K_TRAIN).describe('debug-train images per seed image (ignored when pool_share is set: dcd run then warns if k_train is not the default)'),
  pool_share: z
    .number()
    .gt(0)
    .max(1)
    .optional()
    .describe('size k_train once the failures are known: the debug-train set takes about this share of the subset classes\' pool, k_train = max(1, floor(pool_share × pool / seed images)) (the paper: 47,426 / 952,022 = 0.05); absent: k_train as given'),
  candidates: z.enum(['weak_label', 'any_label']).default('weak_label').describe('restrict candidates to the seed class (W\'_y), or use all of W\''),
  normalize: z.boolean().default(false).describe('L2-normalise features before distances'),
  // select.per_slice and select.clean* (docs/slices-and-cleaning.md); their checks across keys run in checkConfig
  ...SELECT_SLICE_KEYS,
});

const MethodSchema = z.enum(['original', 'complete', 'random', 'dcd']);

const EvalSetSchema = z.enum(['seed', 'heldout', 'mfreq', 'complement', 'test', 'deval']);

const EvalSchema = z.strictObject({
  sets: z.array(EvalSetSchema).min(1).default(['seed', 'heldout', 'mfreq', 'complement', 'test']).describe('sets every trained model is evaluated on'),
  batch_size: z.number().int().positive().default(128).describe('images per inference batch'),
});

const ReportSchema = z.strictObject({
  formats: z.array(z.enum(['md', 'csv', 'json', 'html'])).min(1).default(['md', 'csv', 'json', 'html']).describe('files the report is written as'),
  title: z.string().optional().describe('report title (default: the experiment name)'),
  retention: z
    .strictObject({
      enabled: z.boolean().default(true).describe('add the backbones\' class/context retention table (paper Fig. 7) when the set has a context column'),
      set: z.enum(['mfreq', 'complement', 'test', 'train']).default('mfreq').describe('the set whose neighbourhoods are measured'),
      ks: z.array(z.number().int().positive()).min(1).default([1, 5, 10, 20]).describe('neighbourhood sizes k'),
      rule: z.enum(['lenient', 'strict']).default('lenient').describe('lenient: a neighbour retains the class (or context) if it shares it; strict: if it shares both'),
    })
    .prefault({})
    .describe('class and context retention of the backbones\' nearest neighbours (paper Fig. 7)'),
});

const ComputeSchema = z.strictObject({
  embed_batch_size: z.number().int().positive().default(64).describe('images per embedding batch'),
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
        ['default', 'data', 'original', 'failures', 'backbone', 'embed', 'filter', 'select', 'baseline', 'train', 'evaluate', 'retention', 'gallery', 'slices', 'map', 'report'].map((k) => [
          k,
          SlurmResourcesSchema.optional().describe(k === 'default' ? 'resources of every stage\'s jobs (a stage kind\'s own entry wins)' : `resources of the ${k} stage's jobs`),
        ]),
      ),
    )
    .prefault({})
    .describe('sbatch resources per stage kind (dcd run --executor slurm)'),
});

/** The whole experiment config. Keys not listed here are errors. */
export const ConfigSchema = z.strictObject({
  extends: z.union([z.string(), z.array(z.string())]).optional().describe('base config(s), merged under this file'),
  vars: z.record(z.string(), z.string()).default({}).describe('strings substituted for ${name} in other values'),
  experiment: ExperimentSchema.describe('name and output folder of the experiment'),
  data: DataSchema.describe('the image sets: train, test, mfreq, complement and the weak pool'),
  original: OriginalSchema.prefault({}).describe('the original model, whose failures are debugged'),
  failures: FailuresSchema.prefault({}).describe('how failure sets (debug-seed, debug-heldout) and Y_sub are found'),
  backbones: z.array(BackboneSchema).min(1).describe('selection backbones; one DCD row each'),
  filter: FilterSchema.prefault({}).describe('the leakage filter: pool images too close to a test image are dropped'),
  select: SelectSchema.prefault({}).describe('DCD selection: nearest pool neighbours of each seed image'),
  slices: SlicesSchema.prefault({}).describe('failure slices of the debug-seed set and per-slice heldout accuracy (off by default; docs/slices-and-cleaning.md)'),
  methods: z.array(MethodSchema).min(1).default(['original', 'complete', 'random', 'dcd']).describe('rows of the result table: the original model, fine-tuned on the complete pool, on a random draw, and on DCD\'s selection per backbone'),
  train: TrainSchema.prefault({}).describe('training of the original model (unless given) and of every method'),
  eval: EvalSchema.prefault({}).describe('evaluation of the trained models'),
  report: ReportSchema.prefault({}).describe('the report: formats, title, retention table'),
  compute: ComputeSchema.prefault({}).describe('batch sizes, decoding concurrency and precision'),
  executor: ExecutorSchema.prefault({}).describe('where stages run: resources of dcd run --executor slurm'),
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
export type BackboneConfig = Config['backbones'][number];
export type DemoBackboneConfig = Extract<BackboneConfig, { weights: 'demo' }>;
export type SslBackboneConfig = Extract<BackboneConfig, { weights: 'ssl' }>;
export type DemoPretrainConfig = z.output<typeof DemoPretrainSchema>;
export type SslPretrainConfig = z.output<typeof SslPretrainSchema>;
export type CropsConfig = z.output<typeof CropsSchema>;
export type SyntheticConfig = z.output<typeof SyntheticSchema>;

/** A backbone the run trains or draws (`weights: demo`). */
export function isDemoBackbone(b: BackboneConfig): b is DemoBackboneConfig {
  return b.weights === 'demo';
}

/** A backbone the run pretrains self-supervised (`weights: ssl`). */
export function isSslBackbone(b: BackboneConfig): b is SslBackboneConfig {
  return b.weights === 'ssl';
}

/** The `pretrain` block of a demo or ssl backbone; undefined for given weights. */
export function pretrainOf(b: BackboneConfig): DemoPretrainConfig | SslPretrainConfig | undefined {
  return isDemoBackbone(b) || isSslBackbone(b) ? b.pretrain : undefined;
}

export type FoldersDataConfig = z.output<typeof FoldersDataSchema>;
export type Method = z.output<typeof MethodSchema>;

// ---------------------------------------------------------------------------------
// Schema walking (zod v4 internals: `_zod.def`; the helpers are in ./schema-walk.ts).

type AnySchema = z.ZodType;

/**
 * Whether the value at `keyPath` is a path field (directly or as a union option, in any option
 * of a union on the way), and the keywords that are not paths there (`official`, `pool`, ...).
 */
function pathOptionAt(root: AnySchema, keyPath: readonly (string | number)[]): { isPath: boolean; literals: string[] } {
  let isPath = false;
  const literals: string[] = [];
  const visit = (s: AnySchema) => {
    const u = unwrap(s);
    if (isPathSchema(u)) isPath = true;
    const d = def(u);
    if (d.type === 'union') for (const o of d.options as AnySchema[]) visit(o);
    if (d.type === 'literal') literals.push(...(d.values as unknown[]).map(String));
    if (d.type === 'enum') literals.push(...Object.values(d.entries as Record<string, string>));
  };
  for (const s of schemasAt(root, keyPath)) visit(s);
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
  return mapStrings(raw, keyPath, (s, at) => {
    if (s.startsWith('${') || (keyPath.length === 0 && (at[0] === 'vars' || at[0] === 'extends'))) return s;
    const { isPath, literals } = pathOptionAt(ConfigSchema, at);
    return isPath && !literals.includes(s) ? path.resolve(dir, s) : s;
  });
}

/** `raw` with every string `s` at key path `at` (inside lists and mappings) replaced by `f(s, at)`. */
function mapStrings(raw: unknown, keyPath: (string | number)[], f: (s: string, at: (string | number)[]) => unknown): unknown {
  if (Array.isArray(raw)) return raw.map((v, i) => mapStrings(v, [...keyPath, i], f));
  if (isPlainObject(raw)) return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, mapStrings(v, [...keyPath, k], f)]));
  return typeof raw === 'string' ? f(raw, keyPath) : raw;
}

/** Substitutes `${name}` in every string; a path field that starts with a variable is resolved against the variable's folder. */
function interpolate(raw: unknown, vars: Map<string, VarOrigin>, where: string): unknown {
  return mapStrings(raw, [], (s, keyPath) => {
    if (!s.includes('${')) return s;
    const lead = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(s);
    const text = s.replace(VAR_RE, (_m, name: string) => {
      const v = vars.get(name);
      if (!v)
        throw new ConfigError(
          `${where}: ${['config', ...keyPath].join('.')}: unknown variable \${${name}}; define it under vars: (known: ${[...vars.keys()].join(', ') || 'none'}) or pass --set vars.${name}=VALUE`,
        );
      return v.value;
    });
    const { isPath, literals } = pathOptionAt(ConfigSchema, keyPath);
    return isPath && !literals.includes(text) && lead ? path.resolve(vars.get(lead[1]!)!.dir, text) : text;
  });
}

/** Reads one YAML file, follows its `extends:` chain, and returns the merged raw object with paths resolved. */
function loadRaw(file: string, vars: Map<string, VarOrigin>, seen: string[]): Plain {
  const abs = path.resolve(file);
  if (seen.includes(abs)) throw new ConfigError(`${abs}: extends: cycle (${[...seen, abs].join(' → ')}); remove one of the extends`);
  if (!existsSync(abs)) {
    const from = seen.length ? ` (named by extends: in ${seen[seen.length - 1]})` : '';
    throw new ConfigError(`${abs}: config file not found${from}; check the path (paths in a config are relative to the config file)`);
  }
  if (statSync(abs).isDirectory()) throw new ConfigError(`${abs}: is a folder; expected a YAML config file (e.g. ${path.join(abs, 'config.yaml')}); \`dcd init\` writes one`);
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
  const lines = formatIssues(r.error.issues, ConfigSchema, { tagOf: unionTag, input: raw });
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
