// Top-k neighbour overlap between fp32 and bf16 features (issue 17's accuracy check): embeds a
// pool of smooth random images with a parity-fixture model (test/fixtures/parity, PyTorch-made
// weights) on the native backend in fp32 and in bf16, then compares each image's k nearest
// neighbours (exact k-NN) under the two.
//   npm run build && node scripts/bf16-neighbours.mjs [pool=10000] [k=50] [model=bottleneck|basic|vit]
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { initBackend } from '../dist/src/core/backend.js';
import { setComputePrecision } from '../dist/src/backends/precision.js';
import { loadCheckpoint } from '../dist/src/models/load.js';
import { ResNet } from '../dist/src/models/resnet.js';
import { ViT } from '../dist/src/models/vit.js';
import { knn } from '../dist/src/retrieval/knn.js';

const [n = 10000, k = 50] = process.argv.slice(2, 4).map(Number);
const which = process.argv[4] ?? 'bottleneck';
await initBackend('native', { quiet: true });
const FIX = path.resolve('test/fixtures/parity');
const make = {
  bottleneck: [() => new ResNet('f', { block: 'bottleneck', layers: [1, 1, 1, 1], widths: [4, 8, 16, 32] }, { numClasses: 10, seed: 1 }), 'resnet_bottleneck_tiny.pth', 'torchvision'],
  basic: [() => new ResNet('f', { block: 'basic', layers: [1, 1, 1, 1], widths: [4, 8, 16, 32] }, { numClasses: 10, seed: 1 }), 'resnet_basic_tiny.pth', 'torchvision'],
  vit: [() => new ViT('f', { patch: 8, dim: 32, depth: 2, heads: 2, mlpRatio: 4, imgSize: 32 }, { numClasses: 0, seed: 1 }), 'vit_fixture.pth', 'dino'],
}[which];
// smooth random images: a few random sinusoids per channel, 32×32
let s = 12345;
const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 16777216;
const S = 32;
const images = new Float32Array(n * S * S * 3);
for (let i = 0; i < n; i++)
  for (let c = 0; c < 3; c++) {
    const w = Array.from({ length: 3 }, () => [rnd() * 0.6, rnd() * 0.6, rnd() * 6.3, rnd() * 2 - 1]);
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) images[((i * S + y) * S + x) * 3 + c] = w.reduce((a, [fx, fy, ph, am]) => a + am * Math.sin(fx * x + fy * y + ph), 0);
  }
async function embed(precision) {
  setComputePrecision(precision);
  const m = make[0]();
  await loadCheckpoint(m, path.join(FIX, make[1]), { family: make[2] });
  const parts = [];
  for (let o = 0; o < n; o += 256) {
    const b = Math.min(256, n - o);
    const f = tf.tidy(() => m.forwardFeatures(tf.tensor4d(images.subarray(o * S * S * 3, (o + b) * S * S * 3), [b, S, S, 3])));
    parts.push(f.dataSync().slice());
    f.dispose();
  }
  m.dispose();
  setComputePrecision('fp32');
  const d = parts[0].length / Math.min(256, n);
  const out = new Float32Array(n * d);
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return { f: out, d };
}
const a = await embed('fp32');
const b = await embed('bf16');
let minCos = 1;
for (let i = 0; i < n; i++) {
  let dot = 0, x = 0, y = 0;
  for (let c = 0; c < a.d; c++) (dot += a.f[i * a.d + c] * b.f[i * a.d + c]), (x += a.f[i * a.d + c] ** 2), (y += b.f[i * a.d + c] ** 2);
  minCos = Math.min(minCos, dot / Math.sqrt(x * y));
}
const na = knn(a.f, a.d, a.f, k + 1).indices;
/** Mean share of each image's k neighbours (itself excluded) under `f` that are also among its fp32 ones. */
function overlap(f) {
  const nb = knn(f, a.d, f, k + 1).indices;
  let same = 0;
  for (let i = 0; i < n; i++) {
    const A = new Set(Array.from(na.subarray(i * (k + 1), (i + 1) * (k + 1))).filter((j) => j !== i).slice(0, k));
    same += Array.from(nb.subarray(i * (k + 1), (i + 1) * (k + 1))).filter((j) => j !== i).slice(0, k).filter((j) => A.has(j)).length;
  }
  return +(same / (n * k)).toFixed(5);
}
// calibration: the fp32 features themselves rounded to bf16 (no bf16 inside the network)
const bfRound = (x) => { const u = new Uint32Array(Float32Array.from(x).buffer); for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) << 16; return new Float32Array(u.buffer); };
console.log(JSON.stringify({ model: which, pool: n, dim: a.d, k, minFeatureCosine: +minCos.toFixed(6), topKOverlap: overlap(b.f), topKOverlapFp32FeaturesRoundedToBf16: overlap(bfRound(a.f)) }));
