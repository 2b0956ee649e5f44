/**
 * The `native` backend against tfjs's `cpu` backend: every kernel the addon replaces, forward
 * and gradient, on random shapes (odd sizes, strides, dilations, every padding mode, batch 1),
 * plus tensor-leak and addon-memory (RSS) checks. Skipped only when the addon is not built.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { ATTENTION_KERNEL, LINEAR_KERNEL, BN_GRAD_KERNEL, BN_TRAIN_GRAD_KERNEL, BN_TRAIN_KERNEL, GELU_KERNEL, RELU_GRAD_KERNEL, CONV_ADD_KERNEL, LAYER_NORM_KERNEL, SGD_KERNEL, IM2COL_KERNEL, COL2IM_KERNEL, BufferPool, findAddon, markConstant, nativeKernelNames, nativePool, poolCapFromEnv, nativeStats, registerNativeBackend, simplifyTranspose } from '../src/backends/native.js';
import { attention, batchNormTrain, gelu, layerNorm, linear } from '../src/models/ops.js';
import { createSmallCnn, patches3x3 } from '../src/models/small-cnn.js';
import { trainStep } from '../src/train/supervised.js';
import { Sgd } from '../src/train/optimizer.js';
import { distanceBlock, holdRows, releaseBlock } from '../src/retrieval/knn.js';

const reg = registerNativeBackend();
if (!reg.ok) console.warn(`native backend tests skipped: ${reg.why}`);

/** Deterministic pseudo-random floats in [lo, hi). */
function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return out;
}

type Input = { shape: number[]; data: Float32Array | Int32Array; dtype?: 'float32' | 'int32' };
const inp = (shape: number[], seed: number, lo = -1, hi = 1): Input => ({
  shape,
  data: rand(shape.reduce((a, b) => a * b, 1), seed, lo, hi),
});

async function runOn(
  backend: string,
  inputs: Input[],
  fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<{ shape: number[]; data: Float32Array | Int32Array }[]> {
  await tf.setBackend(backend);
  const outs = tf.tidy(() => {
    const xs = inputs.map((i) => tf.tensor(i.data, i.shape, i.dtype ?? 'float32'));
    const o = fn(...xs);
    return Array.isArray(o) ? o : [o];
  });
  const res = await Promise.all(outs.map(async (t) => ({ shape: t.shape, data: (await t.data()) as Float32Array })));
  tf.dispose(outs);
  return res;
}

function expectClose(
  got: { shape: number[]; data: Float32Array | Int32Array }[],
  want: { shape: number[]; data: Float32Array | Int32Array }[],
  tol: number,
  what: string,
): void {
  expect(got.length, what).toBe(want.length);
  got.forEach((g, j) => {
    expect(g.shape, `${what} output ${j} shape`).toEqual(want[j].shape);
    let scale = 1;
    for (const v of want[j].data) scale = Math.max(scale, Math.abs(v));
    let worst = 0, at = -1;
    for (let i = 0; i < g.data.length; i++) {
      const d = Math.abs(g.data[i] - want[j].data[i]);
      if (!(d <= worst)) {
        worst = d;
        at = i;
      }
    }
    expect(worst / scale, `${what} output ${j}: |diff| ${worst} at ${at} (scale ${scale})`).toBeLessThanOrEqual(tol);
  });
}

/** Runs `fn` on cpu and native, compares, and checks that `kernels` ran natively without leaks. */
async function parity(
  what: string,
  inputs: Input[],
  fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  kernels: string[],
  tol = 1e-4,
): Promise<void> {
  const want = await runOn('cpu', inputs, fn);
  const before = kernels.map((k) => nativeStats.native[k] ?? 0);
  const n0 = tf.memory().numTensors;
  const got = await runOn('native', inputs, fn);
  expect(tf.memory().numTensors, `${what}: tensors leaked`).toBe(n0);
  kernels.forEach((k, i) => expect(nativeStats.native[k] ?? 0, `${what}: ${k} did not run natively`).toBeGreaterThan(before[i]));
  expectClose(got, want, tol, what);
}

/** Forward output plus the gradients of sum(f(xs) * r) with respect to every input. */
function withGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, seed = 99): (...xs: tf.Tensor[]) => tf.Tensor[] {
  return (...xs) => {
    const y = f(...xs);
    const r = tf.tensor(rand(y.size, seed), y.shape);
    const g = tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(f(...ys), r)))(xs);
    return [y, ...g];
  };
}

const d = describe.skipIf(!reg.ok);

describe('native backend: install and fallback story', () => {
  it('the build script never fails npm install: it prints one line saying why', () => {
    const r = spawnSync(process.execPath, ['scripts/build-native.mjs'], {
      encoding: 'utf8',
      env: { ...process.env, DCD_SKIP_NATIVE: '1' },
    });
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      'dcd: native backend not built (DCD_SKIP_NATIVE=1); dcd will use the wasm backend.',
    ]);
  });
  it.runIf(existsSync('dist/src/backends/chain.js'))('without a loadable addon, dcd falls back to wasm and says why', () => {
    const code = "const m = await import('./dist/src/backends/chain.js'); console.log('chose', await m.initBackend());";
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      env: { ...process.env, DCD_NATIVE_ADDON: '/nonexistent/dcd_native.node', DCD_BACKEND: 'auto' },
    });
    const out = r.stdout + r.stderr;
    expect(r.status, out).toBe(0);
    expect(out).toContain('chose wasm');
    expect(out).toMatch(/native: cannot load \/nonexistent\/dcd_native\.node/);
  });
  it.runIf(existsSync('dist/src/backends/chain.js') && reg.ok)('an addon built before this checkout (a function missing) is refused with the rebuild command', () => {
    // the real addon minus its newest function, as a module that createRequire loads like the .node file
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dcd-old-addon-'));
    const file = path.join(dir, 'old-addon.cjs');
    writeFileSync(file, `const a = require(${JSON.stringify(path.resolve(findAddon()!))}); module.exports = { ...a, col2im3x3: undefined };`);
    const code = "const m = await import('./dist/src/backends/chain.js'); console.log('chose', await m.initBackend());";
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      env: { ...process.env, DCD_NATIVE_ADDON: file, DCD_BACKEND: 'auto' },
    });
    rmSync(dir, { recursive: true, force: true });
    const out = r.stdout + r.stderr;
    expect(r.status, out).toBe(0);
    expect(out).toContain('chose wasm');
    expect(out).toContain(`native: ${file} is older than this checkout (no col2im3x3): rebuild it with \`node scripts/build-native.mjs\``);
  });
});

