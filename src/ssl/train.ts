/**
 * Self-supervised pretraining of a demo backbone (`weights: ssl`): DINO's training loop
 * (main_dino.py `train_one_epoch`) on unlabelled uint8 images, resumable.
 *
 * One step: multi-crop views of a batch (src/ssl/augment.ts); the teacher (backbone + head,
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
import { ArtifactError, ConfigError } from '../core/errors.js';
import { atomicWriteFile, ensureDir, sha256 } from '../core/fsutil.js';
import type { ImageModel } from '../core/types.js';
import { mulberry32 as rng, streamSeed } from '../core/rng.js';
import { decodeSafetensors, encodeSafetensors, type SafetensorsInput } from '../models/safetensors.js';
import { createModel } from '../models/registry.js';
import { checkMultiCrop, DEFAULT_MULTICROP, multiCrop, type MultiCropOptions } from './augment.js';
import { ntXentLoss } from './simclr.js';
import { createDinoHead, cosineValue, dinoLoss, emaUpdate, lrAt, teacherTemp, updateCenter, type DinoHead } from './dino.js';

/** Everything that fixes a DINO pretraining run. */
export interface DinoOptions {
  /** `dino` (student/teacher, the default) or `simclr` (NT-Xent on the two global views, no teacher; src/ssl/simclr.ts). */
  method: 'dino' | 'simclr';
  /** SimCLR's temperature τ. */
  temperature: number;
  /** Backbone architecture: small_cnn conv widths. */
  widths: number[];
  epochs: number;
  /** Optional cap on the total number of steps (a short schedule over part of the epochs). */
  maxSteps?: number;
  batchSize: number;
  /** Peak AdamW learning rate, and the cosine schedule's floor. */
  lr: number;
  minLr: number;
  warmupEpochs: number;
  weightDecay: number;
  /** Teacher EMA momentum: base → 1 by a cosine over the run (DINO: 0.996). */
  momentum: number;
  /** Teacher temperature: warm-up value → final over `warmupTeacherTempEpochs` (DINO: 0.04 → 0.04–0.07, 30 epochs). */
  warmupTeacherTemp: number;
  teacherTemp: number;
  warmupTeacherTempEpochs: number;
  /** Student temperature (DINO: 0.1). */
  studentTemp: number;
  /** Centre EMA momentum (DINO: 0.9). */
  centerMomentum: number;
  /** Epochs during which the last layer gets no update (DINO: 1). */
  freezeLastLayerEpochs: number;
  head: { hiddenDim: number; bottleneckDim: number; outDim: number; layers: number; useBn: boolean };
  crops: MultiCropOptions;
  seed: number;
  /** Steps between checkpoints (the last step always writes one). */
  checkpointEvery: number;
}

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
  momentum: 0.99,
  warmupTeacherTemp: 0.04,
  teacherTemp: 0.04,
  warmupTeacherTempEpochs: 0,
  studentTemp: 0.1,
  centerMomentum: 0.9,
  freezeLastLayerEpochs: 0,
  head: { hiddenDim: 256, bottleneckDim: 64, outDim: 256, layers: 3, useBn: true },
  crops: DEFAULT_MULTICROP,
  seed: 1000,
  checkpointEvery: 50,
};

/** Unlabelled images: HWC uint8 [n, size, size, 3]. */
export interface UnlabelledImages {
  images: Uint8Array;
  size: number;
  n: number;
}

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

/** AdamW (Loshchilov & Hutter; torch.optim.AdamW's update) with its moments as named tensors, so a checkpoint can hold them. */
export class AdamW {
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();
  t = 0;
  constructor(private readonly beta1 = 0.9, private readonly beta2 = 0.999, private readonly eps = 1e-8) {}
  /** One update of every variable that has a gradient. */
  step(vars: Map<string, tf.Variable>, grads: Record<string, tf.Tensor>, lr: number, wd: (name: string) => number): void {
    this.t++;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    for (const [name, p] of vars) {
      const g = grads[name];
      if (!g) continue;
      const m = this.m.get(name) ?? this.m.set(name, zeroVariable(p)).get(name)!;
      const v = this.v.get(name) ?? this.v.set(name, zeroVariable(p)).get(name)!;
      tf.tidy(() => {
        m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1)));
        v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2)));
        const decayed = wd(name) > 0 ? tf.mul(p, 1 - lr * wd(name)) : p;
        const upd = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), this.eps));
        p.assign(tf.sub(decayed, tf.mul(upd, lr)));
      });
    }
  }
  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
  }
}

