/**
 * The model registry: one explicit table of backbones (timm's shape: a name plus a
 * pretrained config). Each entry gives the architecture, the eval preprocessing, the
 * feature width, the official weight file (name, URL, sha256) and the key-mapping
 * family used to read that file. No registration by import side effect.
 *
 * Besides the fixed table, one parameterised family: the embedded demo's small CNN,
 * `small_cnn` or `small_cnn:<w1>-<w2>-...` (conv widths; src/backbones-demo). The demo's
 * code is reached from the rest of dcd only through this file.
 */
import { ConfigError } from '../core/errors.js';
import type { ImageModel, Preprocess } from '../core/types.js';
import { ResNet, type ResNetConfig } from './resnet.js';
import { ViT, type ViTConfig } from './vit.js';
import { createSmallCnn, SMALL_CNN_PREPROCESS } from '../backbones-demo/small-cnn.js';
import { trainDemoBackbone, trainDemoBackboneOn, type DemoBackboneSpec, type DemoTrainingImages } from '../backbones-demo/backbones.js';
import type { DeepPartial, ObjectSource, SyntheticOptions } from '../data/synthetic.js';

/** Which key-mapping table reads this model's official checkpoints (see keymap.ts). */
export type KeyFamily = 'torchvision' | 'madrylab' | 'dino';

/** Where the official weights come from. */
export interface OfficialWeights {
  /** File name as published. */
  file: string;
  /** Download URL; undefined when it must be given with `--url`. */
  url?: string;
  /** Full hex sha256 when known. */
  sha256?: string;
  /** Hex prefix of the sha256 when only that is published (torchvision puts it in the file name). */
  sha256Prefix?: string;
  /** Where the URL and hash come from. */
  source: string;
}

