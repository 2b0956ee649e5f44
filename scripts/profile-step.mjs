// Profiles one small-CNN train step per kernel on a backend: node scripts/profile-step.mjs native [widths] [size] [batch]
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../dist/src/core/backend.js';
import { createSmallCnn } from '../dist/src/backbones-demo/small-cnn.js';
import { trainStep } from '../dist/src/train/trainer.js';
import { Sgd } from '../dist/src/train/optimizer.js';
const [be = 'native', widths = '8-16-32', size = '16', batch = '64'] = process.argv.slice(2);
await initBackend(be);
const S = +size, B = +batch;
const model = createSmallCnn({ numClasses: 6, widths: widths.split('-').map(Number) });
const opt = new Sgd({ momentum: 0.9, nesterov: false, weightDecay: 1e-4 });
const x = new Float32Array(B * S * S * 3).map(() => Math.random());
const labels = new Int32Array(B).map((_, i) => i % 6);
const weights = new Float32Array(B).fill(1);
const b = { x, labels, weights, imageShape: [S, S, 3], lr: 0.01 };
for (let i = 0; i < 3; i++) trainStep(model, opt, b);
let t = performance.now();
const N = 10;
for (let i = 0; i < N; i++) trainStep(model, opt, b);
const ms = (performance.now() - t) / N;
console.log(`${be}: ${ms.toFixed(1)} ms/step, ${(B * 1000 / ms).toFixed(0)} img/s`);
const p = await tf.profile(() => { trainStep(model, opt, b); });
const agg = new Map();
for (const k of p.kernels) { const a = agg.get(k.name) ?? { n: 0, ms: 0 }; a.n++; a.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0; agg.set(k.name, a); }
const rows = [...agg.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25);
for (const [n, a] of rows) console.log(n.padEnd(28), String(a.n).padStart(4), a.ms.toFixed(2).padStart(9));
console.log('kernels', p.kernels.length);
