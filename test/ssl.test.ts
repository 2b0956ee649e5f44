import { describe, expect, it, beforeAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { ArtifactError, ConfigError } from '../src/core/errors.js';
import { readSafetensors } from '../src/models/safetensors.js';
import { DEFAULT_MULTICROP, multiCrop } from '../src/ssl/augment.js';
import { cosineValue, createDinoHead, dinoLoss, emaUpdate, lrAt, teacherTemp, updateCenter } from '../src/ssl/dino.js';
import { dinoOptions, pretrainDino, readLossRecord } from '../src/ssl/train.js';
import { Adam } from '../src/train/optimizer.js';
import { generateSynthetic } from '../src/data/synthetic.js';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'ssl', 'dino-step.safetensors');
const tmp = () => mkdtempSync(path.join(process.env.DCD_TEST_TMP ?? tmpdir(), 'ssl-'));

beforeAll(async () => {
  await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
});

describe('DINO loss, centring, EMA (hand-computed)', () => {
  it('dinoLoss: uniform student gives ln K whatever the teacher; a worked two-view example', () => {
    const before = tf.memory().numTensors;
    const s = tf.zeros([3 * 2, 4]) as tf.Tensor2D; // 3 views, B = 2, K = 4
    const t = tf.tensor2d([[5, 0, 0, 0], [0, 1, 2, 3], [1, 1, 1, 1], [0, 0, 9, 0]]);
    const c = tf.zeros([1, 4]) as tf.Tensor2D;
    const l1 = dinoLoss(s, t, c, 3, 2, 0.1, 0.04);
    expect(l1.dataSync()[0]).toBeCloseTo(Math.log(4), 6);
    // K = 2, B = 1, two global views. Student view 1: logits/τ_s = [ln 3, 0] → log-probs [ln ¾, ln ¼];
    // view 0: [0, 0] → [−ln 2, −ln 2]. Teacher view 0: t − c = [0, 0] → q0 = [½, ½].
    // Pairs: (q0, view 1) = −(½ ln ¾ + ½ ln ¼) = 0.836988; (q1, view 0) = ln 2 for any q1.
    const ts = 0.1;
    const s2 = tf.tensor2d([[0, 0], [Math.log(3) * ts, 0]]);
    const t2 = tf.tensor2d([[0.3, 0.3], [2, -1]]);
    const c2 = tf.tensor2d([[0.3, 0.3]]);
    const want = (-(0.5 * Math.log(0.75) + 0.5 * Math.log(0.25)) + Math.log(2)) / 2;
    const l2 = dinoLoss(s2, t2, c2, 2, 2, ts, 0.04);
    expect(l2.dataSync()[0]).toBeCloseTo(want, 5);
    expect(want).toBeCloseTo(0.765068, 5);
    tf.dispose([s, t, c, s2, t2, c2, l1, l2]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('dinoLoss: no gradient reaches the teacher; the student gradient is (softmax(s/τ_s) − q)/τ_s averaged over pairs', () => {
    const s = tf.tensor2d([[0.2, -0.1], [0.4, 0.3]]); // 2 views, B = 1
    const t = tf.tensor2d([[1, 0], [0, 1]]);
    const c = tf.zeros([1, 2]) as tf.Tensor2D;
    const [gs, gt] = tf.grads((a: tf.Tensor, b: tf.Tensor) => dinoLoss(a as tf.Tensor2D, b as tf.Tensor2D, c, 2, 2, 0.5, 1))([s, t]);
    expect(Array.from(gt!.dataSync())).toEqual([0, 0, 0, 0]);
    // view 0 is paired with teacher view 1 only (q1 = softmax([0,1])), half-weighted (2 pairs)
    const q1 = [Math.exp(0) / (1 + Math.E), Math.E / (1 + Math.E)];
    const p0 = [Math.exp(0.4) / (Math.exp(0.4) + Math.exp(-0.2)), Math.exp(-0.2) / (Math.exp(0.4) + Math.exp(-0.2))];
    const g = gs!.dataSync();
    expect(g[0]).toBeCloseTo(((p0[0]! - q1[0]!) / 0.5) * 0.5, 5);
    expect(g[1]).toBeCloseTo(((p0[1]! - q1[1]!) / 0.5) * 0.5, 5);
    tf.dispose([s, t, c, gs!, gt!]);
  });

  it('updateCenter and emaUpdate', () => {
    const c = tf.tensor2d([[1, 2]]);
    const t = tf.tensor2d([[3, 4], [5, 6]]);
    const n = updateCenter(c, t, 0.9);
    expect(Array.from(n.dataSync())).toEqual([expect.closeTo(1.3, 6), expect.closeTo(2.3, 6)]);
    const tv = new Map([['w', tf.variable(tf.tensor1d([2, -4]))]]);
    const sv = new Map([['w', tf.variable(tf.tensor1d([4, 0]))]]);
    emaUpdate(tv, sv, 0.75);
    expect(Array.from(tv.get('w')!.dataSync())).toEqual([2.5, -3]);
    expect(() => emaUpdate(new Map([['x', tv.get('w')!]]), sv, 0.5)).toThrow(/student has no parameter x/);
    tf.dispose([c, t, n, tv.get('w')!, sv.get('w')!]);
  });

  it('schedules: cosine momentum, teacher-temperature warm-up, lr warm-up then cosine', () => {
    expect(cosineValue(0.996, 1, 0, 100)).toBe(0.996);
    expect(cosineValue(0.996, 1, 50, 100)).toBeCloseTo(0.998, 12);
    expect(teacherTemp(0.04, 0.07, 0, 4)).toBe(0.04);
    expect(teacherTemp(0.04, 0.07, 3, 4)).toBeCloseTo(0.07, 12);
    expect(teacherTemp(0.04, 0.07, 9, 4)).toBe(0.07);
    expect(lrAt(1, 0, 0, 5, 20)).toBe(0);
    expect(lrAt(1, 0, 4, 5, 20)).toBe(1);
    expect(lrAt(1, 0, 5, 5, 20)).toBe(1);
    expect(lrAt(1, 0, 5 + 15 / 2, 5, 20)).toBeCloseTo(0.5, 12);
  });
});

describe('one DINO step against PyTorch (test/fixtures/ssl, scripts/ssl-ref/make_fixture.py)', () => {
  it('matches the head output loss, gradients, AdamW update, EMA teacher and centre', async () => {
    const fx = await readSafetensors(FIXTURE);
    const meta = (await import('../src/models/safetensors.js')).decodeSafetensors(new Uint8Array(readFileSync(FIXTURE))).metadata;
    const T = (k: string) => {
      const h = fx.tensors.get(k);
      if (!h) throw new Error(`fixture lacks ${k}`);
      return tf.tensor(h.data as Float32Array, h.shape);
    };
    const num = (k: string) => Number(meta[k]);
    const before = tf.memory().numTensors;
    const hopts = JSON.parse(meta.head!) as { inDim: number; hiddenDim: number; bottleneckDim: number; outDim: number; layers: number };
    const student = createDinoHead({ ...hopts, seed: 1 });
    const teacher = createDinoHead({ ...hopts, seed: 2 });
    tf.tidy(() => {
      for (const [k, v] of student.params) v.assign(T(`student.${k}`));
      for (const [k, v] of teacher.params) v.assign(T(`teacher.${k}`));
    });
    const fs = T('feat_s') as tf.Tensor2D;
    const ft = T('feat_t') as tf.Tensor2D;
    const c = T('center') as tf.Tensor2D;
    const tOut = teacher.forward(ft);
    const vars = student.trainable();
    const names = new Map([...student.params].map(([k, v]) => [v.name, k]));
    const { value, grads } = tf.variableGrads(() => dinoLoss(student.forward(fs), tOut, c, num('views'), num('globals'), num('student_temp'), num('teacher_temp')), vars);
    expect(value.dataSync()[0]).toBeCloseTo(fx.tensors.get('loss')!.data[0]!, 4);
    const named: Record<string, tf.Tensor> = {};
    for (const [vn, g] of Object.entries(grads)) {
      const k = names.get(vn)!;
      named[k] = g;
      const ref = fx.tensors.get(`grad.${k}`)!;
      const got = g.dataSync();
      const scale = Math.max(...Array.from(ref.data as Float32Array, Math.abs));
      for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - (ref.data[i] as number)) / scale).toBeLessThan(1e-4);
    }
    expect(Object.keys(named).sort()).toEqual([...student.params.keys()].filter((k) => k !== 'last_layer.weight_g').sort());
    const opt = new Adam({ weightDecay: num('weight_decay'), decays: (k, shape) => !(k.endsWith('.bias') || shape.length <= 1) });
    opt.step(student.params, new Map(Object.entries(named)), num('lr'));
    emaUpdate(teacher.params, student.params, num('momentum'));
    const nc = updateCenter(c, tOut, num('center_momentum'));
    const close = (got: tf.Tensor, key: string) => {
      const ref = fx.tensors.get(key)!.data as Float32Array;
      const g = got.dataSync();
      for (let i = 0; i < g.length; i++) expect(Math.abs(g[i]! - ref[i]!)).toBeLessThan(2e-5);
    };
    for (const [k, v] of student.params) close(v, `new_student.${k}`);
    for (const [k, v] of teacher.params) close(v, `new_teacher.${k}`);
    close(nc, 'new_center');
    tf.dispose([value, ...Object.values(grads), fs, ft, c, tOut, nc]);
    opt.dispose();
    student.dispose();
    teacher.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('DINO head with BatchNorm (use_bn) against PyTorch', () => {
  it('matches the loss and the gradients of every parameter, BN affine included', async () => {
    const fx = await readSafetensors(FIXTURE);
    const meta = (await import('../src/models/safetensors.js')).decodeSafetensors(new Uint8Array(readFileSync(FIXTURE))).metadata;
    const T = (k: string) => tf.tensor(fx.tensors.get(k)!.data as Float32Array, fx.tensors.get(k)!.shape);
    const num = (k: string) => Number(meta[k]);
    const before = tf.memory().numTensors;
    const hopts = JSON.parse(meta.head!) as { inDim: number; hiddenDim: number; bottleneckDim: number; outDim: number; layers: number };
    const bn = createDinoHead({ ...hopts, useBn: true, seed: 3 });
    const teacher = createDinoHead({ ...hopts, seed: 2 });
    expect([...bn.params.keys()].sort()).toEqual([...fx.tensors.keys()].filter((k) => k.startsWith('bn.student.')).map((k) => k.slice('bn.student.'.length)).sort());
    tf.tidy(() => {
      for (const [k, v] of bn.params) v.assign(T(`bn.student.${k}`));
      for (const [k, v] of teacher.params) v.assign(T(`teacher.${k}`));
    });
    const [fs, ft, c] = [T('feat_s') as tf.Tensor2D, T('feat_t') as tf.Tensor2D, T('center') as tf.Tensor2D];
    const tOut = teacher.forward(ft);
    const names = new Map([...bn.params].map(([k, v]) => [v.name, k]));
    const { value, grads } = tf.variableGrads(() => dinoLoss(bn.forward(fs), tOut, c, num('views'), num('globals'), num('student_temp'), num('teacher_temp')), bn.trainable());
    expect(value.dataSync()[0]).toBeCloseTo(fx.tensors.get('bn.loss')!.data[0]!, 4);
    expect(Object.keys(grads).length).toBe(bn.params.size - 1);
    let gmax = 0;
    for (const [k, h] of fx.tensors) if (k.startsWith('bn.grad.')) for (const x of h.data as Float32Array) gmax = Math.max(gmax, Math.abs(x));
    for (const [vn, g] of Object.entries(grads)) {
      const ref = fx.tensors.get(`bn.grad.${names.get(vn)!}`)!.data as Float32Array;
      const got = g.dataSync();
      // a linear bias followed by BatchNorm has zero gradient analytically (BN removes the mean):
      // errors are measured against the largest gradient of the whole head, not of that tensor
      const scale = gmax;
      for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - ref[i]!) / scale, `${names.get(vn)}[${i}]: ${got[i]} vs ${ref[i]}`).toBeLessThan(1e-4);
    }
    tf.dispose([value, ...Object.values(grads), fs, ft, c, tOut]);
    bn.dispose();
    teacher.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('multi-crop augmentation', () => {
  const d = generateSynthetic({ imageSize: 32, variant: 'textured', train: { size: 12, homeRate: 0.75 }, test: { size: 6 }, shifted: { size: 6, rareRate: 0.8 }, pool: { size: 30, homeRate: 0.4, wrongLabelRate: 0, objectlessRate: 0 } }, 0);
  const imgs = d.sets.pool.images;
  it('is deterministic per (seed, step) and changes with either', () => {
    const a = multiCrop(imgs, 32, [0, 1, 2, 3], DEFAULT_MULTICROP, 7, 3);
    const b = multiCrop(imgs, 32, [0, 1, 2, 3], DEFAULT_MULTICROP, 7, 3);
    expect(a.globals).toEqual(b.globals);
    expect(a.locals).toEqual(b.locals);
    expect(a.globals.length).toBe(2 * 4 * 32 * 32 * 3);
    expect(a.locals.length).toBe(4 * 4 * 16 * 16 * 3);
    const c = multiCrop(imgs, 32, [0, 1, 2, 3], DEFAULT_MULTICROP, 8, 3);
    const e = multiCrop(imgs, 32, [0, 1, 2, 3], DEFAULT_MULTICROP, 7, 4);
    expect(c.globals).not.toEqual(a.globals);
    expect(e.locals).not.toEqual(a.locals);
    // normalised [0,1] pixels: (x − 0.5)/0.25 lies in [−2, 2]
    for (const v of [a.globals, a.locals]) for (const x of v) expect(Math.abs(x)).toBeLessThanOrEqual(2 + 1e-6);
  });
  it('with every photometric op off and the crop the whole image, a global view is the image itself', () => {
    const o = { ...DEFAULT_MULTICROP, globalScale: [1, 1] as [number, number], ratio: [1, 1] as [number, number], pJitter: 0, pGray: 0, pFlip: 0, pBlur: [0, 0, 0] as [number, number, number], pSolarize: 0, mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number] };
    const v = multiCrop(imgs, 32, [5], { ...o, globalCrops: 2, localCrops: 0 }, 1, 0);
    let err = 0;
    for (let i = 0; i < 2 * 32 * 32 * 3; i++) err = Math.max(err, Math.abs(v.globals[i]! - imgs[5 * 32 * 32 * 3 + (i % (32 * 32 * 3))]! / 255));
    expect(err).toBeLessThan(1e-6);
    // a flip mirrors it
    const f = multiCrop(imgs, 32, [5], { ...o, pFlip: 1, globalCrops: 2, localCrops: 0 }, 1, 0);
    expect(f.globals[0]).toBeCloseTo(imgs[5 * 32 * 32 * 3 + 31 * 3]! / 255, 6);
  });
  // the compiled prefetcher (npm test builds dist/ first): its worker file exists only there
  const built = path.resolve('dist/src/ssl/prefetch.js');
  it.runIf(existsSync(built))('batches made one step ahead on a worker thread are the main thread\'s bits, in any order, and fall back when the worker dies', async () => {
    const { CropPrefetcher } = (await import(pathToFileURL(built).href)) as typeof import('../src/ssl/prefetch.js');
    const rows = (step: number) => Int32Array.from([step % 30, (step * 7 + 1) % 30, (step * 13 + 2) % 30]);
    const want = (step: number) => multiCrop(imgs, 32, rows(step), DEFAULT_MULTICROP, 5, step);
    const same = (got: { globals: Float32Array; locals: Float32Array }, step: number) => {
      const w = want(step);
      expect(Buffer.from(got.globals.buffer).equals(Buffer.from(w.globals.buffer)), `step ${step} globals`).toBe(true);
      expect(Buffer.from(got.locals.buffer).equals(Buffer.from(w.locals.buffer)), `step ${step} locals`).toBe(true);
    };
    const p = new CropPrefetcher(imgs, 32, DEFAULT_MULTICROP, 5, rows, 8);
    try {
      expect(p.threaded).toBe(true);
      for (const step of [0, 1, 2, 5, 3, 6, 7]) same(await p.batch(step), step); // in order (prefetched) and out of order
      // the worker dies: open and later requests are made on the main thread, the same bits
      const next = p.batch(4);
      await (p as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      same(await next, 4);
      expect(p.threaded).toBe(false);
      same(await p.batch(1), 1);
    } finally {
      await p.close();
    }
    // a bad row fails in the worker and reaches the caller as the error multiCrop throws
    const bad = new CropPrefetcher(imgs, 32, DEFAULT_MULTICROP, 5, () => Int32Array.from([99]), 2);
    try {
      await expect(bad.batch(0)).rejects.toThrow(/multiCrop: row 99 is outside the 30 images/);
    } finally {
      await bad.close();
    }
    // DCD_SSL_PREFETCH=0: no worker, same batches
    process.env.DCD_SSL_PREFETCH = '0';
    try {
      const q = new CropPrefetcher(imgs, 32, DEFAULT_MULTICROP, 5, rows, 8);
      expect(q.threaded).toBe(false);
      same(await q.batch(2), 2);
      await q.close();
    } finally {
      delete process.env.DCD_SSL_PREFETCH;
    }
  });
  it('rejects bad options with the key', () => {
    expect(() => dinoOptions({ crops: { globalCrops: 1 } })).toThrow(/pretrain\.crops\.globalCrops: expected an integer ≥ 2/);
    expect(() => dinoOptions({ crops: { localScale: [0.5, 0.2] } })).toThrow(ConfigError);
    expect(() => dinoOptions({ batchSize: 0 })).toThrow(/pretrain\.batchSize/);
    expect(() => dinoOptions({ momentum: 1.5 })).toThrow(/pretrain\.momentum: expected a number in \[0, 1\]/);
  });
});

describe('pretrainDino', () => {
  const d = generateSynthetic({ imageSize: 16, variant: 'textured', train: { size: 6, homeRate: 0.75 }, test: { size: 6 }, shifted: { size: 6, rareRate: 0.8 }, pool: { size: 48, homeRate: 0.4, wrongLabelRate: 0, objectlessRate: 0 } }, 0);
  const data = { images: d.sets.pool.images, size: 16, n: 48 };
  const oDino = { widths: [4, 8], epochs: 2, batchSize: 8, warmupEpochs: 0.5, checkpointEvery: 4, head: { hiddenDim: 16, bottleneckDim: 8, outDim: 16, layers: 2 }, crops: { globalSize: 16, localSize: 8, localCrops: 2 } };
  const o = dinoOptions(oDino);

  it.each(['dino', 'simclr'] as const)('%s resumes after an interruption to the same weights and loss record as an uninterrupted run, without leaking tensors', async (method) => {
    const o = dinoOptions({ ...oDino, method });
    const before = tf.memory().numTensors;
    const full = await pretrainDino(data, o, tmp());
    expect(full.total).toBe(12);
    const ref = new Map([...full.backbone.params()].map(([k, v]) => [k, v.dataSync().slice()]));
    full.backbone.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const recs = readLossRecord(full.lossFile);
    expect(recs.map((r) => r.step)).toEqual([...Array(12).keys()]);
    expect(recs.every((r) => Number.isFinite(r.loss) && r.loss > 0)).toBe(true);

    const dir = tmp();
    await expect(
      pretrainDino(data, o, dir, (r) => {
        if (r.step === 6) throw new Error('killed');
      }),
    ).rejects.toThrow('killed');
    expect(tf.memory().numTensors).toBe(before);
    const resumed = await pretrainDino(data, o, dir);
    expect(resumed.resumedFrom).toBe(4);
    expect(resumed.stepsRun).toBe(8);
    for (const [k, v] of resumed.backbone.params()) expect(Array.from(v.dataSync())).toEqual(Array.from(ref.get(k)!));
    expect(readLossRecord(resumed.lossFile)).toEqual(recs);
    resumed.backbone.dispose();
    // a finished run resumes to nothing
    const again = await pretrainDino(data, o, dir);
    expect(again.stepsRun).toBe(0);
    again.backbone.dispose();
    // other options: the checkpoint is refused, not silently reused
    await expect(pretrainDino(data, { ...o, lr: o.lr * 2 }, dir)).rejects.toThrow(ArtifactError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a batch larger than the data', async () => {
    await expect(pretrainDino({ ...data, n: 4, images: data.images.subarray(0, 4 * 16 * 16 * 3) }, o, tmp())).rejects.toThrow(/pretrain\.batchSize: 8 is larger than the 4/);
  });
});

describe('textured synthetic variant', () => {
  it('colour statistics do not give the context away (they do in the flat variant)', () => {
    const opts = { imageSize: 32, train: { size: 600, homeRate: 0.75 }, test: { size: 6 }, shifted: { size: 6, rareRate: 0.8 }, pool: { size: 6, homeRate: 0.4, wrongLabelRate: 0, objectlessRate: 0 } };
    const acc = (variant: 'flat' | 'textured') => {
      const s = generateSynthetic({ ...opts, variant }, 0).sets.train;
      // nearest-centroid context classifier on each image's mean RGB: fit on the first half, score the second
      const px = 32 * 32;
      const mean = (i: number) => [0, 1, 2].map((c) => {
        let t = 0;
        for (let p = 0; p < px; p++) t += s.images[(i * px + p) * 3 + c]!;
        return t / px;
      });
      const cent = Array.from({ length: 6 }, () => [0, 0, 0, 0]);
      const half = s.n / 2;
      for (let i = 0; i < half; i++) {
        const m = mean(i);
        const c = cent[s.contexts[i]!]!;
        for (let k = 0; k < 3; k++) c[k]! += m[k]!;
        c[3]!++;
      }
      let ok = 0;
      for (let i = half; i < s.n; i++) {
        const m = mean(i);
        let best = 0;
        let bd = Infinity;
        cent.forEach((c, j) => {
          const dd = [0, 1, 2].reduce((a, k) => a + (m[k]! - c[k]! / c[3]!) ** 2, 0);
          if (dd < bd) (bd = dd), (best = j);
        });
        if (best === s.contexts[i]) ok++;
      }
      return ok / half;
    };
    expect(acc('flat')).toBeGreaterThan(0.9);
    expect(acc('textured')).toBeLessThan(0.35); // chance is 1/6
  });
  it('rejects more contexts than textures', () => {
    expect(() => generateSynthetic({ variant: 'textured', numContexts: 7 }, 0)).toThrow(/numContexts: expected at most 6 for variant textured/);
    expect(() => generateSynthetic({ variant: 'stripy' as 'flat' }, 0)).toThrow(/synthetic\.variant: expected "flat" or "textured"/);
  });
});

describe('SimCLR NT-Xent (hand-computed)', () => {
  it('equals ln((e + 2)/e) for two orthogonal pairs at τ = 1, and is lower when positives align better', async () => {
    const { ntXentLoss } = await import('../src/ssl/simclr.js');
    const z = tf.tensor2d([[1, 0], [0, 1], [1, 0], [0, 1]]);
    const l = ntXentLoss(z, 1);
    expect(l.dataSync()[0]).toBeCloseTo(Math.log((Math.E + 2) / Math.E), 5);
    const a = Math.SQRT1_2;
    const z2 = tf.tensor2d([[1, 0], [0, 1], [a, a], [a, a]]); // positives less aligned
    const l2 = ntXentLoss(z2, 1);
    expect(l2.dataSync()[0]).toBeGreaterThan(l.dataSync()[0]!);
    expect(() => ntXentLoss(tf.tensor2d([[1, 0], [0, 1]]), 1)).toThrow(/B ≥ 2/);
    tf.dispose([z, l, z2, l2]);
  });
});

describe('weights: ssl in the config', () => {
  it('accepts the ssl backbone and refuses debug/test sets and relative folders as pretraining data', async () => {
    const { validateConfig, isSslBackbone } = await import('../src/core/config.js');
    const { sslPretrain } = await import('../src/pipeline/stages/ssl-backbone.js');
    const { checkConfig } = await import('../src/pipeline/config-check.js');
    const base = { experiment: { name: 'x' }, data: { kind: 'synthetic' }, filter: { enabled: false } };
    const withPretrain = (pretrain: Record<string, unknown>) => validateConfig({ ...base, backbones: [{ name: 'ssl_cnn', weights: 'ssl', pretrain }] }, 'x.yaml');
    const cfg = withPretrain({ method: 'dino', data: 'pool', epochs: 3 });
    checkConfig(cfg);
    const b = cfg.backbones[0]!;
    if (!isSslBackbone(b)) throw new Error('expected an ssl backbone');
    const { data, options } = sslPretrain(b, 0);
    expect(data).toBe('pool');
    expect(options.epochs).toBe(3);
    expect(options.method).toBe('dino');
    for (const bad of ['test', 'mfreq', 'complement', 'train'])
      expect(() => checkConfig(withPretrain({ data: bad }))).toThrow(new RegExp(`backbones\\[0\\]\\.pretrain\\.data: "${bad}" is a debug or test set`));
    expect(() => checkConfig(withPretrain({ data: '/data/v2/mfreq' }))).toThrow(/"\/data\/v2\/mfreq" is a debug or test set \(mfreq\)/);
    expect(() => checkConfig(withPretrain({ data: 'imgs/' }))).toThrow(/expected "pool", "broad" or a folder path/);
    expect(() => checkConfig(withPretrain({ data: 'pool', broadSize: 100 }))).toThrow(/pretrain\.broadSize: only used with data: broad/);
    expect(() => withPretrain({ data: 'broad', broadSize: 0 })).toThrow(/pretrain\.broadSize: expected a number >= 1/);
    expect(() => withPretrain({ method: 'byol' })).toThrow(/backbones\[0\]\.pretrain\.method: expected one of "dino", "simclr"/);
  });
});

describe('pretraining data: broad', () => {
  it('is one stage for every experiment seed (no dependency on the seed draw), drawn like the broad draw of the supervised backbone; refused for other data kinds', async () => {
    const { validateConfig, isSslBackbone } = await import('../src/core/config.js');
    const { sslBackboneStage } = await import('../src/pipeline/stages/ssl-backbone.js');
    const { dataStage } = await import('../src/pipeline/stages/data.js');
    const { checkConfig } = await import('../src/pipeline/config-check.js');
    const cfg = validateConfig({ experiment: { name: 'x' }, data: { kind: 'synthetic', synthetic: { imageSize: 16 } }, backbones: [{ name: 'ssl_cnn', weights: 'ssl', pretrain: { method: 'simclr', data: 'broad', broadSize: 64, batchSize: 16, maxSteps: 1, seed: 7, crops: { globalSize: 16, localCrops: 0 } } }] }, 'x.yaml');
    const b = cfg.backbones[0]!;
    if (!isSslBackbone(b)) throw new Error('expected an ssl backbone');
    const s0 = sslBackboneStage(cfg, b, 0, dataStage(cfg, 0));
    const s1 = sslBackboneStage(cfg, b, 0, dataStage(cfg, 1));
    expect(s0.deps).toEqual({});
    expect(JSON.stringify(s0.config)).toBe(JSON.stringify(s1.config));
    if (!isSslBackbone(b)) throw new Error('expected an ssl backbone');
    const pool = sslBackboneStage(cfg, { ...b, pretrain: { ...b.pretrain, data: 'pool', broadSize: undefined } }, 0, dataStage(cfg, 0));
    expect(Object.keys(pool.deps)).toEqual(['data']);
    // it pretrains on the broad draw of pretrain.seed: 64 images of 16 px
    const dir = tmp();
    const out = await s0.run({ dir, inputs: {}, progress: () => ({ tick() {}, stop() {} }) as never, log: () => {} });
    expect(out.counts).toEqual({ steps: 1, images: 64 });
    const inet = validateConfig({ experiment: { name: 'x' }, data: { kind: 'imagenet' }, backbones: [b] }, 'x.yaml');
    expect(() => checkConfig(inet)).toThrow(/pretrain\.data: "broad" is a synthetic draw/);
  });
});

describe('pretraining data from a folder', () => {
  it('reads every image under it, resized, and names the folder or file when it cannot', async () => {
    const sharp = (await import('sharp')).default;
    const { readFolder } = await import('../src/pipeline/stages/ssl-backbone.js');
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const dir = tmp();
    mkdirSync(path.join(dir, 'sub'));
    const red = await sharp({ create: { width: 10, height: 6, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
    const blue = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 1 } } }).jpeg().toBuffer();
    writeFileSync(path.join(dir, 'a.png'), red);
    writeFileSync(path.join(dir, 'sub', 'b.jpg'), blue);
    writeFileSync(path.join(dir, 'notes.txt'), 'not an image');
    const got = await readFolder(dir, 4, 'pretrain.data');
    expect(got.n).toBe(2);
    expect(got.size).toBe(4);
    expect(Array.from(got.images.subarray(0, 3))).toEqual([255, 0, 0]); // a.png first (sorted walk)
    expect(got.images[4 * 4 * 3 + 2]).toBeGreaterThan(200); // sub/b.jpg is blue
    const empty = tmp();
    await expect(readFolder(empty, 4, 'pretrain.data')).rejects.toThrow(/pretrain\.data: .* holds no \.png\/\.jpg\/\.webp images/);
    writeFileSync(path.join(empty, 'broken.png'), 'xx');
    await expect(readFolder(empty, 4, 'pretrain.data')).rejects.toThrow(/broken\.png: cannot decode/);
    await expect(readFolder(path.join(empty, 'nope'), 4, 'pretrain.data')).rejects.toThrow(/is not a folder/);
  });
});