describe('native backend: output-buffer pool bookkeeping', () => {
  const MIN = BufferPool.MIN, KB = MIN * 4; // the smallest pooled buffer, in elements and bytes
  const take = (p: BufferPool, n: number) => {
    const a = p.alloc(n);
    p.registered(a); // the backend registers each output once as a tensor's values
    return a;
  };
  it('adaptive: keeps what the largest live set needed, never more, and refuses nothing', () => {
    const p = new BufferPool(null, 0, 1e12);
    const [a, b] = [take(p, MIN), take(p, MIN)];
    expect(p.liveBytes()).toEqual({ live: 2 * KB, peak: 2 * KB });
    p.release(a);
    p.release(b);
    expect(p.heldBytes()).toBe(2 * KB); // a step's end: everything comes back
    const c = take(p, MIN);
    expect(p.hits).toBe(1);
    // a new, larger size: the held buffers beyond the peak live set are dropped first
    const e = take(p, 2 * MIN);
    expect(p.liveBytes().live).toBe(3 * KB);
    expect(p.heldBytes() + p.liveBytes().live).toBeLessThanOrEqual(p.liveBytes().peak);
    expect(p.heldBytes()).toBe(0);
    p.release(c);
    p.release(e);
    expect(p.heldBytes()).toBe(3 * KB);
    // read-out (escaped) buffers are never pooled and leave the live count
    const f = take(p, MIN);
    p.escaped(f);
    const live = p.liveBytes().live;
    p.release(f);
    expect(p.liveBytes().live).toBe(live);
    expect(p.heldBytes()).toBeLessThanOrEqual(3 * KB);
  });
  it('adaptive cap is bounded below and above; a fixed cap bounds the free buffers alone', () => {
    const floor = new BufferPool(null, 10 * KB, 1e12);
    const xs = [take(floor, MIN), take(floor, MIN)];
    expect(floor.capBytes).toBe(10 * KB);
    xs.forEach((x) => floor.release(x));
    expect(floor.heldBytes()).toBe(2 * KB);
    const ceil = new BufferPool(null, 0, KB);
    const ys = [take(ceil, MIN), take(ceil, MIN), take(ceil, MIN)];
    ys.forEach((y) => ceil.release(y));
    expect(ceil.heldBytes()).toBe(KB);
    const fixed = new BufferPool(2.5 * KB);
    const zs = [take(fixed, MIN), take(fixed, MIN), take(fixed, MIN)];
    zs.forEach((z) => fixed.release(z));
    expect(fixed.heldBytes()).toBe(2 * KB);
    const off = new BufferPool(0);
    off.release(take(off, MIN));
    expect(off.heldBytes()).toBe(0);
  });
  it('adopt takes back whole read-out buffers only, once', () => {
    const p = new BufferPool(null, 1e9, 1e12);
    const v = new Float32Array(MIN);
    p.adopt(v);
    p.adopt(v);
    expect(p.heldBytes()).toBe(KB);
    p.adopt(new Float32Array(2 * MIN).subarray(0, MIN)); // a view: never pooled
    p.adopt(new Float32Array(MIN - 1)); // below the pooled sizes
    expect(p.heldBytes()).toBe(KB);
    expect(p.alloc(MIN)).toBe(v);
  });
  it('DCD_NATIVE_POOL_MB: unset = adaptive, a number = MiB, anything else an error naming it', () => {
    expect(poolCapFromEnv(undefined)).toBeNull();
    expect(poolCapFromEnv('')).toBeNull();
    expect(poolCapFromEnv('0')).toBe(0);
    expect(poolCapFromEnv('1.5')).toBe(1.5 * 2 ** 20);
    expect(() => poolCapFromEnv('lots')).toThrow(/DCD_NATIVE_POOL_MB="lots"/);
    expect(() => poolCapFromEnv('-1')).toThrow(/MiB ≥ 0/);
  });
});

d('native backend: registration', () => {
  it('inherits every cpu kernel and replaces the hot ones', () => {
    const cpu = tf.getKernelsForBackend('cpu').map((k) => k.kernelName);
    const nat = new Set(tf.getKernelsForBackend('native').map((k) => k.kernelName));
    expect(cpu.filter((k) => !nat.has(k))).toEqual([]);
    for (const k of nativeKernelNames())
      expect(tf.getKernel(k, 'native')?.kernelFunc, k).not.toBe(tf.getKernel(k, 'cpu')?.kernelFunc);
  });
});

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
const CONVS: { x: number[]; f: number[]; s: number | [number, number]; pad: Pad; dil: number | [number, number] }[] = [
  { x: [1, 7, 9, 3], f: [3, 3, 3, 5], s: 1, pad: 'same', dil: 1 },
  { x: [2, 8, 8, 4], f: [3, 3, 4, 6], s: 2, pad: 'valid', dil: 1 },
  { x: [1, 11, 10, 5], f: [5, 3, 5, 7], s: [2, 3], pad: 'same', dil: 1 },
  { x: [3, 9, 9, 2], f: [3, 3, 2, 4], s: 1, pad: 'same', dil: 2 },
  { x: [1, 13, 10, 3], f: [3, 2, 3, 5], s: 1, pad: 'valid', dil: [2, 3] },
  { x: [1, 10, 7, 3], f: [2, 2, 3, 3], s: 1, pad: [[0, 0], [1, 2], [2, 1], [0, 0]], dil: 1 },
  { x: [2, 6, 6, 8], f: [1, 1, 8, 16], s: 2, pad: 'valid', dil: 1 },
  { x: [1, 12, 12, 3], f: [7, 7, 3, 8], s: 2, pad: 3, dil: 1 },
  { x: [2, 7, 7, 16], f: [3, 3, 16, 9], s: 2, pad: 'same', dil: 1 },
];

d('native backend: convolution', () => {
  it('Conv2D forward and both backprops match cpu', async () => {
    for (const [i, c] of CONVS.entries()) {
      const what = `conv ${JSON.stringify(c)}`;
      const f = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.s, c.pad, 'NHWC', c.dil);
      if (c.dil === 1) {
        await parity(what, [inp(c.x, 2 * i + 1), inp(c.f, 2 * i + 2)], withGrads(f), [
          'Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter',
        ]);
      } else {
        // tfjs defines no conv2d gradient for dilations > 1.
        await parity(what, [inp(c.x, 2 * i + 1), inp(c.f, 2 * i + 2)], f, ['Conv2D']);
      }
    }
  });

  it('FusedConv2D with bias and each activation matches cpu, with gradients', async () => {
    const acts = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid'] as const;
    for (const [i, act] of acts.entries()) {
      const c = CONVS[i % CONVS.length];
      if (c.dil !== 1) continue;
      const f = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
        tf.fused.conv2d({
          x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: c.s, pad: c.pad as 'same', bias: b,
          activation: act, leakyreluAlpha: 0.3,
        });
      const inputs = [inp(c.x, 10 + i), inp(c.f, 20 + i), inp([c.f[3]], 30 + i)];
      const grads = act === 'linear' || act === 'relu';
      await parity(`fused conv ${act}`, inputs, grads ? withGrads(f) : f, ['FusedConv2D'], 1e-4);
    }
  });

  it('constant 3×3 stride-1 weights (Winograd with blocked activations) match cpu, with bias, ReLU and a residual, on first and packed calls', async () => {
    const cases: { x: number[]; f: number[]; pad: 'same' | 'valid' }[] = [
      { x: [1, 9, 9, 5], f: [3, 3, 5, 7], pad: 'same' },
      { x: [2, 14, 14, 32], f: [3, 3, 32, 32], pad: 'same' },
      { x: [3, 7, 8, 16], f: [3, 3, 16, 24], pad: 'valid' },
    ];
    for (const [i, c] of cases.entries()) {
      const [xi, wi, bi] = [inp(c.x, 1100 + i), inp(c.f, 1110 + i, -0.3, 0.3), inp([c.f[3]!], 1120 + i)];
      const run = (backend: string, residual: boolean, act: 'linear' | 'relu') => {
        tf.setBackend(backend);
        return tf.tidy(() => {
          const [x, w, b] = [xi, wi, bi].map((t) => tf.tensor(t.data, t.shape)) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor1D];
          markConstant(w); // as the folded eval weights: packed on the first call, reused after
          const y0 = tf.conv2d(x, w, 1, c.pad);
          const r = tf.tensor(rand(y0.size, 1130 + i, -2, 2), y0.shape) as tf.Tensor4D;
          const once = () =>
            backend === 'native' && residual
              ? (tf.engine().runKernel(CONV_ADD_KERNEL, { x, filter: w, bias: b, residual: r }, { strides: 1, pad: c.pad, dataFormat: 'NHWC', dilations: 1, activation: act }) as tf.Tensor)
              : residual
                ? ((y: tf.Tensor) => (act === 'relu' ? tf.relu(y) : y))(tf.add(tf.fused.conv2d({ x, filter: w, strides: 1, pad: c.pad, bias: b }), r))
                : tf.fused.conv2d({ x, filter: w, strides: 1, pad: c.pad, bias: b, activation: act });
          return [once().dataSync().slice(), once().dataSync().slice()];
        });
      };
      for (const residual of [false, true])
        for (const act of ['linear', 'relu'] as const) {
          const want = run('cpu', residual, act)[0]!;
          const got = run('native', residual, act);
          got.forEach((g, k) => expectClose([{ shape: [g.length], data: g }], [{ shape: [want.length], data: want }], 1e-5, `winograd ${c.x} ${residual ? 'residual ' : ''}${act} call ${k + 1}`));
        }
    }
  });

  it('conv + bias + residual (+ ReLU) as one kernel (oneDNN sum post-op) matches conv, add, relu on cpu', async () => {
    for (const [i, c] of CONVS.entries()) {
      if (c.dil !== 1) continue;
      for (const act of ['linear', 'relu'] as const) {
        const y0 = tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.f) as tf.Tensor4D, c.s, c.pad as 'same');
        const outShape = y0.shape;
        y0.dispose();
        const inputs = [inp(c.x, 40 + i), inp(c.f, 50 + i), inp([c.f[3]!], 60 + i), inp(outShape, 70 + i, -2, 2)];
        const f = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, r: tf.Tensor) =>
          tf.getBackend() === 'native'
            ? (tf.engine().runKernel(CONV_ADD_KERNEL, { x, filter: w, bias: b, residual: r }, { strides: c.s, pad: c.pad, dataFormat: 'NHWC', dilations: 1, activation: act }) as tf.Tensor)
            : (((y: tf.Tensor) => (act === 'relu' ? tf.relu(y) : y))(tf.add(tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: c.s, pad: c.pad as 'same', bias: b }), r)));
        await parity(`conv add ${act} ${i}`, inputs, f, [CONV_ADD_KERNEL], 1e-4);
      }
    }
    // a residual of another shape goes to the cpu composition (which then fails to broadcast);
    // an activation other than linear/relu is refused by name; both counted as fallbacks
    const before = nativeStats.fallback[CONV_ADD_KERNEL] ?? 0;
    const n0 = tf.memory().numTensors;
    const run = (r: number[], act: string) => () =>
      tf.tidy(() => tf.engine().runKernel(CONV_ADD_KERNEL, { x: tf.ones([1, 4, 4, 2]), filter: tf.ones([1, 1, 2, 3]), residual: tf.ones(r) }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: 1, activation: act }));
    expect(run([1, 4, 4, 3], 'relu6')).toThrow(/relu6 is not supported/);
    expect(Array.from((run([3], 'relu')() as tf.Tensor).dataSync())).toEqual(new Array(48).fill(3));
    expect(nativeStats.fallback[CONV_ADD_KERNEL]).toBe(before + 2);
    expect(tf.memory().numTensors).toBeLessThanOrEqual(n0 + 1);
  });
});

