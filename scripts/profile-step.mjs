// Per-kernel profile (tf.profile) of one step on a backend.
//   node scripts/profile-step.mjs native [widths] [size] [batch]        small-CNN train step
//   node scripts/profile-step.mjs native resnet50-fwd [batch=8]          ResNet-50 forward, 224 px
//   node scripts/profile-step.mjs native vit-fwd [batch=8]               DINO ViT-S/16 forward
//   node scripts/profile-step.mjs native resnet50-train [batch=8]        ResNet-50 SGD-momentum step
// Prints the wall time per step, then kernels by total time (calls, ms, % of kernel time, and how
// many calls fell back to the cpu kernel when the backend is `native`).
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../dist/src/backends/chain.js';
import { nativeStats } from '../dist/src/backends/native.js';

const args = process.argv.slice(2);
const be = args[0] ?? 'native';
const MODELS = ['resnet50-fwd', 'vit-fwd', 'resnet50-train'];
await initBackend(be, { quiet: true });

function randn(n, seed) {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 16777216 - 0.5;
  }
  return out;
}

let step, B, warm = 1, N = 2;
if (MODELS.includes(args[1])) {
  const { createModel } = await import('../dist/src/models/registry.js');
  const kind = args[1];
  B = +(args[2] ?? 8);
  const x = tf.tensor4d(randn(B * 224 * 224 * 3, 1), [B, 224, 224, 3]);
  if (kind === 'resnet50-train') {
    // dcd's training step (as bench/native-backends.ts): cross-entropy, backward, SGD momentum 0.9
    const { trainStep } = await import('../dist/src/train/supervised.js');
    const { Sgd } = await import('../dist/src/train/optimizer.js');
    const m = createModel('resnet50', { numClasses: 1000 });
    const opt = new Sgd({ momentum: 0.9, nesterov: false, weightDecay: 0 });
    const b = {
      x: randn(B * 224 * 224 * 3, 1), labels: Int32Array.from({ length: B }, (_, i) => (i * 37) % 1000),
      weights: new Float32Array(B).fill(1), imageShape: [224, 224, 3], lr: 0.01,
    };
    step = () => trainStep(m, opt, b);
    N = 1;
  } else {
    const m = createModel(kind === 'vit-fwd' ? 'dino_vits16' : 'resnet50', { numClasses: 0 });
    step = () => {
      const y = tf.tidy(() => m.forwardFeatures(x, false));
      y.dataSync();
      y.dispose();
    };
  }
} else {
  const { createSmallCnn } = await import('../dist/src/models/small-cnn.js');
  const { trainStep } = await import('../dist/src/train/supervised.js');
  const { Sgd } = await import('../dist/src/train/optimizer.js');
  const [widths = '8-16-32', size = '16', batch = '64'] = args.slice(1);
  const S = +size;
  B = +batch;
  const model = createSmallCnn({ numClasses: 6, widths: widths.split('-').map(Number) });
  const opt = new Sgd({ momentum: 0.9, nesterov: false, weightDecay: 1e-4 });
  const x = new Float32Array(B * S * S * 3).map(() => Math.random());
  const labels = new Int32Array(B).map((_, i) => i % 6);
  const weights = new Float32Array(B).fill(1);
  const b = { x, labels, weights, imageShape: [S, S, 3], lr: 0.01 };
  step = () => trainStep(model, opt, b);
  warm = 3;
  N = 10;
}
for (let i = 0; i < warm; i++) step();
const t = performance.now();
for (let i = 0; i < N; i++) step();
const ms = (performance.now() - t) / N;
console.log(`${be} ${args[1] ?? 'small-cnn'}: ${ms.toFixed(1)} ms/step, ${(B * 1000 / ms).toFixed(2)} img/s`);
const fb0 = { ...nativeStats.fallback };
const p = await tf.profile(() => { step(); });
const agg = new Map();
let total = 0;
for (const k of p.kernels) {
  const a = agg.get(k.name) ?? { n: 0, ms: 0 };
  const t = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  a.n++;
  a.ms += t;
  total += t;
  agg.set(k.name, a);
}
const rows = [...agg.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 30);
console.log('kernel'.padEnd(26), 'calls'.padStart(5), 'ms'.padStart(9), '%'.padStart(6), 'cpu-fallback'.padStart(13));
for (const [n, a] of rows) {
  const fb = (nativeStats.fallback[n] ?? 0) - (fb0[n] ?? 0);
  console.log(n.padEnd(26), String(a.n).padStart(5), a.ms.toFixed(1).padStart(9), (100 * a.ms / total).toFixed(1).padStart(6), String(fb || '').padStart(13));
}
console.log(`kernels ${p.kernels.length}, kernel time ${total.toFixed(0)} ms`);
