/**
 * Self-supervised pretraining of a demo backbone (`weights: ssl`) on unlabelled uint8 images,
 * resumable: dcd's training loop (src/train/loop.ts) with AdamW and the DINO objective
 * (main_dino.py `train_one_epoch`) or SimCLR's.
 *
 * One DINO step: multi-crop views of a batch (src/ssl/augment.ts); the teacher (backbone + head,
 * no gradient) embeds the global views; the student embeds every view; {@link dinoLoss};
 * AdamW step on the student (no weight decay on biases, as DINO's parameter groups); EMA
 * update of the teacher with the cosine momentum schedule; EMA update of the centre. The
 * teacher's backbone is the result (DINO evaluates the teacher).
 *
 * Resuming: every `checkpointEvery` steps and at the end, `checkpoint.safetensors` holds
 * student, teacher, AdamW moments and centre, with the step and the options' hash in its
 * metadata; batches and crops depend only on (seed, step), so a resumed run continues the
 * exact sequence of an uninterrupted one. `loss.jsonl` gets one line per step (step, epoch,
 * loss, lr, momentum, teacher temperature, teacher entropy); on resume lines after the
 * checkpoint are dropped first.
 *
 * Not in this loop (DINO's are for ViTs at scale): gradient clipping, the weight-decay
 * schedule (constant here), mixed precision.
 */