d('native backend: matmul', () => {
  const cases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
    { a: [5, 7], b: [7, 3], ta: false, tb: false },
    { a: [7, 5], b: [7, 3], ta: true, tb: false },
    { a: [5, 7], b: [3, 7], ta: false, tb: true },
    { a: [7, 5], b: [3, 7], ta: true, tb: true },
    { a: [4, 1, 9], b: [4, 9, 2], ta: false, tb: false },
    { a: [2, 3, 6, 5], b: [5, 6], ta: false, tb: false },
    { a: [1, 6, 5], b: [3, 6, 4], ta: true, tb: false },
    { a: [3, 33, 65], b: [3, 17, 65], ta: false, tb: true },
  ];
  it('BatchMatMul with transposes and batch broadcast matches cpu, with gradients', async () => {
    for (const [i, c] of cases.entries()) {
      const f = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b, c.ta, c.tb);
      // tfjs's BatchMatMul gradient does not reduce over broadcast batch axes (on any backend).
      const grads = c.a.length === c.b.length && c.a.slice(0, -2).every((v, j) => v === c.b[j]);
      await parity(`matmul ${JSON.stringify(c)}`, [inp(c.a, 40 + i), inp(c.b, 50 + i)], grads ? withGrads(f) : f, [
        'BatchMatMul',
      ]);
    }
  });
  it('_FusedMatMul with bias and activations matches cpu', async () => {
    const acts = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid'] as const;
    for (const [i, act] of acts.entries()) {
      const c = cases[i];
      const n = c.tb ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
      const f = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) =>
        tf.fused.matMul({ a, b, transposeA: c.ta, transposeB: c.tb, bias, activation: act, leakyreluAlpha: 0.1 });
      const grads = act === 'linear' || act === 'relu';
      await parity(
        `fused matmul ${act}`, [inp(c.a, 60 + i), inp(c.b, 70 + i), inp([n], 80 + i)], grads ? withGrads(f) : f,
        ['_FusedMatMul'],
      );
    }
  });
});

