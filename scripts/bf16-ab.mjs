// Interleaved fp32/bf16 A/B of dcd's native backend in one process (the machine is shared: each pair
// runs back to back, so the ratio is taken within a minute). npm run build first, then
//   node scripts/bf16-ab.mjs resnet|vit|knn|train [batch=8] [pairs=3]
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../dist/src/backends/chain.js';
import { setComputePrecision } from '../dist/src/backends/precision.js';
import { createModel } from '../dist/src/models/registry.js';
import { knn } from '../dist/src/retrieval/knn.js';
import { trainStep } from '../dist/src/train/supervised.js';
import { Sgd } from '../dist/src/train/optimizer.js';
await initBackend('native', { quiet: true });
const what = process.argv[2], B = +(process.argv[3] ?? 8), pairs = +(process.argv[4] ?? 3);
function randn(n, seed) { let s = seed >>> 0 || 1; const o = new Float32Array(n); for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; o[i] = (s >>> 8) / 16777216 - 0.5; } return o; }
const make = {};
for (const p of ['fp32', 'bf16']) {
  setComputePrecision(p);
  if (what === 'knn') { const q = randn(1000 * 384, 3), pool = randn(100000 * 384, 4); make[p] = () => knn(q, 384, pool, 50, { precision: p }); continue; }
  if (what === 'train') {
    const m = createModel('resnet50', { numClasses: 1000 }); const opt = new Sgd({ momentum: 0.9, nesterov: false, weightDecay: 0 });
    const b = { x: randn(B * 224 * 224 * 3, 2), labels: Int32Array.from({ length: B }, (_, i) => (i * 37) % 1000), weights: new Float32Array(B).fill(1), imageShape: [224, 224, 3], lr: 0.01 };
    make[p] = () => trainStep(m, opt, b); continue;
  }
  const m = createModel(what === 'vit' ? 'dino_vits16' : 'resnet50', { numClasses: 0 });
  const x = tf.tensor4d(randn(B * 224 * 224 * 3, 1), [B, 224, 224, 3]);
  make[p] = () => { const y = tf.tidy(() => m.forwardFeatures(x, false)); y.dataSync(); y.dispose(); };
}
const t = { fp32: [], bf16: [] };
for (let i = 0; i < pairs + 1; i++) for (const p of (i % 2 ? ['bf16', 'fp32'] : ['fp32', 'bf16'])) {
  setComputePrecision(p); const t0 = performance.now(); make[p](); const dt = (performance.now() - t0) / 1000; if (i > 0) t[p].push(dt);
}
const r = t.fp32.map((a, i) => a / t.bf16[i]);
console.log(JSON.stringify({ what, B, fp32_s: t.fp32.map((v) => +v.toFixed(3)), bf16_s: t.bf16.map((v) => +v.toFixed(3)), pair_speedup: r.map((v) => +v.toFixed(2)), best_speedup: +(Math.min(...t.fp32) / Math.min(...t.bf16)).toFixed(2), load: (await import('node:os')).loadavg()[0].toFixed(1), at: new Date().toISOString().slice(11, 19) }));
