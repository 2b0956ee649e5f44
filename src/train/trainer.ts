/**
 * Supervised training from a {@link Dataset}: the training loop (loop.ts) with SGD and the
 * supervised objective (supervised.ts) over seeded epochs of shuffled mini-batches, plus
 * checkpoints, resume and metrics.jsonl. Everything that varies between experiments (class
 * re-weighting, augmentation, logging) is a {@link TrainHook}.
 */
import { appendFile, copyFile, mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, DataError } from '../core/errors.js';
import { log, progress, type Progress } from '../core/log.js';
import { sha256 } from '../core/fsutil.js';
import type { ImageModel } from '../core/types.js';
import { hashSeed, permutation } from '../core/rng.js';
import type { Dataset } from './dataset.js';
import { computePrecision, resolvePrecision, setComputePrecision, type Precision } from '../backends/precision.js';
import { Sgd } from './optimizer.js';
import { epochBatches, trainLoop, trimJsonl } from './loop.js';
import { supervisedObjective, type SupervisedBatch, type SupervisedMetrics } from './supervised.js';
import { learningRate, type Schedule } from './schedule.js';
import { latestCheckpoint, loadTrainCheckpoint, saveTrainCheckpoint, type TrainState } from './checkpoint.js';

/** What a hook sees. */
export interface StepContext {
  epoch: number;
  /** Optimiser steps taken in the run before this one. */
  globalStep: number;
  stepInEpoch: number;
  stepsPerEpoch: number;
  totalSteps: number;
  lr: number;
}

/** Metrics of one optimiser step. */
export interface StepMetrics extends StepContext {
  /** Weighted loss of the effective batch. */
  loss: number;
  /** Unweighted top-1 accuracy on the batch (train mode). */
  acc: number;
  images: number;
  /** Images per second of this step (data + compute). */
  imgPerSec: number;
}

/**
 * A change to training as a hook (composer's "algorithm"): each method is optional
 * and pure apart from its own state.
 */
export interface TrainHook {
  name: string;
  /** Changes the per-sample loss weights of a batch (class re-weighting). */
  weights?(w: Float32Array, labels: Int32Array, indices: Int32Array, ctx: StepContext): Float32Array;
  /** Changes a batch's pixels (NHWC float32, in place or a new array). */
  batch?(x: Float32Array, shape: [number, number, number, number], ctx: StepContext): Float32Array;
  afterStep?(m: StepMetrics): void | Promise<void>;
  afterEpoch?(epoch: number, summary: { loss: number; acc: number; seconds: number }): void | Promise<void>;
}

/** Options of {@link trainModel}. */
export interface TrainOptions {
  /** The model to train (its params and buffers are updated in place). */
  model: ImageModel;
  train: Dataset;
  epochs: number;
  /** Effective batch size (images per optimiser step). */
  batchSize: number;
  /** Images per forward/backward pass; gradients are accumulated over batchSize/microBatch passes. Default batchSize. */
  microBatch?: number;
  lr: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  /** Decay BN weights and biases too (default false). */
  decayNormAndBias?: boolean;
  schedule?: Schedule;
  warmupEpochs?: number;
  labelSmoothing?: number;
  /** Seed of data order and augmentation. */
  seed?: number;
  /** Use the dataset's train augmentation (default true). */
  augment?: boolean;
  /** Drop the last incomplete batch of each epoch (default true). */
  dropLast?: boolean;
  /** Folder for checkpoints, `metrics.jsonl` and the final `model.safetensors`. */
  outDir: string;
  /** Also checkpoint every N optimiser steps (default: only at epoch ends). */
  checkpointEvery?: number;
  /** Continue from `outDir/latest.json` when present (default true). */
  resume?: boolean;
  hooks?: TrainHook[];
  /** Stop after this many optimiser steps in total (benchmarks, tests). */
  maxSteps?: number;
  /**
   * Mixed precision (`bf16`, native backend only): convolutions and matmuls, forward and backward,
   * take bf16 inputs with fp32 accumulation and fp32 outputs; the master weights, the gradients,
   * the SGD update and BatchNorm (statistics and running averages) stay fp32. No loss scaling:
   * bf16 keeps fp32's exponent range. Elsewhere fp32, with a one-line notice. Default fp32.
   */
  precision?: Precision;
}