/** Exact AvgPool gradient (windows exclude padding, as the forward pass): the reference for AvgPoolGrad. */
function avgPoolGradRef(xShape: number[], dy: Float32Array, info: tf.backend_util.Conv2DInfo): Float32Array {
  const [n, h, w, c] = xShape;
  const dx = new Float32Array(n * h * w * c);
  const { outHeight: oh, outWidth: ow, filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  for (let b = 0; b < n; b++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        const r0 = i * sh - info.padInfo.top, c0 = j * sw - info.padInfo.left;
        const cells: [number, number][] = [];
        for (let r = r0; r < r0 + fh; r++)
          for (let q = c0; q < c0 + fw; q++) if (r >= 0 && r < h && q >= 0 && q < w) cells.push([r, q]);
        for (let ch = 0; ch < c; ch++) {
          const g = dy[((b * oh + i) * ow + j) * c + ch] / cells.length;
          for (const [r, q] of cells) dx[((b * h + r) * w + q) * c + ch] += g;
        }
      }
  return dx;
}

d('native backend: pooling and batch norm', () => {
  const cases: { x: number[]; k: number | [number, number]; s: number | [number, number]; pad: 'same' | 'valid' | number }[] = [
    { x: [1, 7, 9, 3], k: 3, s: 2, pad: 'same' },
    { x: [2, 8, 8, 4], k: 2, s: 2, pad: 'valid' },
    { x: [1, 11, 10, 5], k: [3, 2], s: [1, 2], pad: 'same' },
    { x: [2, 9, 9, 2], k: 3, s: 2, pad: 1 },
    { x: [1, 5, 5, 1], k: 5, s: 1, pad: 'valid' },
  ];
  it('MaxPool and its gradient match cpu', async () => {
    for (const [i, c] of cases.entries()) {
      const f = (x: tf.Tensor) => tf.maxPool(x as tf.Tensor4D, c.k, c.s, c.pad);
      await parity(`maxpool ${JSON.stringify(c)}`, [inp(c.x, 90 + i)], withGrads(f), ['MaxPool', 'MaxPoolGrad']);
    }
  });
  it('AvgPool matches cpu; AvgPoolGrad is the exact gradient', async () => {
    for (const [i, c] of cases.entries()) {
      const f = (x: tf.Tensor) => tf.avgPool(x as tf.Tensor4D, c.k, c.s, c.pad);
      const x = inp(c.x, 100 + i);
      await parity(`avgpool ${JSON.stringify(c)}`, [x], f, ['AvgPool']);
      const info = tf.backend_util.computePool2DInfo(c.x as [number, number, number, number], c.k, c.s, 1, c.pad);
      const dy = rand(info.outShape.reduce((a, b) => a * b, 1), 110 + i);
      await tf.setBackend('native');
      const before = nativeStats.native.AvgPoolGrad ?? 0;
      const got = tf.tidy(() =>
        tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), tf.tensor(dy, info.outShape))))(tf.tensor(x.data, x.shape)),
      );
      expect(nativeStats.native.AvgPoolGrad).toBeGreaterThan(before);
      expectClose([{ shape: got.shape, data: got.dataSync() as Float32Array }], [
        { shape: c.x, data: avgPoolGradRef(c.x, dy, info) },
      ], 1e-5, `avgpool grad ${JSON.stringify(c)}`);
      got.dispose();
    }
  });
  it('FusedBatchNorm matches cpu, with gradients', async () => {
    const f = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) => tf.batchNorm(x, m, v, o, s, 1e-3);
    const C = 7;
    await parity(
      'batchnorm',
      [inp([2, 5, 3, C], 120), inp([C], 121), inp([C], 122, 0.1, 2), inp([C], 123), inp([C], 124)],
      withGrads(f),
      ['FusedBatchNorm'],
    );
    await parity(
      'batchnorm, large',
      [inp([2, 20, 20, 400], 128), inp([400], 129), inp([400], 130, 0.1, 2), inp([400], 131), inp([400], 132)],
      f, ['FusedBatchNorm'],
    );
    // Mean/variance over (W, C) with offset/scale over C take the addon's general (cyclic-index) path.
    await parity('batchnorm, mixed parameter shapes', [inp([2, 3, 3, C], 133), inp([1, 1, 3, C], 134), inp([1, 1, 3, C], 135, 0.1, 2), inp([1, 1, 1, C], 136), inp([1, 1, 1, C], 137)], f, [
      'FusedBatchNorm',
    ]);
    const g = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor) => tf.batchNorm(x, m, v, undefined, undefined, 1e-5);
    await parity('batchnorm without offset/scale', [inp([1, 3, 3, C], 125), inp([C], 126), inp([C], 127, 0.1, 2)], g, [
      'FusedBatchNorm',
    ]);
  });
  it('the FusedBatchNorm gradient runs in one native kernel and matches cpu', async () => {
    const f = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) => tf.batchNorm(x, m, v, o, s, 1e-3);
    const cases: number[][] = [[2, 5, 3, 7], [1, 1, 1, 3], [1, 4, 4, 1], [3, 7, 5, 13], [2, 20, 20, 400]];
    for (const [i, shape] of cases.entries()) {
      const C = shape[3]!;
      await parity(
        `batchnorm grad ${shape}`,
        [inp(shape, 300 + i), inp([C], 310 + i), inp([C], 320 + i, 0.1, 2), inp([C], 330 + i), inp([C], 340 + i)],
        withGrads(f, 350 + i), ['FusedBatchNorm', BN_GRAD_KERNEL], 2e-4,
      );
    }
    // (tfjs cannot differentiate batchNorm without a scale on any backend: it saves the missing input.)
    // Training mode as the models use it: batch statistics from tf.moments, gradients through them.
    const train = (x: tf.Tensor, o: tf.Tensor, s: tf.Tensor) => {
      const { mean, variance } = tf.moments(x, [0, 1, 2]);
      return tf.batchNorm(x, mean, variance, o, s, 1e-5);
    };
    await parity('batchnorm grad, training mode', [inp([3, 6, 5, 9], 363, -2, 3), inp([9], 364), inp([9], 365)],
      withGrads(train), [BN_GRAD_KERNEL], 2e-4);
    // Parameters that are not per-channel (one value broadcast over all channels) keep tfjs's own gradient.
    const before = nativeStats.native[BN_GRAD_KERNEL] ?? 0;
    await parity('batchnorm grad, scalar-like parameters', [inp([2, 3, 3, 7], 366), inp([1], 367), inp([1], 368, 0.1, 2), inp([1], 369), inp([1], 370)],
      withGrads(f), ['FusedBatchNorm'], 2e-4);
    expect(nativeStats.native[BN_GRAD_KERNEL] ?? 0).toBe(before);
  });
});

d('native backend: element-wise', () => {
  const pairs: [number[], number[]][] = [
    [[3, 5], [3, 5]],
    [[2, 3, 4], [4]],
    [[2, 1, 4], [3, 1]],
    [[4, 6], []],
    [[], [5, 2]],
    [[1], [5, 1]],
    [[2, 3, 1, 5], [1, 3, 4, 1]],
    [[257, 130], [130]],
    [[520, 513], [513]], // above the addon's threading threshold (2^18 elements)
  ];
  const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, string][] = [
    ['Add', tf.add, 'Add'],
    ['Sub', tf.sub, 'Sub'],
    ['Mul', tf.mul, 'Multiply'],
    ['Div', tf.div, 'RealDiv'],
    ['Maximum', tf.maximum, 'Maximum'],
    ['Minimum', tf.minimum, 'Minimum'],
    ['SquaredDifference', tf.squaredDifference, 'SquaredDifference'],
  ];
  it('binary ops with broadcasting match cpu, with gradients', async () => {
    for (const [name, op, kernel] of ops)
      for (const [i, [sa, sb]] of pairs.entries()) {
        const lo = name === 'Div' ? 0.5 : -1;
        // tfjs's Maximum/Minimum/SquaredDifference gradients do not reduce over broadcast axes (on any backend).
        const grads = !['Maximum', 'Minimum', 'SquaredDifference'].includes(name) || JSON.stringify(sa) === JSON.stringify(sb);
        await parity(`${name} ${JSON.stringify([sa, sb])}`, [inp(sa, 130 + i), inp(sb, 140 + i, lo, 2)], grads ? withGrads(op) : op, [
          kernel,
        ]);
      }
  });
  it('int32 binary ops still work (cpu fallback)', async () => {
    const a: Input = { shape: [3], data: Int32Array.from([1, 2, 3]), dtype: 'int32' };
    await parity('int32 add', [a, a], (x, y) => tf.add(x, y), []);
  });
  const unary: [string, (x: tf.Tensor) => tf.Tensor, number, number, boolean][] = [
    ['Relu', tf.relu, -1, 1, true],
    ['Relu6', tf.relu6, -3, 9, true],
    ['Exp', tf.exp, -2, 2, true],
    ['Log', tf.log, 0.1, 3, true],
    ['Sqrt', tf.sqrt, 0.1, 3, true],
    ['Rsqrt', tf.rsqrt, 0.1, 3, true],
    ['Tanh', tf.tanh, -3, 3, true],
    ['Sigmoid', tf.sigmoid, -5, 5, true],
    ['Erf', tf.erf, -3, 3, true],
    ['Square', tf.square, -2, 2, true],
    ['Neg', tf.neg, -2, 2, true],
    ['Abs', tf.abs, -2, 2, true],
    ['Step', (x) => tf.step(x, 0.25), -2, 2, false],
  ];
  it('unary ops match cpu, with gradients', async () => {
    for (const [i, [name, op, lo, hi, grad]] of unary.entries()) {
      // Sizes on both sides of the addon's threading threshold (2^18 elements).
      for (const shape of [[3, 7], [70, 300], [600, 500]]) {
        await parity(`${name} ${shape}`, [inp(shape, 150 + i, lo, hi)], grad ? withGrads(op) : op, [name], 2e-6);
      }
    }
  });
  it('Softmax over the last axis matches cpu, with gradients', async () => {
    for (const [i, shape] of [[3, 7], [2, 3, 5], [1, 1000], [4, 1], [270, 1000]].entries())
      await parity(`softmax ${shape}`, [inp(shape, 170 + i, -5, 5)], withGrads((x) => tf.softmax(x)), ['Softmax'], 1e-5);
  });
});