import { existsSync, readFileSync, appendFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { SslPretrainConfig } from '../core/config.js';
import { ArtifactError, ConfigError } from '../core/errors.js';
import { atomicWriteFile, ensureDir, sha256 } from '../core/fsutil.js';
import type { ImageModel } from '../core/types.js';
import { streamSeed } from '../core/rng.js';
import { decodeSafetensors, encodeSafetensors, type SafetensorsInput } from '../models/safetensors.js';
import { createModel } from '../models/registry.js';
import { Adam } from '../train/optimizer.js';
import { epochBatches, trainLoop, trimJsonl, type Objective } from '../train/loop.js';
import type { ImageData } from '../train/in-memory.js';
import { checkMultiCrop, DEFAULT_MULTICROP, type MultiCropBatch, type MultiCropOptions } from './augment.js';
import { CropPrefetcher } from './prefetch.js';
import { ntXentLoss } from './simclr.js';
import { createDinoHead, cosineValue, dinoLoss, emaUpdate, lrAt, teacherTemp, updateCenter, type DinoHead } from './dino.js';

/**
 * Everything that fixes a DINO (or SimCLR) pretraining run: the keys of a config's `pretrain` block
 * but its data (src/core/config.ts documents them), all given; `maxSteps` caps the total steps.
 */
export type DinoOptions = Required<Omit<SslPretrainConfig, 'data' | 'broadSize' | 'maxSteps' | 'head' | 'crops'>> &
  Pick<SslPretrainConfig, 'maxSteps'> & { head: Required<NonNullable<SslPretrainConfig['head']>>; crops: MultiCropOptions };

/** Defaults sized for the 32 px demo on 2 cores. */
export const DEFAULT_DINO: DinoOptions = {
  method: 'dino',
  temperature: 0.2,
  widths: [16, 32, 64],
  epochs: 10,
  batchSize: 64,
  lr: 2e-3,
  minLr: 1e-5,
  warmupEpochs: 1,
  weightDecay: 0.04,
  momentum: 0.99, // teacher EMA, raised to 1 by a cosine (DINO: 0.996)
  warmupTeacherTemp: 0.04, // DINO: 0.04 → 0.04–0.07 over 30 epochs
  teacherTemp: 0.04,
  warmupTeacherTempEpochs: 0,
  studentTemp: 0.1, // DINO's
  centerMomentum: 0.9, // DINO's
  freezeLastLayerEpochs: 0, // DINO: 1
  head: { hiddenDim: 256, bottleneckDim: 64, outDim: 256, layers: 3, useBn: true },
  crops: DEFAULT_MULTICROP,
  seed: 1000,
  checkpointEvery: 50,
};

/** Unlabelled images: HWC uint8 [n, size, size, 3] (src/train/in-memory.ts's images without labels). */
export type UnlabelledImages = Omit<ImageData, 'labels' | 'weights'>;

/** One line of `loss.jsonl`. */
export interface LossRecord {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  momentum: number;
  teacher_temp: number;
  /** Mean entropy (nats) of the teacher's sharpened distribution: → 0 for one-hot collapse, → ln K for uniform collapse. */
  teacher_entropy: number;
}

/** Merges partial options over {@link DEFAULT_DINO} and checks them (errors name `where`.key). */
export function dinoOptions(partial: Partial<Omit<DinoOptions, 'crops' | 'head'>> & { crops?: Partial<MultiCropOptions>; head?: Partial<DinoOptions['head']> } = {}, where = 'pretrain'): DinoOptions {
  const o: DinoOptions = { ...DEFAULT_DINO, ...partial, crops: { ...DEFAULT_DINO.crops, ...(partial.crops ?? {}) }, head: { ...DEFAULT_DINO.head, ...(partial.head ?? {}) } };
  const bad = (k: string, exp: string, got: unknown): never => {
    throw new ConfigError(`${where}.${k}: expected ${exp}; received ${JSON.stringify(got)}`);
  };
  if (!Array.isArray(o.widths) || !o.widths.length || o.widths.some((w) => !Number.isInteger(w) || w < 1)) bad('widths', 'a non-empty list of positive integers', o.widths);
  for (const k of ['epochs', 'batchSize', 'checkpointEvery'] as const) if (!Number.isInteger(o[k]) || o[k] < 1) bad(k, 'an integer ≥ 1', o[k]);
  if (o.maxSteps !== undefined && (!Number.isInteger(o.maxSteps) || o.maxSteps < 1)) bad('maxSteps', 'an integer ≥ 1', o.maxSteps);
  for (const k of ['lr', 'studentTemp', 'teacherTemp', 'warmupTeacherTemp'] as const) if (!(typeof o[k] === 'number' && o[k] > 0)) bad(k, 'a number > 0', o[k]);
  for (const k of ['minLr', 'weightDecay', 'warmupEpochs', 'warmupTeacherTempEpochs', 'freezeLastLayerEpochs'] as const)
    if (!(typeof o[k] === 'number' && o[k] >= 0)) bad(k, 'a number ≥ 0', o[k]);
  for (const k of ['momentum', 'centerMomentum'] as const) if (!(typeof o[k] === 'number' && o[k] >= 0 && o[k] <= 1)) bad(k, 'a number in [0, 1]', o[k]);
  if (o.method !== 'dino' && o.method !== 'simclr') bad('method', '"dino" or "simclr"', o.method);
  if (!(typeof o.temperature === 'number' && o.temperature > 0)) bad('temperature', 'a number > 0', o.temperature);
  checkMultiCrop(o.crops, `${where}.crops`);
  return o;
}

/** A backbone with its projection head (student or teacher). */
export interface Net {
  backbone: ImageModel;
  head: DinoHead;
  /** Every parameter, prefixed `backbone.` / `head.`. */
  params: Map<string, tf.Variable>;
}

function makeNet(o: DinoOptions): Net {
  const backbone = createModel(`small_cnn:${o.widths.join('-')}`, { numClasses: 0, seed: o.seed });
  const head = createDinoHead({ inDim: backbone.numFeatures, ...o.head, seed: o.seed });
  const params = new Map<string, tf.Variable>();
  for (const [k, v] of backbone.params()) params.set(`backbone.${k}`, v);
  for (const [k, v] of head.params) params.set(`head.${k}`, v);
  return { backbone, head, params };
}

/** The options' hash a checkpoint must match to be resumed (checkpointEvery does not change results). */
function optionsHash(o: DinoOptions, data: UnlabelledImages): string {
  const { checkpointEvery: _c, ...rest } = o;
  return sha256(JSON.stringify({ rest, n: data.n, size: data.size, data: sha256(data.images) }));
}

/** Steps of the run and steps per epoch (the last, incomplete batch of an epoch is dropped, as DINO's drop_last). */
export function dinoSchedule(o: DinoOptions, n: number): { stepsPerEpoch: number; total: number } {
  const stepsPerEpoch = Math.floor(n / o.batchSize);
  if (stepsPerEpoch < 1) throw new ConfigError(`pretrain.batchSize: ${o.batchSize} is larger than the ${n} pretraining images; lower it`);
  const total = Math.min(o.epochs * stepsPerEpoch, o.maxSteps ?? Infinity);
  return { stepsPerEpoch, total };
}

async function saveCheckpoint(file: string, step: number, hash: string, student: Net, teacher: Net, opt: Adam, center: tf.Tensor): Promise<void> {
  const t: Record<string, SafetensorsInput> = {};
  // read asynchronously: the webgpu backend reads no other way
  const put = async (k: string, x: tf.Tensor) => (t[k] = { dtype: 'F32', shape: x.shape, data: (await x.data()) as Float32Array });
  for (const [k, v] of student.params) await put(`student.${k}`, v);
  for (const [k, v] of teacher.params) await put(`teacher.${k}`, v);
  for (const [k, v] of opt.m) await put(`optim.m.${k}`, v);
  for (const [k, v] of opt.v) await put(`optim.v.${k}`, v);
  await put('center', center);
  await atomicWriteFile(file, encodeSafetensors(t, { step: String(step), adam_t: String(opt.t), options_sha256: hash }));
}

function loadCheckpoint(file: string, hash: string, student: Net, teacher: Net, opt: Adam): { step: number; center: tf.Tensor2D } {
  const { tensors, metadata } = decodeSafetensors(new Uint8Array(readFileSync(file)), file);
  if (metadata.options_sha256 !== hash)
    throw new ArtifactError(`${file}: this checkpoint was written with other pretraining options or images; delete it (or its folder) to start over`);
  const take = (k: string, like?: tf.Variable): tf.Tensor => {
    const h = tensors.get(k);
    if (!h) throw new ArtifactError(`${file}: tensor ${k} is missing; delete the checkpoint to start over`);
    if (like && h.shape.join() !== like.shape.join()) throw new ArtifactError(`${file}: ${k} has shape [${h.shape}], the model needs [${like.shape}]`);
    return tf.tensor(h.data as Float32Array, h.shape);
  };
  const assign = (prefix: string, vars: Map<string, tf.Variable>) => {
    for (const [k, v] of vars) {
      const x = take(`${prefix}${k}`, v);
      v.assign(x);
      x.dispose();
    }
  };
  assign('student.', student.params);
  assign('teacher.', teacher.params);
  for (const k of tensors.keys()) {
    const m = /^optim\.(m|v)\.(.+)$/.exec(k);
    if (!m) continue;
    const x = take(k);
    (m[1] === 'm' ? opt.m : opt.v).set(m[2]!, tf.variable(x, false));
    x.dispose();
  }
  opt.t = Number(metadata.adam_t ?? 0);
  return { step: Number(metadata.step), center: take('center') as tf.Tensor2D };
}

/** The metrics of a self-supervised step besides the loss (a {@link LossRecord} without step, epoch and lr). */
type SslMetrics = Omit<LossRecord, 'step' | 'epoch' | 'lr' | 'loss' | 'teacher_entropy'> & { teacher_entropy?: number };

/**
 * The student's loss under `tf.variableGrads` and its gradients by parameter name (`head.last_layer.weight_g`
 * stays fixed; `frozen` parameters get none). Runs inside the caller's tidy.
 */
function studentGradients(student: Net, loss: () => tf.Scalar, frozen?: string): { value: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const vars = [...student.params.entries()].filter(([k]) => k !== 'head.last_layer.weight_g');
  const { value, grads } = tf.variableGrads(loss, vars.map(([, v]) => v));
  const named: Record<string, tf.Tensor> = {};
  for (const [k, v] of vars) {
    const g = grads[v.name];
    if (g && k !== frozen) named[k] = g;
  }
  return { value, grads: named };
}

/** The teacher's EMA momentum and temperature at `step` (recorded by SimCLR too, which has no teacher). */
function teacherSchedule(o: DinoOptions, stepsPerEpoch: number, total: number): (step: number) => SslMetrics {
  const ttWarm = Math.round(o.warmupTeacherTempEpochs * stepsPerEpoch);
  return (step) => ({ momentum: cosineValue(o.momentum, 1, step, total), teacher_temp: teacherTemp(o.warmupTeacherTemp, o.teacherTemp, step, ttWarm) });
}

/** SimCLR's objective: NT-Xent of the student's projections of the first two global views (no teacher). */
export function simclrObjective(student: Net, o: DinoOptions, stepsPerEpoch: number, total: number): Objective<MultiCropBatch, SslMetrics> {
  const schedule = teacherSchedule(o, stepsPerEpoch, total);
  return {
    params: student.params,
    async gradients(mc, step) {
      const { value, grads } = tf.tidy(() => {
        const gx = tf.tensor4d(mc.globals, [o.crops.globalCrops * mc.batch, o.crops.globalSize, o.crops.globalSize, 3]);
        return studentGradients(student, () => ntXentLoss(student.head.project(student.backbone.forwardFeatures(tf.slice(gx, [0, 0, 0, 0], [2 * mc.batch, -1, -1, -1]), true)), o.temperature));
      });
      const loss = (await value.data())[0]!; // asynchronously: webgpu reads no other way
      value.dispose();
      return { loss, grads: new Map(Object.entries(grads)), ...schedule(step) };
    },
  };
}

/**
 * DINO's objective: the teacher (no gradient) embeds the global views, the student every view,
 * {@link dinoLoss} between them; after the student's update, the EMA updates of the centre and
 * the teacher (momentum and teacher temperature follow their schedules over `total` steps).
 */
export function dinoObjective(student: Net, teacher: Net, o: DinoOptions, stepsPerEpoch: number, total: number): Objective<MultiCropBatch, SslMetrics> & { center: tf.Tensor2D } {
  const V = o.crops.globalCrops + o.crops.localCrops;
  const G = o.crops.globalCrops;
  const schedule = teacherSchedule(o, stepsPerEpoch, total);
  let tOut: tf.Tensor2D | undefined;
  const self = {
    params: student.params,
    center: tf.zeros([1, o.head.outDim]) as tf.Tensor2D,
    async gradients(mc: MultiCropBatch, step: number) {
      const s = schedule(step);
      const B = mc.batch;
      // DINO's cancel_gradients_last_layer during the first freezeLastLayerEpochs
      const frozen = step < o.freezeLastLayerEpochs * stepsPerEpoch ? 'head.last_layer.weight_v' : undefined;
      const { value, grads, t } = tf.tidy(() => {
        const gx = tf.tensor4d(mc.globals, [G * B, o.crops.globalSize, o.crops.globalSize, 3]);
        const lx = o.crops.localCrops ? tf.tensor4d(mc.locals, [o.crops.localCrops * B, o.crops.localSize, o.crops.localSize, 3]) : undefined;
        const t = teacher.head.forward(teacher.backbone.forwardFeatures(gx, false));
        const r = studentGradients(
          student,
          () => {
            const parts = [student.head.forward(student.backbone.forwardFeatures(gx, true))];
            if (lx) parts.push(student.head.forward(student.backbone.forwardFeatures(lx, true)));
            return dinoLoss(parts.length > 1 ? tf.concat(parts, 0) : parts[0]!, t, self.center, V, G, o.studentTemp, s.teacher_temp);
          },
          frozen,
        );
        return { ...r, t };
      });
      tOut = t;
      const loss = (await value.data())[0]!; // asynchronously: webgpu reads no other way
      value.dispose();
      return { loss, grads: new Map(Object.entries(grads)), ...s };
    },
    async afterUpdate(step: number) {
      const s = schedule(step);
      const t = tOut!;
      tOut = undefined;
      const { entropy, newCenter } = tf.tidy(() => {
        // mean entropy (nats) of the teacher's sharpened distribution: the collapse monitor
        const q = tf.softmax(tf.div(tf.sub(t, self.center), s.teacher_temp));
        const ent = tf.neg(tf.mean(tf.sum(tf.mul(q, tf.log(tf.add(q, 1e-12))), 1)));
        return { entropy: ent, newCenter: updateCenter(self.center, t, o.centerMomentum) };
      });
      t.dispose();
      self.center.dispose();
      self.center = newCenter;
      emaUpdate(teacher.params, student.params, s.momentum);
      const teacher_entropy = (await entropy.data())[0]!;
      entropy.dispose();
      return { teacher_entropy };
    },
  };
  return self;
}

/** Result of {@link pretrainDino}. */
export interface PretrainResult {
  /** The teacher's backbone (small_cnn parameter names, no head): the caller owns and disposes it. */
  backbone: ImageModel;
  /** Steps run by this call (0 when the checkpoint was already complete). */
  stepsRun: number;
  total: number;
  resumedFrom: number;
  lossFile: string;
}

/**
 * Pretrains a small_cnn backbone with DINO (or SimCLR) on `data`, checkpointing into `dir`: the
 * training loop (src/train/loop.ts) with AdamW and {@link dinoObjective} / {@link simclrObjective}.
 *
 * @param data the unlabelled images (never debug or test sets: the caller guarantees it)
 * @param onStep progress callback after every step
 */
export async function pretrainDino(data: UnlabelledImages, opts: DinoOptions, dir: string, onStep?: (r: LossRecord) => void): Promise<PretrainResult> {
  const o = opts;
  await ensureDir(dir);
  const { stepsPerEpoch, total } = dinoSchedule(o, data.n);
  const batches = epochBatches(data.n, o.batchSize, (e) => streamSeed(o.seed, `ssl-epoch/${e}`));
  const hash = optionsHash(o, data);
  const student = makeNet(o);
  const teacher = makeNet(o);
  for (const [k, v] of teacher.params) v.assign(student.params.get(k)!); // DINO: teacher starts as the student
  // no weight decay on biases and norms (DINO's parameter groups)
  const opt = new Adam({ weightDecay: o.weightDecay, decays: (name, shape) => !(name.endsWith('.bias') || shape.length <= 1) });
  const dino = o.method === 'dino' ? dinoObjective(student, teacher, o, stepsPerEpoch, total) : undefined;
  // SimCLR has no centre; its checkpoint keeps DINO's layout with a zero one
  let noCenter = dino ? undefined : (tf.zeros([1, o.head.outDim]) as tf.Tensor2D);
  const center = () => dino?.center ?? noCenter!;
  const ckpt = path.join(dir, 'checkpoint.safetensors');
  const lossFile = path.join(dir, 'loss.jsonl');
  const warmupSteps = Math.round(o.warmupEpochs * stepsPerEpoch);
  let backbone: ImageModel | undefined;
  let crops: CropPrefetcher | undefined;
  try {
    let start = 0;
    if (existsSync(ckpt)) {
      const c = loadCheckpoint(ckpt, hash, student, teacher, opt);
      center().dispose();
      // the loaded centre replaces the one just freed (SimCLR's zero one too: the next checkpoint writes it)
      if (dino) dino.center = c.center;
      else noCenter = c.center;
      start = c.step;
    }
    // the loss record keeps exactly the steps before `start`
    await trimJsonl<LossRecord>(lossFile, (r) => r.step < start);
    const views = (crops = new CropPrefetcher(data.images, data.size, o.crops, o.seed, (step) => batches.rows(step), total));
    let rec: LossRecord | undefined;
    await trainLoop({
      start,
      total,
      lr: (step) => lrAt(o.lr, o.minLr, step, warmupSteps, total),
      batch: (step) => views.batch(step),
      objective: dino ?? simclrObjective(student, o, stepsPerEpoch, total),
      optimizer: opt,
      record(r) {
        rec = { step: r.step, epoch: Math.floor(r.step / stepsPerEpoch), loss: r.loss, lr: r.lr, momentum: r.momentum, teacher_temp: r.teacher_temp, ...(dino ? { teacher_entropy: r.teacher_entropy! } : {}) } as LossRecord;
      },
      diverged: (step, loss) => new ArtifactError(`DINO pretraining diverged at step ${step} (loss ${loss}); lower pretrain.lr`),
      async after(done) {
        appendFileSync(lossFile, JSON.stringify(rec) + '\n');
        onStep?.(rec!);
        if (done % o.checkpointEvery === 0 || done === total) await saveCheckpoint(ckpt, done, hash, student, teacher, opt, center());
      },
    });
    // DINO evaluates the teacher; SimCLR has only the student
    backbone = (o.method === 'simclr' ? student : teacher).backbone;
    return { backbone, stepsRun: total - start, total, resumedFrom: start, lossFile };
  } finally {
    await crops?.close();
    // everything but the backbone returned (all of it when the run failed)
    for (const net of [student, teacher]) {
      if (net.backbone !== backbone) net.backbone.dispose();
      net.head.dispose();
    }
    opt.dispose();
    center().dispose();
  }
}

/** Reads `loss.jsonl` back (for plots and the report). */
export function readLossRecord(file: string): LossRecord[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as LossRecord);
}
