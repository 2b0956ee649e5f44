/**
 * The config `dcd init` writes for a folder dataset: commented YAML that runs as it is,
 * sized from the data (image size from the images, schedule from the train set's size, the
 * self-supervised backbone's schedule from the pool's size and a time budget) and with the
 * selection sized by the run from the failures it measures (`select.pool_share`,
 * src/pipeline/sizing.ts), three seeds in one world so every table has a spread.
 */
import path from 'node:path';
import type { FolderLayout, FolderInspection } from '../data/folder-layout.js';
import { classCounts, PAPER_POOL_SHARE, selectionWarnings } from './sizing.js';

/** The sizes `dcd init` chose, and why (printed and written as comments). */
export interface InitSizing {
  imageSize: number;
  model: string;
  epochs: number;
  finetuneEpochs: number;
  /** select.pool_share: the run sizes k_train from the failures it measures. */
  poolShare: number;
  kVal: number;
  seeds: number[];
  broadSteps: number;
  /** SimCLR pretraining of the ssl backbone on the pool's images: optimiser steps of {@link SSL_BATCH}, and the epochs they span. */
  sslSteps: number;
  sslEpochs: number;
  /** Warnings from the counts alone (every MFreq image of a subset class counted as a failure: an upper bound). */
  warnings: string[];
}

/** Batch of the ssl backbone's pretraining. */
const SSL_BATCH = 64;
/**
 * The ssl backbone's step budget at 32 px, so that pretraining stays a few minutes of a 15-minute run:
 * the demo's 2,400 SimCLR steps of 32 at 32 px (widths 16-32-64) took 316 s on this 2-core machine
 * under a load average of 10-20 (2026-12-07), and 800 steps of 64 are two thirds of that work.
 * Larger images cost in proportion to their pixels.
 */
const SSL_STEPS_32PX = 800;

/** Optimiser steps of batch 64 the original model gets, whatever the train set's size. */
const TARGET_STEPS = 1200;

/** Sizes of the run, from what {@link inspectFolderDataset} found. */
export function sizeFromData(ins: FolderInspection): InitSizing {
  const side = ins.medianSide;
  // small CNNs on CPU: detail beyond 64 px costs time and adds little for these models
  const imageSize = Math.max(16, Math.min(64, Math.round(side / 8) * 8));
  const nTrain = ins.counts.train ?? 0;
  const epochs = Math.max(2, Math.min(30, Math.round((TARGET_STEPS * 64) / Math.max(1, nTrain))));
  const finetuneEpochs = nTrain > 8000 ? 1 : 2;
  const kVal = 1;
  // k_train is sized by the run once the failures are known (select.pool_share); here only the worst
  // case can be judged: every MFreq image of a subset class a failure, k_train 1
  const upper = classCounts(ins.subset, ins.data.pool.map((r) => r.weak_label ?? -1), ins.perClass.flatMap((c, y) => Array<number>(c.mfreq).fill(y)), ins.data.classes);
  const nPool = ins.data.pool.length;
  // SimCLR on the pool: three passes, within the step budget (scaled by pixels), at least 100 steps
  const sslSteps = Math.max(100, Math.min(Math.round((3 * nPool) / SSL_BATCH), Math.round(SSL_STEPS_32PX * (32 / imageSize) ** 2)));
  return {
    imageSize,
    model: imageSize <= 32 ? 'small_cnn:8-16-32' : 'small_cnn:16-32-64',
    epochs,
    finetuneEpochs,
    poolShare: +PAPER_POOL_SHARE.toFixed(2),
    kVal,
    seeds: [0, 1, 2],
    // about three passes over the pool, 50 to 400 steps of 64
    broadSteps: Math.max(50, Math.min(400, Math.round((3 * nPool) / 64))),
    sslSteps,
    sslEpochs: Math.max(1, Math.ceil((sslSteps * SSL_BATCH) / Math.max(1, nPool))),
    warnings: selectionWarnings(upper, 1, kVal, { estimate: true }),
  };
}

/** YAML-quoted string. */
const q = (s: string) => JSON.stringify(s);

/**
 * The config text. Paths are written relative to `outFile`'s folder (the config's own
 * rule), so the file can move with the data.
 */