function zeroVariable(like: tf.Tensor): tf.Variable {
  const z = tf.zerosLike(like);
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}

/** A backbone with its projection head (student or teacher). */
interface Net {
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

/** Rows of batch `step`: epoch-wise permutations from the run's seed. */
function batchRows(o: DinoOptions, n: number, step: number, stepsPerEpoch: number, cache: { epoch: number; perm: Int32Array }): Int32Array {
  const epoch = Math.floor(step / stepsPerEpoch);
  if (cache.epoch !== epoch) {
    const r = rng(streamSeed(o.seed, `ssl-epoch/${epoch}`));
    const perm = Int32Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    cache.epoch = epoch;
    cache.perm = perm;
  }
  const s = (step % stepsPerEpoch) * o.batchSize;
  return cache.perm.subarray(s, s + o.batchSize);
}

async function saveCheckpoint(file: string, step: number, hash: string, student: Net, teacher: Net, opt: AdamW, center: tf.Tensor): Promise<void> {
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

function loadCheckpoint(file: string, hash: string, student: Net, teacher: Net, opt: AdamW): { step: number; center: tf.Tensor2D } {
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
 * Pretrains a small_cnn backbone with DINO on `data`, checkpointing into `dir`.
 *
 * @param data the unlabelled images (never debug or test sets: the caller guarantees it)
 * @param onStep progress callback after every step
 */
export async function pretrainDino(data: UnlabelledImages, opts: DinoOptions, dir: string, onStep?: (r: LossRecord) => void): Promise<PretrainResult> {
  const o = opts;
  await ensureDir(dir);
  const { stepsPerEpoch, total } = dinoSchedule(o, data.n);
  const hash = optionsHash(o, data);
  const student = makeNet(o);
  const teacher = makeNet(o);
  for (const [k, v] of teacher.params) v.assign(student.params.get(k)!); // DINO: teacher starts as the student
  const opt = new AdamW();
  const ckpt = path.join(dir, 'checkpoint.safetensors');
  const lossFile = path.join(dir, 'loss.jsonl');
  let center: tf.Tensor2D = tf.zeros([1, o.head.outDim]);
  const V = o.crops.globalCrops + o.crops.localCrops;
  const G = o.crops.globalCrops;
  const studentVars = [...student.params.entries()].filter(([k]) => k !== 'head.last_layer.weight_g');
  const varList = studentVars.map(([, v]) => v);
  const noDecay = (name: string) => name.endsWith('.bias') || student.params.get(name)!.rank <= 1;
  const cache = { epoch: -1, perm: new Int32Array(0) };
  const warmupSteps = Math.round(o.warmupEpochs * stepsPerEpoch);
  const ttWarm = Math.round(o.warmupTeacherTempEpochs * stepsPerEpoch);
  try {
    let start = 0;
    if (existsSync(ckpt)) {
      const c = loadCheckpoint(ckpt, hash, student, teacher, opt);
      center.dispose();
      center = c.center;
      start = c.step;
    }
    // the loss record keeps exactly the steps before `start`
    const kept = existsSync(lossFile)
      ? readFileSync(lossFile, 'utf8').split('\n').filter((l) => l.trim() && (JSON.parse(l) as LossRecord).step < start)
      : [];
    await atomicWriteFile(lossFile, kept.map((l) => l + '\n').join(''));
    for (let step = start; step < total; step++) {
      const epoch = Math.floor(step / stepsPerEpoch);
      const lr = lrAt(o.lr, o.minLr, step, warmupSteps, total);
      const mom = cosineValue(o.momentum, 1, step, total);
      const tt = teacherTemp(o.warmupTeacherTemp, o.teacherTemp, step, ttWarm);
      const mc = multiCrop(data.images, data.size, batchRows(o, data.n, step, stepsPerEpoch, cache), o.crops, o.seed, step);
      const B = mc.batch;
      const simclr = o.method === 'simclr';
      const { loss, entropy, newCenter } = tf.tidy(() => {
        const gx = tf.tensor4d(mc.globals, [G * B, o.crops.globalSize, o.crops.globalSize, 3]);
        const lx = o.crops.localCrops && !simclr ? tf.tensor4d(mc.locals, [o.crops.localCrops * B, o.crops.localSize, o.crops.localSize, 3]) : undefined;
        const tOut = simclr ? undefined : teacher.head.forward(teacher.backbone.forwardFeatures(gx, false));
        const { value, grads } = tf.variableGrads(() => {
          if (simclr) return ntXentLoss(student.head.project(student.backbone.forwardFeatures(tf.slice(gx, [0, 0, 0, 0], [2 * B, -1, -1, -1]), true)), o.temperature);
          const parts = [student.head.forward(student.backbone.forwardFeatures(gx, true))];
          if (lx) parts.push(student.head.forward(student.backbone.forwardFeatures(lx, true)));
          return dinoLoss(parts.length > 1 ? tf.concat(parts, 0) : parts[0]!, tOut!, center, V, G, o.studentTemp, tt);
        }, varList);
        const named: Record<string, tf.Tensor> = {};
        for (const [k, v] of studentVars) {
          if (step < o.freezeLastLayerEpochs * stepsPerEpoch && k === 'head.last_layer.weight_v') continue; // DINO's cancel_gradients_last_layer
          const g = grads[v.name];
          if (g) named[k] = g;
        }
        opt.step(student.params, named, lr, (k) => (noDecay(k) ? 0 : o.weightDecay));
        if (!tOut) return { loss: value, entropy: tf.scalar(NaN), newCenter: tf.clone(center) };
        const q = tf.softmax(tf.div(tf.sub(tOut, center), tt));
        const ent = tf.neg(tf.mean(tf.sum(tf.mul(q, tf.log(tf.add(q, 1e-12))), 1)));
        return { loss: value, entropy: ent, newCenter: updateCenter(center, tOut, o.centerMomentum) };
      });
      center.dispose();
      center = newCenter;
      if (!simclr) emaUpdate(teacher.params, student.params, mom);
      const rec: LossRecord = { step, epoch, loss: (await loss.data())[0]!, lr, momentum: mom, teacher_temp: tt, teacher_entropy: (await entropy.data())[0]! };
      if (simclr) delete (rec as Partial<LossRecord>).teacher_entropy;
      loss.dispose();
      entropy.dispose();
      if (!Number.isFinite(rec.loss)) throw new ArtifactError(`DINO pretraining diverged at step ${step} (loss ${rec.loss}); lower pretrain.lr`);
      appendFileSync(lossFile, JSON.stringify(rec) + '\n');
      onStep?.(rec);
      if ((step + 1) % o.checkpointEvery === 0 || step + 1 === total) await saveCheckpoint(ckpt, step + 1, hash, student, teacher, opt, center);
    }
    // DINO evaluates the teacher; SimCLR has only the student
    const keep = o.method === 'simclr' ? student : teacher;
    const drop = o.method === 'simclr' ? teacher : student;
    const backbone = keep.backbone;
    keep.head.dispose();
    drop.backbone.dispose();
    drop.head.dispose();
    return { backbone, stepsRun: total - start, total, resumedFrom: start, lossFile };
  } catch (e) {
    for (const net of [student, teacher]) {
      net.backbone.dispose();
      net.head.dispose();
    }
    throw e;
  } finally {
    opt.dispose();
    center.dispose();
  }
}

/** Reads `loss.jsonl` back (for plots and the report). */
export function readLossRecord(file: string): LossRecord[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as LossRecord);
}