d('native backend: reductions, transpose, topk', () => {
  const cases: [number[], number | number[], boolean][] = [
    [[5, 7], 1, false],
    [[5, 7], 0, true],
    [[2, 3, 4], [0, 2], false],
    [[2, 3, 4, 5], [1, 2], true],
    [[3, 4, 5], [0, 1, 2], false],
    [[300, 70], 0, false],
    [[1, 7, 7, 64], [1, 2], false],
    [[2, 3, 4], -1, true],
    [[700, 400], 0, false],
    [[700, 400], 1, true],
  ];
  const ops: [string, (x: tf.Tensor, a: number | number[], k: boolean) => tf.Tensor][] = [
    ['Sum', tf.sum],
    ['Mean', tf.mean],
    ['Max', tf.max],
    ['Min', tf.min],
  ];
  it('Sum, Mean, Max, Min over any axes match cpu, with gradients', async () => {
    for (const [name, op] of ops)
      for (const [i, [shape, axis, keep]] of cases.entries())
        await parity(
          `${name} ${JSON.stringify([shape, axis, keep])}`, [inp(shape, 180 + i)],
          withGrads((x) => op(x, axis, keep)), [name], 1e-5,
        );
  });
  it('Transpose (float32 and int32) matches cpu, with gradients', async () => {
    const perms: [number[], number[]][] = [
      [[3, 5], [1, 0]],
      [[2, 3, 4], [2, 0, 1]],
      [[2, 3, 4, 5], [0, 3, 1, 2]],
      [[65, 33, 3], [1, 2, 0]],
      [[1, 2, 1, 3, 2], [4, 3, 2, 1, 0]],
      [[130, 70, 33], [2, 0, 1]],
      [[64, 80, 60], [1, 0, 2]],
    ];
    for (const [i, [shape, perm]] of perms.entries()) {
      await parity(`transpose ${shape} ${perm}`, [inp(shape, 190 + i)], withGrads((x) => tf.transpose(x, perm)), ['Transpose'], 0);
      const n = shape.reduce((a, b) => a * b, 1);
      const ints: Input = { shape, data: Int32Array.from({ length: n }, (_, j) => j * 7 - 3), dtype: 'int32' };
      await parity(`int32 transpose ${shape}`, [ints], (x) => tf.transpose(x, perm), ['Transpose'], 0);
    }
  });
  it('Tile matches cpu, with gradients', async () => {
    const cases: [number[], number[]][] = [
      [[3, 5], [2, 1]],
      [[3, 5], [1, 3]],
      [[2, 1, 4], [3, 5, 2]],
      [[7], [4]],
      [[1, 1, 1, 64], [8, 7, 7, 1]],
      [[40, 1, 2], [1, 30, 2]],
    ];
    for (const [i, [shape, reps]] of cases.entries())
      await parity(`tile ${shape} x ${reps}`, [inp(shape, 210 + i)], withGrads((x) => tf.tile(x, reps)), ['Tile'], 1e-5);
  });
  it('Slice matches cpu, with gradients', async () => {
    const cases: [number[], number[], number[]][] = [
      [[5, 7], [1, 2], [3, 4]],
      [[4, 9, 3, 6, 5], [0, 0, 1, 0, 0], [4, 9, 1, 6, 5]],
      [[2, 3, 4], [1, 0, 0], [1, 3, 4]],
      [[6, 7, 8], [2, 3, 1], [-1, 2, -1]],
      [[300, 20, 60], [0, 5, 10], [300, 10, 50]],
    ];
    for (const [i, [shape, begin, sz]] of cases.entries())
      await parity(`slice ${shape} ${begin} ${sz}`, [inp(shape, 220 + i)], withGrads((x) => tf.slice(x, begin, sz)), ['Slice'], 0);
  });
  it('PadV2 (constant 0 and non-zero) matches cpu, with gradients', async () => {
    const cases: [number[], [number, number][], number][] = [
      [[2, 4, 4, 3], [[0, 0], [1, 1], [1, 1], [0, 0]], 0],
      [[5, 7], [[2, 0], [0, 3]], 0.5],
      [[3, 1, 2, 5], [[1, 2], [0, 0], [3, 1], [0, 2]], -2],
      [[9], [[4, 4]], 0],
      [[1, 16, 16, 8], [[0, 0], [1, 1], [1, 1], [0, 0]], 0],
    ];
    for (const [i, [shape, pads, c]] of cases.entries())
      await parity(`pad ${shape} ${JSON.stringify(pads)} ${c}`, [inp(shape, 230 + i)], withGrads((x) => tf.pad(x, pads, c)), ['PadV2'], 0);
  });
  it('SplitV (and so the Concat gradient) matches cpu', async () => {
    const cases: [number[], number | number[], number][] = [
      [[4, 6], 3, 1],
      [[4, 6], [1, 3], 0],
      [[2, 5, 5, 27], [3, 3, 3, 3, 3, 3, 3, 3, 3], 3],
      [[3, 7, 2], [2, -1, 1], 1],
    ];
    for (const [i, [shape, splits, axis]] of cases.entries())
      await parity(`split ${shape} ${JSON.stringify(splits)} axis ${axis}`, [inp(shape, 240 + i)], (x) => tf.split(x, splits, axis), ['SplitV'], 0);
    await parity('concat grad', [inp([2, 3, 3, 4], 250), inp([2, 3, 3, 5], 251)], withGrads((a, b) => tf.concat([a, b], 3)), ['SplitV'], 0);
  });
  it('Concat matches cpu on any axis, with gradients', async () => {
    const cases: [number[][], number][] = [
      [[[2, 3], [4, 3]], 0],
      [[[2, 3], [2, 5], [2, 1]], 1],
      [[[1, 1, 384], [1, 196, 384]], 1],
      [[[2, 3, 3, 4], [2, 3, 3, 5]], 3],
      [[[3, 2, 5], [3, 0, 5], [3, 4, 5]], 1],
      [[[7], [2]], 0],
      [[[1, 40, 40, 96], [1, 40, 40, 80]], 3],
    ];
    for (const [i, [shapes, axis]] of cases.entries()) {
      const fn = (...xs: tf.Tensor[]) => tf.concat(xs, axis);
      await parity(`concat ${JSON.stringify(shapes)} axis ${axis}`, shapes.map((sh, j) => inp(sh, 400 + 10 * i + j)),
        shapes.some((sh) => sh.includes(0)) ? fn : withGrads(fn), ['Concat'], 0);
    }
  });
  it('training-mode BatchNorm (statistics, normalisation, gradient through the statistics) runs natively and matches cpu', async () => {
    // NHWC shapes incl. batch 1, odd channel counts, one above the threading threshold; one with a large mean
    for (const [i, shape] of ([[1, 3, 5, 7], [2, 4, 4, 16], [4, 32, 32, 65]] as number[][]).entries()) {
      const C = shape[3]!;
      const x = inp(shape, 800 + i, -2, 2);
      if (i === 1) for (let j = 0; j < x.data.length; j++) x.data[j] += 300;
      const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => batchNormTrain(a, g, b, 1e-5);
      await parity(`bn train ${shape}`, [x, inp([C], 810 + i, 0.5, 1.5), inp([C], 820 + i)], (a, g, b) => f(a, g, b), [BN_TRAIN_KERNEL], i === 1 ? 2e-3 : 1e-4);
      await parity(`bn train grads ${shape}`, [x, inp([C], 810 + i, 0.5, 1.5), inp([C], 820 + i)], withGrads((a, g, b) => f(a, g, b)[0]), [BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL], i === 1 ? 2e-3 : 2e-4);
      // a loss that also reads the statistics: their gradients reach x too
      await parity(`bn train grads via mean/var ${shape}`, [x, inp([C], 830 + i, 0.5, 1.5), inp([C], 840 + i)],
        withGrads((a, g, b) => { const [y, m, v] = f(a, g, b); return tf.add(y, tf.add(tf.mul(m, 0.3), tf.mul(v, 0.2))); }), [BN_TRAIN_GRAD_KERNEL], i === 1 ? 2e-3 : 2e-4);
    }
  });

  it('training-mode BatchNorm with ReLU, and with a residual add then ReLU (a ResNet block end), is one kernel each way and matches cpu', async () => {
    for (const [i, shape] of ([[1, 3, 5, 7], [2, 4, 4, 16], [4, 32, 32, 65]] as number[][]).entries()) {
      const C = shape[3]!;
      const [x, g, b, r] = [inp(shape, 860 + i, -2, 2), inp([C], 865 + i, 0.5, 1.5), inp([C], 870 + i), inp(shape, 875 + i, -1, 1)];
      x.data[0] = 0; // ties at the ReLU's kink go the same way
      const tol = 2e-4;
      await parity(`bn train relu ${shape}`, [x, g, b], withGrads((a, gg, bb) => batchNormTrain(a, gg, bb, 1e-5, { relu: true })[0]), [BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL], tol);
      await parity(`bn train + residual, relu ${shape}`, [x, g, b, r],
        withGrads((a, gg, bb, rr) => batchNormTrain(a, gg, bb, 1e-5, { residual: rr as tf.Tensor4D, relu: true })[0]), [BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL], tol);
      await parity(`bn train + residual ${shape}`, [x, g, b, r],
        withGrads((a, gg, bb, rr) => batchNormTrain(a, gg, bb, 1e-5, { residual: rr as tf.Tensor4D })[0]), [BN_TRAIN_KERNEL, BN_TRAIN_GRAD_KERNEL], tol);
      // the statistics are outputs too, with ReLU applied to y only
      await parity(`bn train relu grads via mean/var ${shape}`, [x, g, b],
        withGrads((a, gg, bb) => { const [y, m, v] = batchNormTrain(a, gg, bb, 1e-5, { relu: true }); return tf.add(y, tf.add(tf.mul(m, 0.3), tf.mul(v, 0.2))); }),
        [BN_TRAIN_GRAD_KERNEL], tol);
    }
  });

  it("dcd's SGD (momentum, Nesterov, weight decay) updates in one native kernel and matches its cpu form over 3 steps", async () => {
    const run = async (backend: string, opts: ConstructorParameters<typeof Sgd>[0]) => {
      await tf.setBackend(backend);
      const n0 = tf.memory().numTensors;
      // one parameter above the threading threshold, one small; a bias (no decay by default)
      const shapes: Record<string, number[]> = { 'conv.weight': [64, 64, 9, 9], 'fc.weight': [3, 5], 'fc.bias': [3] };
      const params = new Map(Object.entries(shapes).map(([k, sh], i) => [k, tf.tidy(() => tf.variable(tf.tensor(rand(sh.reduce((a, b) => a * b, 1), 990 + i), sh)))]));
      const opt = new Sgd(opts);
      for (let step = 0; step < 3; step++) {
        const grads = new Map([...params].map(([k, v], i) => [k, tf.tensor(rand(v.size, 995 + 10 * step + i), v.shape)]));
        opt.step(params, grads, 0.1 / (step + 1));
        tf.dispose([...grads.values()]);
      }
      const out = [...params.values(), ...opt.slots.values()].map((v) => v.dataSync().slice());
      tf.dispose([...params.values()]);
      opt.dispose();
      expect(tf.memory().numTensors, `${backend}: tensors leaked`).toBe(n0);
      return out;
    };
    for (const opts of [
      { momentum: 0.9, nesterov: false, weightDecay: 0 },
      { momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
      { momentum: 0.5, nesterov: false, weightDecay: 1e-2, decayNormAndBias: true },
    ]) {
      const want = await run('cpu', opts);
      const before = nativeStats.native[SGD_KERNEL] ?? 0;
      const got = await run('native', opts);
      expect(nativeStats.native[SGD_KERNEL] ?? 0, 'the SGD kernel did not run natively').toBeGreaterThanOrEqual(before + 9);
      expect(got.length).toBe(want.length);
      got.forEach((g, i) => expectClose([{ shape: [g.length], data: g }], [{ shape: [g.length], data: want[i]! }], 1e-6, `sgd ${JSON.stringify(opts)} tensor ${i}`));
    }
  });

  it("ViT attention from the qkv projection runs as one native kernel and matches the composed cpu ops", async () => {
    // [batch, tokens, heads, head dim]: DINO ViT-S/16's shape, a head dim with a 16-lane tail (48),
    // odd sizes, batch 1 with one head
    for (const [i, [B, T, H, hd]] of ([[2, 197, 6, 64], [2, 40, 2, 48], [3, 17, 3, 5], [1, 5, 1, 7], [1, 33, 2, 35]] as const).entries()) {
      const qkv = inp([B * T, 3 * H * hd], 1000 + i, -3, 3);
      await parity(`attention B${B} T${T} H${H} hd${hd}`, [qkv], (x) => attention(x as tf.Tensor2D, B, T, H), [ATTENTION_KERNEL], 1e-5);
    }
  });

  it('linear layers (bias, GELU, residual) run as one native matmul with packed weights and match the composed cpu ops', async () => {
    // [M, K, N]: ViT-S/16's fc1 at batch 2 (over the threading threshold), odd sizes, one row, one output
    for (const [i, [M, K, N]] of ([[394, 384, 1536], [7, 5, 3], [1, 33, 17], [13, 1, 1]] as const).entries()) {
      const x = inp([M, K], 1100 + i, -2, 2), w = inp([N, K], 1110 + i), b = inp([N], 1120 + i), r = inp([M, N], 1130 + i, -3, 3);
      const what = `linear ${M}x${K}x${N}`;
      await parity(`${what} bias`, [x, w, b], (a, wt, bi) => linear(a as tf.Tensor2D, wt, bi), [LINEAR_KERNEL], 1e-5);
      await parity(`${what} no bias`, [x, w], (a, wt) => linear(a as tf.Tensor2D, wt), [LINEAR_KERNEL], 1e-5);
      await parity(`${what} gelu`, [x, w, b], (a, wt, bi) => linear(a as tf.Tensor2D, wt, bi, { gelu: true }), [LINEAR_KERNEL], 1e-5);
      await parity(`${what} residual`, [x, w, b, r], (a, wt, bi, re) => linear(a as tf.Tensor2D, wt, bi, { residual: re as tf.Tensor2D }), [LINEAR_KERNEL], 1e-5);
    }
    // the packed weights follow the weight's data (Variable.assign) and the row count
    await tf.setBackend('native');
    const w = tf.variable(tf.tensor(rand(6 * 4, 1140), [6, 4]));
    const x = tf.tensor(rand(5 * 4, 1141), [5, 4]);
    const want = () => tf.tidy(() => tf.matMul(x, tf.tensor(w.dataSync().slice(), [6, 4]), false, true).dataSync().slice());
    const got = (rows = 5) => tf.tidy(() => linear(tf.slice(x, 0, rows) as tf.Tensor2D, w).dataSync().slice());
    const close = (p: Float32Array, q: Float32Array) => { expect(p.length).toBe(q.length); p.forEach((v, i) => expect(Math.abs(v - q[i]!)).toBeLessThan(1e-5)); };
    close(got(), want());
    close(got(), want()); // packed weights reused
    close(got(3), want().slice(0, 18)); // another row count: repacked
    w.assign(tf.tensor(rand(6 * 4, 1142), [6, 4]));
    close(got(), want());
    // under a gradient tape the composed ops run (the one-kernel form has no gradient)
    const before = nativeStats.native[LINEAR_KERNEL] ?? 0;
    const g = tf.tidy(() => tf.grad((a: tf.Tensor) => tf.sum(linear(a as tf.Tensor2D, w, undefined, { gelu: true })))(x).dataSync().slice());
    expect(g.every(Number.isFinite)).toBe(true);
    expect(nativeStats.native[LINEAR_KERNEL] ?? 0).toBe(before);
    expect(() => tf.tidy(() => tf.engine().runKernel(LINEAR_KERNEL, { x, weight: tf.zeros([6, 3]) }, {}))).toThrow(/DcdLinear: x \[5,4\], weight \[6,3\]/);
    tf.dispose([w, x]);
  });

  it('the ReLU gradient runs as one native kernel and matches cpu (zeros and NaN included)', async () => {
    for (const [i, shape] of ([[7], [3, 5, 9], [8, 64, 64, 17]] as number[][]).entries()) {
      const x = inp(shape, 900 + i, -2, 2);
      x.data[0] = 0;
      await parity(`relu grad ${shape}`, [x], withGrads((a) => tf.relu(a)), ['Relu', RELU_GRAD_KERNEL], 0);
    }
    const got = tf.tidy(() => tf.grad((a: tf.Tensor) => tf.sum(tf.relu(a)))(tf.tensor1d([NaN, -1, 0, 2])).dataSync());
    expect(Array.from(got)).toEqual([NaN, 0, 0, 1]);
  });

  it("the small CNN's 3×3 patches and their gradient run as one kernel each and give the composed form's bits (forward, gradient, a training step)", async () => {
    await tf.setBackend('native');
    const bits = (t: tf.Tensor) => Array.from(new Uint32Array((t.dataSync() as Float32Array).slice().buffer));
    // pad + nine slices + concat, differentiated by tfjs: what conv3x3 runs on every other backend
    const composed = (x: tf.Tensor4D) => {
      const [n, h, w, c] = x.shape;
      const xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]);
      const cols: tf.Tensor4D[] = [];
      for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) cols.push(tf.slice(xp, [0, dy, dx, 0], [n, h, w, c]));
      return tf.concat(cols, 3).reshape([n * h * w, 9 * c]) as tf.Tensor2D;
    };
    const both = (x: tf.Tensor4D, r: tf.Tensor2D, f: (x: tf.Tensor4D) => tf.Tensor2D) =>
      tf.tidy(() => [f(x), tf.grad((a: tf.Tensor4D) => tf.sum(tf.mul(f(a), r)))(x)]);
    // sizes on both sides of the threading threshold, 1-pixel images, one channel; gradients that
    // cancel to ±0 and values of mixed signs (the summation order decides the last bit)
    for (const [i, shape] of ([[1, 1, 1, 1], [2, 1, 5, 3], [3, 4, 3, 1], [64, 32, 32, 3], [64, 8, 8, 32]] as [number, number, number, number][]).entries()) {
      const [n, h, w, c] = shape;
      const x = tf.tensor4d(rand(n * h * w * c, 1300 + i, -3, 3), shape);
      const rv = rand(n * h * w * 9 * c, 1310 + i, -1e3, 1e3);
      for (let j = 0; j < rv.length; j += 7) rv[j] = j % 2 ? -0 : 1e-30;
      const r = tf.tensor2d(rv, [n * h * w, 9 * c]);
      const before = [IM2COL_KERNEL, COL2IM_KERNEL].map((k) => nativeStats.native[k] ?? 0);
      const [fy, fg] = both(x, r, patches3x3);
      expect(nativeStats.native[IM2COL_KERNEL], `${shape}: the patches kernel ran`).toBeGreaterThan(before[0]);
      expect(nativeStats.native[COL2IM_KERNEL], `${shape}: the gradient kernel ran`).toBeGreaterThan(before[1]);
      const [cy, cg] = both(x, r, composed);
      expect(bits(fy), `${shape}: patches`).toEqual(bits(cy));
      expect(bits(fg), `${shape}: gradient`).toEqual(bits(cg));
      // the gradient is not trivially zero and really differs with another summation order
      expect(fg.dataSync().some((v) => v !== 0)).toBe(true);
      tf.dispose([x, r, fy, fg, cy, cg]);
    }
    // a whole training step of the small CNN: the same weights to the bit with and without the kernels
    const step = async () => {
      const model = createSmallCnn({ numClasses: 6, widths: [8, 16], seed: 3 });
      const opt = new Sgd({ momentum: 0.9, nesterov: false, weightDecay: 1e-4 });
      const b = { x: rand(16 * 16 * 16 * 3, 1320, 0, 1), labels: Int32Array.from({ length: 16 }, (_, i) => i % 6), weights: new Float32Array(16).fill(1), imageShape: [16, 16, 3] as [number, number, number], lr: 0.05 };
      for (let s = 0; s < 2; s++) await trainStep(model, opt, b);
      const w = [...model.params().values()].map(bits);
      model.dispose();
      opt.dispose();
      return w;
    };
    const fused = await step();
    const kernel = tf.getKernel(IM2COL_KERNEL, 'native')!;
    tf.unregisterKernel(IM2COL_KERNEL, 'native');
    try {
      expect(await step()).toEqual(fused);
    } finally {
      tf.registerKernel(kernel);
    }
  });

  it('LayerNorm and GELU of the models run as one native kernel each and match the composed cpu ops', async () => {
    // odd row lengths and sizes on both sides of the threading threshold; rows with a large offset (variance by two passes)
    for (const [i, shape] of ([[1, 7], [3, 5, 384], [600, 385]] as number[][]).entries()) {
      const D = shape[shape.length - 1];
      const x = inp(shape, 700 + i, -3, 3);
      if (i === 1) for (let j = 0; j < x.data.length; j++) x.data[j] += 1000;
      await parity(`layerNorm ${shape}`, [x, inp([D], 710 + i, 0.5, 1.5), inp([D], 720 + i)], (a, w, b) => layerNorm(a, w, b, 1e-6), [LAYER_NORM_KERNEL], 2e-4);
      await parity(`gelu ${shape}`, [inp(shape, 730 + i, -6, 6)], (a) => gelu(a), [GELU_KERNEL], 1e-5);
    }
    // under a gradient tape the composed ops run (the one-kernel forms have no gradient)
    const before = nativeStats.native[LAYER_NORM_KERNEL] ?? 0;
    await parity('layerNorm gradients', [inp([4, 9], 740), inp([9], 741), inp([9], 742)], withGrads((a, w, b) => layerNorm(a, w, b, 1e-5)), ['Mean'], 2e-4);
    expect(nativeStats.native[LAYER_NORM_KERNEL] ?? 0, 'only the untaped forward of withGrads runs the kernel').toBe(before + 1);
  });

  it('transposes are simplified (size-1 axes dropped, adjacent axes merged)', () => {
    expect(simplifyTranspose([64, 32, 1, 1], [2, 3, 1, 0])).toEqual({ shape: [64, 32], perm: [1, 0] });
    expect(simplifyTranspose([64, 32, 3, 3], [2, 3, 1, 0])).toEqual({ shape: [64, 32, 9], perm: [2, 1, 0] });
    expect(simplifyTranspose([2, 5, 6, 4], [0, 2, 1, 3])).toEqual({ shape: [2, 5, 6, 4], perm: [0, 2, 1, 3] });
    expect(simplifyTranspose([2, 3, 4], [0, 1, 2])).toEqual({ shape: [24], perm: [0] });
    expect(simplifyTranspose([1, 1], [1, 0])).toEqual({ shape: [], perm: [] });
  });
  it('TopK (sorted) matches cpu, values and indices', async () => {
    for (const [i, [shape, k]] of ([[[5, 40], 7], [[2, 3, 100], 100], [[1, 1000], 50], [[3, 9], 1]] as [number[], number][]).entries())
      await parity(`topk ${shape} k=${k}`, [inp(shape, 200 + i)], (x) => {
        const r = tf.topk(x, k, true);
        return [r.values, r.indices];
      }, ['TopK'], 0);
  });
});

