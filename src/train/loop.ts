/**
 * The one training loop of dcd. What varies between its users is a part: the optimiser
 * ({@link Optimizer}: SGD, Adam, AdamW), the objective ({@link Objective}: supervised
 * cross-entropy, SimCLR, DINO), the batches and the learning rate of each step, and what
 * happens after a step (metrics, checkpoints). The supervised trainer (trainer.ts), the demo
 * backbones (demo-backbones.ts) and self-supervised pretraining (src/ssl/train.ts) all run here.
 */
import { readFile } from 'node:fs/promises';
import type * as tf from '@tensorflow/tfjs';
import { atomicWriteFile } from '../core/fsutil.js';
import { permutation } from '../core/rng.js';
import type { Optimizer } from './optimizer.js';

/** What an objective's step yields: the batch loss, the gradients by parameter name, and its own metrics. */
export type StepOutput<M> = M & { loss: number; grads: Map<string, tf.Tensor> };

/**
 * A training objective (composer's shape: a small stateful part the loop calls).
 * `gradients` runs the forward and backward pass of one batch; the loop then lets the
 * optimiser update {@link Objective.params} and calls `afterUpdate` (an EMA teacher, a centre).
 */
export interface Objective<B, M = object> {
  /** The parameters the optimiser updates, by name. */
  readonly params: Map<string, tf.Variable>;
  gradients(batch: B, step: number): StepOutput<M> | Promise<StepOutput<M>>;
  /** After the optimiser's update of step `step`: may add metrics. */
  afterUpdate?(step: number): Partial<M> | Promise<Partial<M>>;
}

/** One step as the loop's callbacks see it. */
export type StepRecord<M> = M & { step: number; lr: number; loss: number };

/** Options of {@link trainLoop}: steps `start` … `total − 1`. */
export interface LoopOptions<B, M> {
  start: number;
  total: number;
  /** Learning rate of step `step`. */
  lr(step: number): number;
  /** The batch of step `step` (drawn from the step alone, so a resumed run draws the same). */
  batch(step: number): B | Promise<B>;
  objective: Objective<B, M>;
  optimizer: Optimizer;
  /** After each step, before the divergence check (metrics, logs, progress). */
  record?(r: StepRecord<M>): void | Promise<void>;
  /** The error thrown when a step's loss is not finite. */
  diverged(step: number, loss: number): Error;
  /** After the check, with the number of steps done (checkpoints). */
  after?(stepsDone: number): void | Promise<void>;
}

/** Runs the steps: batch → objective gradients → optimiser update → objective's after-update → record → check → after. */
export async function trainLoop<B, M>(o: LoopOptions<B, M>): Promise<void> {
  for (let step = o.start; step < o.total; step++) {
    const lr = o.lr(step);
    const r = { ...(await optimiserStep(o.objective, o.optimizer, await o.batch(step), step, lr)), step, lr } as StepRecord<M>;
    await o.record?.(r);
    if (!Number.isFinite(r.loss)) throw o.diverged(step, r.loss);
    await o.after?.(step + 1);
  }
}

/** One step of `objective` on `batch`: gradients, the optimiser's update with `lr`, the objective's after-update (scalars are read asynchronously, as the webgpu backend requires). */
export async function optimiserStep<B, M>(objective: Objective<B, M>, optimizer: Optimizer, batch: B, step: number, lr: number): Promise<M & { loss: number }> {
  const { grads, ...out } = await objective.gradients(batch, step);
  try {
    optimizer.step(objective.params, grads, lr);
  } finally {
    for (const g of grads.values()) g.dispose();
  }
  return { ...(out as M & { loss: number }), ...(await objective.afterUpdate?.(step)) };
}

/**
 * Batches of `batchSize` rows per step from epoch-wise permutations of 0 … n−1, the permutation of
 * epoch e seeded by `epochSeed(e)`; the last incomplete batch of an epoch is dropped or kept.
 * The rows of a step depend only on the step, so a resumed run draws what an uninterrupted one would.
 */
export function epochBatches(n: number, batchSize: number, epochSeed: (epoch: number) => number, dropLast = true): { stepsPerEpoch: number; rows(step: number): Int32Array } {
  const stepsPerEpoch = dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
  let cached: { epoch: number; perm: Int32Array } = { epoch: -1, perm: new Int32Array(0) };
  return {
    stepsPerEpoch,
    rows(step) {
      const epoch = Math.floor(step / stepsPerEpoch);
      if (cached.epoch !== epoch) cached = { epoch, perm: permutation(n, epochSeed(epoch)) };
      const s = (step % stepsPerEpoch) * batchSize;
      return cached.perm.subarray(s, Math.min(n, s + batchSize));
    },
  };
}

/**
 * Keeps the lines of the JSON-lines record `file` (one object per line) for which `keep` holds: a
 * resumed run drops the steps it will redo. A torn line (killed mid-write) goes too. The file is
 * rewritten atomically when something was dropped. @returns the number of lines dropped
 */
export async function trimJsonl<T>(file: string, keep: (o: T) => boolean): Promise<number> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return 0;
  }
  const lines = text.split('\n').filter((l) => l.trim());
  const kept = lines.filter((l) => {
    try {
      return keep(JSON.parse(l) as T);
    } catch {
      return false;
    }
  });
  if (kept.length < lines.length) await atomicWriteFile(file, kept.map((l) => l + '\n').join(''));
  return lines.length - kept.length;
}