/** What {@link trainModel} returns. */
export interface TrainResult {
  steps: number;
  epochs: number;
  /** Step the run resumed from (0 for a fresh run). */
  resumedFrom: number;
  /** Path of the final weights (PyTorch-named safetensors state dict). */
  weightsFile: string;
  lastLoss: number;
}

/**
 * Appends one JSON line per step (`type: 'step'`, the {@link StepMetrics}) and per epoch
 * (`type: 'epoch'`, mean loss and accuracy, seconds) to `file`. A resumed run first
 * drops the lines written after the checkpoint it resumes from ({@link trimMetricsJsonl}),
 * so every step appears once.
 */
export function metricsJsonlHook(file: string): TrainHook {
  const line = (o: object) => appendFile(file, JSON.stringify({ ...o, time: new Date().toISOString() }) + '\n');
  return {
    name: 'metrics-jsonl',
    afterStep: (m) => line({ type: 'step', ...m }),
    afterEpoch: (epoch, summary) => line({ type: 'epoch', epoch, ...summary }),
  };
}

/**
 * Keeps the lines of a metrics.jsonl that precede a checkpoint at (`epoch`, `globalStep`):
 * step lines of steps before `globalStep`, epoch lines of epochs before `epoch` ({@link trimJsonl}).
 */
export function trimMetricsJsonl(file: string, epoch: number, globalStep: number): Promise<number> {
  return trimJsonl<{ type?: string; epoch?: number; globalStep?: number }>(file, (o) => (o.type === 'epoch' ? (o.epoch ?? Infinity) < epoch : (o.globalStep ?? Infinity) < globalStep));
}

/** The sample order of `epoch`: a Fisher–Yates shuffle seeded by (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): Int32Array {
  return permutation(n, orderSeed(seed, epoch));
}

const orderSeed = (seed: number, epoch: number) => hashSeed(seed, `order:${epoch}`);

/** Options that must not change when a run resumes (hash stored in each checkpoint). */
function configHash(o: TrainOptions, n: number): string {
  const keep = {
    model: o.model.name,
    numClasses: o.model.numClasses,
    n,
    epochs: o.epochs,
    batchSize: o.batchSize,
    lr: o.lr,
    momentum: o.momentum,
    nesterov: o.nesterov,
    weightDecay: o.weightDecay,
    decayNormAndBias: o.decayNormAndBias,
    schedule: o.schedule,
    warmupEpochs: o.warmupEpochs,
    labelSmoothing: o.labelSmoothing,
    seed: o.seed,
    augment: o.augment,
    dropLast: o.dropLast,
    weights: o.train.weights ? sha256(new Uint8Array(o.train.weights.buffer, o.train.weights.byteOffset, o.train.weights.byteLength)) : null,
    // (absent for fp32, so that fp32 runs keep their hash and resume as before)
    ...(o.precision === 'bf16' ? { precision: 'bf16' } : {}),
  };
  return sha256(JSON.stringify(keep)).slice(0, 16);
}

function checkOptions(o: TrainOptions): void {
  const posInt = (v: number | undefined, k: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new ConfigError(`train.${k}: expected a positive integer, received ${v}`);
  };
  posInt(o.epochs, 'epochs');
  posInt(o.batchSize, 'batchSize');
  posInt(o.microBatch, 'microBatch');
  posInt(o.checkpointEvery, 'checkpointEvery');
  posInt(o.maxSteps, 'maxSteps');
  if (!(o.lr > 0)) throw new ConfigError(`train.lr: expected a number > 0, received ${o.lr}`);
  if (o.microBatch !== undefined && o.batchSize % o.microBatch !== 0)
    throw new ConfigError(`train.microBatch: ${o.microBatch} must divide batchSize ${o.batchSize}`);
  if (o.model.numClasses < 1) throw new ConfigError(`model ${o.model.name} has no classification head; create it with numClasses ≥ 1`);
  const C = o.model.numClasses;
  for (let i = 0; i < o.train.size; i++) {
    const y = o.train.labels[i]!;
    if (!(y >= 0 && y < C))
      throw new DataError(`training sample ${o.train.ids[i]} has label ${y}; labels must be in [0, ${C}) for a ${C}-class model (unlabelled images cannot be trained on)`);
  }
  if (o.train.size < o.batchSize && (o.dropLast ?? true))
    throw new ConfigError(`train.batchSize ${o.batchSize} is larger than the training set (${o.train.size} images); lower it or set dropLast false`);
}