export function initConfigYaml(layout: FolderLayout, ins: FolderInspection, s: InitSizing, outFile: string, name: string): string {
  const rel = (p: string) => {
    const r = path.relative(path.dirname(path.resolve(outFile)), p);
    return r === '' ? '.' : r.split(path.sep).join('/');
  };
  const f = layout.spec;
  const classes = ins.data.classes;
  const subNames = ins.subset.map((y) => classes[y]!);
  const lines = [
    `# Written by \`dcd init ${rel(layout.dir)}\` for the folder dataset in ${layout.dir}.`,
    `# ${classes.length} classes; images that decode: train ${ins.counts.train}, test ${ins.counts.test}, mfreq ${ins.counts.mfreq}, complement ${ins.counts.complement}, pool ${ins.counts.pool}${ins.unreadable.length ? ` (${ins.unreadable.length} unreadable: skipped by the run)` : ''}.`,
    `# Run it as it is: dcd run ${rel(outFile) === path.basename(outFile) ? path.basename(outFile) : outFile}`,
    `# Paths are relative to this file.`,
    `experiment:`,
    `  name: ${q(name)}`,
    `  description: ${q(`DCD on the folder dataset ${path.basename(layout.dir)}`)}`,
    `data:`,
    `  kind: folders`,
    `  folders:`,
    `    train: ${q(rel(f.train))}            # the original model's training set`,
    `    test: ${q(rel(f.test))}              # in-distribution test: the "INet" columns`,
    `    mfreq: ${q(rel(f.mfreq))}            # deployment set whose failures become debug-seed ("MFreq")`,
    `    complement: ${q(rel(f.complement))}  # deployment set whose failures become debug-heldout ("Compl.")`,
    `    pool: ${q(rel(f.pool))}              # weak pool: path, weak_label${ins.data.pool.some((r) => r.context?.includes('true_label')) ? ', true_label' : ''}${ins.data.pool.some((r) => r.context?.includes('"context"')) ? ', context' : ''}`,
    f.classes ? `    classes: ${q(rel(f.classes))}        # class order` : `    # classes: classes.txt           # class order (default: sorted class folders of train)`,
    f.contexts ? `    contexts: ${q(rel(f.contexts))}      # path,context of set images: retention by context` : `    # contexts: contexts.csv         # path,context of set images: retention by context (paper Fig. 7)`,
    `  # every image is resized and centre-cropped to this once (median shorter side of the images: ${ins.medianSide} px)`,
    `  image_size: ${s.imageSize}`,
    `failures:`,
    `  mode: single`,
    layout.subset ? `  subset: ${q(rel(layout.subset))}   # Y_sub: ${subNames.join(', ')}` : `  subset: pool   # Y_sub = the pool's weak labels: ${subNames.join(', ')}`,
    `# Backbones (no download): ssl_cnn is pretrained self-supervised (SimCLR) on the pool's images, labels`,
    `# ignored (${s.sslSteps} steps of ${SSL_BATCH}: three passes over the pool or the time budget, whichever is less);`,
    `# broad_cnn learns the pool's weak labels; random_cnn is untrained.`,
    `# An ImageNet backbone at the data's size: - { name: resnet50, weights: /path/to/resnet50.pth }`,
    `backbones:`,
    `  - name: ssl_cnn`,
    `    label: ssl`,
    `    weights: ssl`,
    `    pretrain:`,
    `      method: simclr`,
    `      data: pool`,
    `      widths: [16, 32, 64]`,
    `      epochs: ${s.sslEpochs}`,
    `      maxSteps: ${s.sslSteps}`,
    `      batchSize: ${SSL_BATCH}`,
    `      lr: 0.002`,
    `      warmupEpochs: ${+Math.min(0.5, (0.1 * s.sslSteps * SSL_BATCH) / Math.max(1, ins.data.pool.length)).toFixed(3)}`,
    `      temperature: 0.1`,
    `      seed: 1000`,
    `      crops: { globalSize: ${s.imageSize}, localCrops: 0, jitter: [0.4, 0.4, 0.4, 0.5], pGray: 0.5 }`,
    `  - name: broad_cnn`,
    `    weights: demo`,
    `    pretrain: { kind: broad_cnn, data: pool, widths: [8, 16, 32], steps: ${s.broadSteps}, lr: 0.003, seed: 1000 }   # data: pool or an ImageFolder (never test/mfreq/complement)`,
    `  - name: random_cnn`,
    `    weights: demo`,
    `    pretrain: { kind: random_cnn, widths: [16, 32, 64], seed: 1000 }`,
    `filter:`,
    `  # The leakage filter needs a robust ResNet-50 checkpoint: enabled: true, backbone: { name: resnet50_robust, weights: PATH }`,
    `  enabled: false`,
    `select:`,
    `  # per seed image: k_val de-val and k_train debug-train pool images (pool ≈ ${ins.data.pool.length} images over ${ins.subset.length} subset classes)`,
    `  k_val: ${s.kVal}`,
    `  # k_train is sized once the failures are known: the picks take about this share of the subset classes' pool`,
    `  # (the paper: 47,426 of 952,022, 5%); a share far above it makes DCD the pool itself. Or set k_train: N.`,
    `  pool_share: ${s.poolShare}`,
    `methods: [original, complete, random, dcd]`,
    `train:`,
    `  model: ${q(s.model)}`,
    `  # the original model is trained from scratch (≈${TARGET_STEPS} steps of 64); each method then fine-tunes it on Train ∪ added`,
    `  init: finetune`,
    `  epochs: ${s.epochs}`,
    `  batch_size: 64`,
    `  lr: 0.05`,
    `  schedule: cosine`,
    `  weight_decay: 0.0001`,
    `  augment: flip`,
    `  finetune: { epochs: ${s.finetuneEpochs}, lr: 0.01, schedule: cosine }`,
    `# repeats of the random parts (the table shows mean ± std over more than one)`,
    `seeds: [${s.seeds.join(', ')}]`,
    `# one original model, one selection for every seed: the seeds vary the Random draw and the fine-tunes`,
    `world_seed: ${s.seeds[0] ?? 0}`,
    '',
  ];
  return lines.join('\n');
}