/** A registry entry. */
export interface ModelSpec {
  name: string;
  arch: { kind: 'resnet'; config: ResNetConfig } | { kind: 'vit'; config: ViTConfig } | { kind: 'small_cnn'; config: { widths: number[] } };
  preprocess: Preprocess;
  numFeatures: number;
  /** Head classes when createModel is not told otherwise (0 = features only). */
  defaultNumClasses: number;
  keyFamily: KeyFamily;
  weights?: OfficialWeights;
  description: string;
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
const IMAGENET_STD = [0.229, 0.224, 0.225] as const;
const IDENTITY_MEAN = [0, 0, 0] as const;
const IDENTITY_STD = [1, 1, 1] as const;
const INET_EVAL: Preprocess = { resize: 256, crop: 224, mean: IMAGENET_MEAN, std: IMAGENET_STD };

const RESNET50: ResNetConfig = { block: 'bottleneck', layers: [3, 4, 6, 3], widths: [64, 128, 256, 512] };
const RESNET50_ROBUST: ResNetConfig = { ...RESNET50, inputNormalize: { mean: IMAGENET_MEAN, std: IMAGENET_STD } };
const BOTTLENECK_TINY: ResNetConfig = { block: 'bottleneck', layers: [1, 1, 1, 1], widths: [4, 8, 16, 32] };
const VITS: Omit<ViTConfig, 'patch'> = { dim: 384, depth: 12, heads: 6, mlpRatio: 4, imgSize: 224 };

const MADRY_SOURCE = 'MadryLab robustness library README (github.com/MadryLab/robustness); Dropbox link, dl=1 serves the file';

/** Every registered model. */
export const MODEL_SPECS: Readonly<Record<string, ModelSpec>> = {
  resnet50: {
    name: 'resnet50',
    description: 'torchvision ResNet-50 (IMAGENET1K_V1)',
    arch: { kind: 'resnet', config: RESNET50 },
    preprocess: INET_EVAL,
    numFeatures: 2048,
    defaultNumClasses: 1000,
    keyFamily: 'torchvision',
    weights: {
      file: 'resnet50-0676ba61.pth',
      url: 'https://download.pytorch.org/models/resnet50-0676ba61.pth',
      sha256Prefix: '0676ba61',
      source: 'torchvision ResNet50_Weights.IMAGENET1K_V1; torchvision publishes only the hash prefix (in the file name)',
    },
  },
  resnet50_robust: {
    name: 'resnet50_robust',
    description: 'MadryLab robust ResNet-50, ImageNet L2 ε=3 (normalises inside the model)',
    arch: { kind: 'resnet', config: RESNET50_ROBUST },
    // The model applies ImageNet mean/std itself (MadryLab's InputNormalize).
    preprocess: { resize: 256, crop: 224, mean: IDENTITY_MEAN, std: IDENTITY_STD },
    numFeatures: 2048,
    defaultNumClasses: 1000,
    keyFamily: 'madrylab',
    weights: { file: 'imagenet_l2_3_0.pt', url: 'https://www.dropbox.com/s/knf4uimlqsi1yz8/imagenet_l2_3_0.pt?dl=1', source: MADRY_SOURCE },
  },
  resnet50_robust_linf4: {
    name: 'resnet50_robust_linf4',
    description: 'MadryLab robust ResNet-50, ImageNet L∞ ε=4/255 (normalises inside the model)',
    arch: { kind: 'resnet', config: RESNET50_ROBUST },
    preprocess: { resize: 256, crop: 224, mean: IDENTITY_MEAN, std: IDENTITY_STD },
    numFeatures: 2048,
    defaultNumClasses: 1000,
    keyFamily: 'madrylab',
    weights: { file: 'imagenet_linf_4.pt', url: 'https://www.dropbox.com/s/axfuary2w1cnyrg/imagenet_linf_4.pt?dl=1', source: MADRY_SOURCE },
  },
  dino_vits16: {
    name: 'dino_vits16',
    description: 'DINO ViT-S/16 (teacher backbone)',
    arch: { kind: 'vit', config: { ...VITS, patch: 16 } },
    preprocess: INET_EVAL,
    numFeatures: 384,
    defaultNumClasses: 0,
    keyFamily: 'dino',
    weights: {
      file: 'dino_deitsmall16_pretrain.pth',
      url: 'https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth',
      source: 'facebookresearch/dino README; no sha256 is published',
    },
  },
  dino_vits8: {
    name: 'dino_vits8',
    description: 'DINO ViT-S/8 (teacher backbone)',
    arch: { kind: 'vit', config: { ...VITS, patch: 8 } },
    preprocess: INET_EVAL,
    numFeatures: 384,
    defaultNumClasses: 0,
    keyFamily: 'dino',
    weights: {
      file: 'dino_deitsmall8_pretrain.pth',
      url: 'https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth',
      source: 'facebookresearch/dino README; no sha256 is published',
    },
  },
  resnet_tiny: {
    name: 'resnet_tiny',
    description: 'small torchvision-style ResNet (BasicBlock [1,1,1,1], widths 16/32/64/128) for demos and tests at 32–64 px',
    arch: { kind: 'resnet', config: { block: 'basic', layers: [1, 1, 1, 1], widths: [16, 32, 64, 128] } },
    preprocess: { resize: 32, crop: 32, mean: IMAGENET_MEAN, std: IMAGENET_STD },
    numFeatures: 128,
    defaultNumClasses: 10,
    keyFamily: 'torchvision',
  },
  resnet_bottleneck_tiny: {
    name: 'resnet_bottleneck_tiny',
    description: 'ResNet-50 topology at reduced depth and width (Bottleneck [1,1,1,1], widths 4/8/16/32): parity fixtures',
    arch: { kind: 'resnet', config: BOTTLENECK_TINY },
    preprocess: { resize: 32, crop: 32, mean: IMAGENET_MEAN, std: IMAGENET_STD },
    numFeatures: 128,
    defaultNumClasses: 10,
    keyFamily: 'torchvision',
  },
  resnet_robust_tiny: {
    name: 'resnet_robust_tiny',
    description: 'resnet_bottleneck_tiny with MadryLab input normaliser and key family: parity fixtures',
    arch: { kind: 'resnet', config: { ...BOTTLENECK_TINY, inputNormalize: { mean: IMAGENET_MEAN, std: IMAGENET_STD } } },
    preprocess: { resize: 32, crop: 32, mean: IDENTITY_MEAN, std: IDENTITY_STD },
    numFeatures: 128,
    defaultNumClasses: 10,
    keyFamily: 'madrylab',
  },
  vit_tiny: {
    name: 'vit_tiny',
    description: 'small DINO-style ViT (patch 8, dim 64, depth 2, heads 2, 32 px grid) for demos and tests',
    arch: { kind: 'vit', config: { patch: 8, dim: 64, depth: 2, heads: 2, mlpRatio: 4, imgSize: 32 } },
    preprocess: { resize: 32, crop: 32, mean: IMAGENET_MEAN, std: IMAGENET_STD },
    numFeatures: 64,
    defaultNumClasses: 0,
    keyFamily: 'dino',
  },
};

/** The demo's small CNN: `small_cnn` (widths 16-32-64) or `small_cnn:<w1>-<w2>-...`. */
const SMALL_CNN_NAME = /^small_cnn(?::([0-9]+(?:-[0-9]+)*))?$/;

function smallCnnSpec(name: string): ModelSpec | undefined {
  const m = SMALL_CNN_NAME.exec(name);
  if (!m) return undefined;
  const widths = m[1] ? m[1].split('-').map(Number) : [16, 32, 64];
  return {
    name,
    description: `the embedded demo's small CNN, conv widths ${widths.join('-')} (src/backbones-demo)`,
    arch: { kind: 'small_cnn', config: { widths } },
    preprocess: SMALL_CNN_PREPROCESS,
    numFeatures: widths[widths.length - 1]!,
    defaultNumClasses: 0,
    // its checkpoints are dcd's own safetensors (PyTorch-style names)
    keyFamily: 'torchvision',
  };
}

/** Registered model names. */
export function modelNames(): string[] {
  return Object.keys(MODEL_SPECS);
}

/** The registry entry of `name`; throws a ConfigError listing the valid names. */
export function getModelSpec(name: string): ModelSpec {
  const s = MODEL_SPECS[name] ?? smallCnnSpec(name);
  if (!s) throw new ConfigError(`unknown model "${name}"; expected one of ${modelNames().join(', ')}, or small_cnn[:widths]`);
  return s;
}

/** Options of {@link createModel}. */
export interface CreateModelOptions {
  /** Classes of the linear head (0 = none); default the entry's `defaultNumClasses`. */
  numClasses?: number;
  /** Seed of the random initialisation (default 0). */
  seed?: number;
}

/** Builds a registered model with seeded random weights (torchvision / DINO init). */
export function createModel(name: string, opts: CreateModelOptions = {}): ImageModel {
  const spec = getModelSpec(name);
  const numClasses = opts.numClasses ?? spec.defaultNumClasses;
  if (!Number.isInteger(numClasses) || numClasses < 0) throw new ConfigError(`createModel(${name}): numClasses must be an integer ≥ 0, received ${numClasses}`);
  const o = { numClasses, seed: opts.seed ?? 0 };
  switch (spec.arch.kind) {
    case 'resnet':
      return new ResNet(name, spec.arch.config, o);
    case 'vit':
      return new ViT(name, spec.arch.config, o);
    case 'small_cnn':
      return createSmallCnn({ ...o, name, widths: spec.arch.config.widths });
  }
}

/**
 * Trains one of the demo's backbones (`broad_cnn` on a broad draw, `random_cnn` untrained;
 * see src/backbones-demo/backbones.ts): a small CNN named after its kind.
 */
export function trainDemoModel(spec: DemoBackboneSpec, synthetic: DeepPartial<SyntheticOptions>, objects?: ObjectSource, onStep?: (step: number, loss: number) => void): Promise<ImageModel> {
  return trainDemoBackbone(spec, synthetic, objects, onStep);
}

/** Trains a demo backbone on given labelled images (data.kind folders: the pool or an ImageFolder). */
export function trainDemoModelOn(spec: DemoBackboneSpec, data: DemoTrainingImages, onStep?: (step: number, loss: number) => void): Promise<ImageModel> {
  return trainDemoBackboneOn(spec, data, onStep);
}

export type { DemoBackboneSpec, DemoTrainingImages };