/**
 * Trains `opts.model` on `opts.train` and writes checkpoints, `metrics.jsonl` and the
 * final weights into `opts.outDir`. Resumes from the last checkpoint in `outDir`
 * when there is one (same data order, optimiser state and schedule position), so an
 * interrupted run ends with the same weights as an uninterrupted one.
 */
export async function trainModel(opts: TrainOptions): Promise<TrainResult> {
  checkOptions(opts);
  const { model, train } = opts;
  const seed = opts.seed ?? 0;
  const B = opts.batchSize;
  const batches = epochBatches(train.size, B, (e) => orderSeed(seed, e), opts.dropLast ?? true);
  const { stepsPerEpoch } = batches;
  const totalSteps = Math.min(stepsPerEpoch * opts.epochs, opts.maxSteps ?? Infinity);
  // metrics.jsonl is itself a hook; callers add theirs after it
  const hooks = [metricsJsonlHook(path.join(opts.outDir, 'metrics.jsonl')), ...(opts.hooks ?? [])];
  // the hash names the precision the steps compute in (fp32 where bf16 falls back), not the one asked for
  const hash = configHash({ ...opts, precision: resolvePrecision(opts.precision ?? 'fp32').precision }, train.size);
  const opt = new Sgd({
    momentum: opts.momentum ?? 0.9,
    nesterov: opts.nesterov ?? true,
    weightDecay: opts.weightDecay ?? 1e-4,
    decayNormAndBias: opts.decayNormAndBias ?? false,
  });
  const sched = { schedule: opts.schedule ?? ({ kind: 'cosine' } as Schedule), baseLr: opts.lr, warmupEpochs: opts.warmupEpochs ?? 0 };
  const lr = (step: number) => learningRate(sched, step, stepsPerEpoch, totalSteps);
  await mkdir(opts.outDir, { recursive: true });

  let epoch = 0;
  let stepInEpoch = 0;
  let globalStep = 0;
  let resumedFrom = 0;
  if (opts.resume ?? true) {
    const last = await latestCheckpoint(opts.outDir);
    if (last) {
      if (last.state.configHash !== hash)
        throw new ConfigError(
          `${opts.outDir} holds a checkpoint of a run with different settings (config hash ${last.state.configHash}, now ${hash}); use a new output folder or resume: false`,
        );
      const st = await loadTrainCheckpoint(last.folder, model, opt);
      ({ epoch, stepInEpoch, globalStep } = st);
      resumedFrom = globalStep;
      log.info(`resuming ${last.folder}: epoch ${epoch + 1}, step ${stepInEpoch}/${stepsPerEpoch}, ${globalStep} steps done`);
    }
    await trimMetricsJsonl(path.join(opts.outDir, 'metrics.jsonl'), epoch, globalStep);
  }
  const state = (): TrainState => ({ epoch, stepInEpoch, globalStep, seed, configHash: hash, model: model.name, numClasses: model.numClasses });
  let lastLoss = NaN;
  // the epoch in progress: its progress bar and running sums; the step in progress: its context and start time
  let ep: { bar: Progress; t0: number; loss: number; acc: number; steps: number } | undefined;
  let ctx: StepContext | undefined;
  let ts = 0;
  const before = computePrecision();
  const prec = setComputePrecision(opts.precision ?? 'fp32');
  if (prec.notice) log.warn(prec.notice);
  try {
    await trainLoop<SupervisedBatch, SupervisedMetrics>({
      start: globalStep,
      total: totalSteps,
      lr,
      objective: supervisedObjective(model, { microBatch: opts.microBatch ?? B, labelSmoothing: opts.labelSmoothing ?? 0 }),
      optimizer: opt,
      async batch(step) {
        ts = Date.now();
        // the bar counts the images still to do in this epoch (img/s and ETA of this session)
        const left = Math.max(0, (stepsPerEpoch - stepInEpoch) * B);
        ep ??= { bar: progress(`epoch ${epoch + 1}/${opts.epochs}`, left), t0: ts, loss: 0, acc: 0, steps: 0 };
        const idx = batches.rows(step);
        ctx = { epoch, globalStep, stepInEpoch, stepsPerEpoch, totalSteps, lr: lr(step) };
        const labels = Int32Array.from(idx, (k) => train.labels[k]!);
        let w: Float32Array = Float32Array.from(idx, (k) => train.weights?.[k] ?? 1);
        for (const h of hooks) if (h.weights) w = h.weights(w, labels, idx, ctx);
        let x = await train.getBatch(idx, opts.augment ?? true ? { seed, epoch } : undefined);
        // samples that failed to decode are zeros: they must not count
        let bad = 0;
        idx.forEach((k, b) => {
          if (train.skipped.has(k)) {
            w[b] = 0;
            bad++;
          }
        });
        if (bad === idx.length)
          throw new DataError(`no image of training batch ${globalStep} could be decoded (e.g. ${train.ids[idx[0]!]}: ${train.skipped.get(idx[0]!)}); check the manifest's paths`);
        for (const h of hooks) if (h.batch) x = h.batch(x, [idx.length, train.imageShape[0], train.imageShape[1], 3], ctx);
        return { x, labels, weights: w, imageShape: train.imageShape };
      },
      async record({ loss, correct, images }) {
        stepInEpoch++;
        globalStep++;
        lastLoss = loss;
        ep!.loss += loss;
        ep!.acc += correct / images;
        ep!.steps++;
        const secs = (Date.now() - ts) / 1000;
        const m: StepMetrics = { ...ctx!, loss, acc: correct / images, images, imgPerSec: images / Math.max(secs, 1e-6) };
        for (const h of hooks) await h.afterStep?.(m);
        ep!.bar.tick(images, { loss: loss.toFixed(4) });
      },
      diverged: (step, loss) => new DataError(`training diverged at step ${step + 1}: loss ${loss}; lower train.lr`),
      async after() {
        const epochEnd = stepInEpoch === stepsPerEpoch;
        if (epochEnd) {
          epoch++;
          stepInEpoch = 0;
        }
        const every = opts.checkpointEvery && globalStep % opts.checkpointEvery === 0;
        if (epochEnd || every || globalStep === totalSteps) await saveTrainCheckpoint(opts.outDir, model, opt, state());
        if (!epochEnd) return;
        const latest = path.join(opts.outDir, `step-${String(globalStep).padStart(8, '0')}`, 'model.safetensors');
        await copyAtomic(latest, path.join(opts.outDir, `epoch-${String(epoch).padStart(3, '0')}.safetensors`));
        ep!.bar.stop();
        const summary = { loss: ep!.loss / ep!.steps, acc: ep!.acc / ep!.steps, seconds: (Date.now() - ep!.t0) / 1000 };
        ep = undefined;
        log.info(`epoch ${epoch}/${opts.epochs}: loss ${summary.loss.toFixed(4)}, train acc ${(100 * summary.acc).toFixed(1)}%, ${summary.seconds.toFixed(1)} s`);
        for (const h of hooks) await h.afterEpoch?.(epoch - 1, summary);
      },
    });
  } finally {
    ep?.bar.stop();
    opt.dispose();
    setComputePrecision(before);
  }
  const weightsFile = path.join(opts.outDir, 'model.safetensors');
  const last = await latestCheckpoint(opts.outDir);
  if (last) await copyAtomic(path.join(last.folder, 'model.safetensors'), weightsFile);
  return { steps: globalStep, epochs: epoch, resumedFrom, weightsFile, lastLoss };
}

async function copyAtomic(src: string, dst: string): Promise<void> {
  const tmp = `${dst}.${process.pid}.tmp`;
  await copyFile(src, tmp);
  await rename(tmp, dst);
}