d('native backend: memory', () => {
  let prev = 'cpu';
  beforeAll(async () => {
    prev = tf.getBackend();
    await tf.setBackend('native');
  });
  afterAll(async () => {
    await tf.setBackend(prev);
  });
  it('every replaced kernel was exercised by the tests above', () => {
    const missing = nativeKernelNames().filter((k) => !(nativeStats.native[k] > 0));
    expect(missing).toEqual([]);
  });
  it('Exp and Erf stay accurate over their whole range (NaN, overflow, underflow)', () => {
    const xs = Float32Array.from([...Array.from({ length: 2001 }, (_, i) => -87 + (175 * i) / 2000), -200, -88.5, 88.8, 200, NaN]);
    const t = tf.tensor(xs);
    const e = tf.exp(t), f = tf.erf(t);
    const ev = e.dataSync(), fv = f.dataSync();
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!, want = Math.fround(Math.exp(x));
      if (Number.isNaN(x)) expect(Number.isNaN(ev[i]!) && Number.isNaN(fv[i]!), 'NaN in, NaN out').toBe(true);
      else if (want === Infinity || want === 0) expect(ev[i], `exp(${x})`).toBe(x > 0 ? Infinity : 0);
      else if (want > 1e-37) expect(Math.abs(ev[i]! - want) / want, `exp(${x})`).toBeLessThan(1e-6);
      else expect(ev[i]!, `exp(${x})`).toBeLessThan(1e-37);
    }
    // erf: within 1e-6 of the cpu kernel's formula (Abramowitz-Stegun 7.1.26), and monotone.
    const cpuErf = (x: number) => {
      const s = Math.sign(x), a = Math.abs(x), p = 0.3275911, t1 = 1 / (1 + p * a);
      const y = 1 - ((((1.061405429 * t1 - 1.453152027) * t1 + 1.421413741) * t1 - 0.284496736) * t1 + 0.254829592) * t1 * Math.exp(-a * a);
      return s * y;
    };
    for (let i = 0; i + 1 < xs.length - 5; i++) {
      expect(Math.abs(fv[i]! - cpuErf(xs[i]!)), `erf(${xs[i]})`).toBeLessThan(1e-6);
      expect(fv[i + 1]!).toBeGreaterThanOrEqual(fv[i]! - 2e-7); // monotone up to float rounding near ±1
    }
    tf.dispose([t, e, f]);
  });
  it('pooled output buffers are never reused while anything can still see them', () => {
    const n = 4 * 64 * 64 * 16;
    const x = tf.tensor(rand(n, 500), [4, 64, 64, 16]);
    // read out: the array the caller holds must not be recycled
    const a = tf.relu(x);
    const held = a.dataSync();
    const copy = held.slice();
    a.dispose();
    const b = tf.neg(x);
    const diffs = (p: ArrayLike<number>, q: ArrayLike<number>) => Array.prototype.filter.call(p, (v: number, i: number) => v !== q[i]).length;
    expect(diffs(held, copy), 'a read-out array was recycled').toBe(0);
    // views made by cpu kernels (unstack slices the buffer) keep it from being recycled too
    const c = tf.relu(x);
    const parts = tf.unstack(c);
    const partCopies = parts.map((p) => p.dataSync().slice());
    c.dispose();
    const d2 = tf.neg(x);
    const e = tf.abs(x);
    parts.forEach((p, i) => expect(diffs(p.dataSync(), partCopies[i]!), 'a viewed buffer was recycled').toBe(0));
    // a plain dispose does recycle
    const hits0 = nativePool.hits;
    const f = tf.exp(x);
    f.dispose();
    const g = tf.exp(x);
    expect(nativePool.hits).toBeGreaterThan(hits0);
    expect(g.dataSync()[5]).toBeCloseTo(Math.exp(x.dataSync()[5]!), 5);
    tf.dispose([x, b, d2, e, g, ...parts]);
  });
  it('cached weight transposes and packed conv weights follow Variable.assign', () => {
    const w = tf.variable(tf.tensor(rand(8 * 3 * 3 * 3, 510), [8, 3, 3, 3])); // PyTorch OIHW
    const x = tf.tensor(rand(2 * 9 * 9 * 3, 511), [2, 9, 9, 3]);
    const run = () => tf.tidy(() => tf.conv2d(x as tf.Tensor4D, tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D, 1, 'same').dataSync().slice());
    const want = (wv: tf.Tensor) => tf.tidy(() => {
      const k = tf.tensor(tf.transpose(wv, [2, 3, 1, 0]).dataSync().slice(), [3, 3, 3, 8]) as tf.Tensor4D;
      return tf.conv2d(x as tf.Tensor4D, k, 1, 'same').dataSync().slice();
    });
    const close = (p: Float32Array, q: Float32Array) => p.forEach((v, i) => expect(Math.abs(v - q[i]!)).toBeLessThan(1e-4));
    const first = run();
    close(first, want(w));
    close(run(), first); // second call: transpose cached
    close(run(), first); // third: cached transpose and packed weights
    w.assign(tf.tensor(rand(8 * 3 * 3 * 3, 512), [8, 3, 3, 3]));
    const after = run();
    close(after, want(w));
    expect(Math.abs(after[0]! - first[0]!)).toBeGreaterThan(1e-6);
    tf.dispose([w, x]);
  });
  it('a released distance block is reused by the next one (the leakage filter keeps one block of memory)', async () => {
    await tf.setBackend('native');
    const dim = 16, nq = 300, r = 200;
    const held = holdRows(rand(nq * dim, 530), dim);
    const rows = rand(r * dim, 531);
    const first = distanceBlock(rows, r, held);
    const want = first.slice();
    releaseBlock(first);
    const second = distanceBlock(rows, r, held);
    expect(second).toBe(first); // same memory, refilled
    expect(Array.from(second)).toEqual(Array.from(want));
    const third = distanceBlock(rows, r, held); // second not released: a new buffer
    expect(third).not.toBe(second);
    held.dispose();
  });
  it('a large train step (pooled buffers) leaks no tensors and holds at most the pool cap', () => {
    const x = tf.tensor(rand(4 * 32 * 32 * 8, 520), [4, 32, 32, 8]);
    const w = tf.variable(tf.tensor(rand(3 * 3 * 8 * 16, 521, -0.2, 0.2), [3, 3, 8, 16]));
    const gamma = tf.variable(tf.ones([16])), beta = tf.variable(tf.zeros([16]));
    const opt = tf.train.momentum(1e-3, 0.9);
    const step = () => tf.tidy(() => {
      opt.minimize(() => {
        const h = tf.conv2d(x as tf.Tensor4D, w as unknown as tf.Tensor4D, 1, 'same');
        const { mean, variance } = tf.moments(h, [0, 1, 2]);
        const y = tf.relu(tf.batchNorm(h, mean, variance, beta, gamma, 1e-5));
        return tf.mean(tf.square(tf.sub(y, 0.5)));
      });
    });
    for (let i = 0; i < 5; i++) step();
    const n0 = tf.memory().numTensors, hits0 = nativePool.hits;
    for (let i = 0; i < 50; i++) step();
    expect(tf.memory().numTensors).toBe(n0);
    expect(nativePool.hits).toBeGreaterThan(hits0);
    expect(nativePool.heldBytes()).toBeLessThanOrEqual(nativePool.capBytes);
    tf.dispose([x, w, gamma, beta]);
    opt.dispose();
  });
  it('a small train step leaks no tensors and the RSS stays flat over 1,000 steps', () => {
    const x = tf.tensor(rand(2 * 12 * 12 * 3, 7), [2, 12, 12, 3]);
    const w1 = tf.variable(tf.tensor(rand(3 * 3 * 3 * 8, 8, -0.3, 0.3), [3, 3, 3, 8]));
    const w2 = tf.variable(tf.tensor(rand(8 * 4, 9, -0.3, 0.3), [8, 4]));
    const opt = tf.train.sgd(1e-3);
    const step = () =>
      tf.tidy(() => {
        opt.minimize(() => {
          let h = tf.conv2d(x as tf.Tensor4D, w1 as unknown as tf.Tensor4D, 1, 'same');
          h = tf.maxPool(tf.relu(h), 2, 2, 'same');
          const z = tf.softmax(tf.matMul(tf.mean(h, [1, 2]), w2));
          return tf.mean(tf.square(tf.sub(z, 0.25)));
        });
      });
    for (let i = 0; i < 100; i++) step();
    global.gc?.();
    const n0 = tf.memory().numTensors;
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 1000; i++) step();
    global.gc?.();
    const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
    expect(tf.memory().numTensors).toBe(n0);
    // A step moves ~50 KB through the addon; leaking it would add ~50 MiB over 1,000 steps.
    expect(grown, `RSS grew by ${grown.toFixed(1)} MiB over 1,000 steps`).toBeLessThan(16);
    tf.dispose([x, w1, w2]);
    opt.dispose();
  });
});
