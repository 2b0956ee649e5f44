// Top-k neighbour overlap between fp32 and bf16 features (issue 17's accuracy check).
//
//   npm run build && node scripts/bf16-neighbours.mjs [pool=10000] [k=50] [model=bottleneck|basic|vit]
//     embeds a pool of smooth random 32 px images with a parity-fixture model (test/fixtures/parity,
//     PyTorch-made weights, untrained) on the native backend in fp32 and in bf16;
//   node scripts/bf16-neighbours.mjs FP32.arrow BF16.arrow [k=50]
//     compares two embedding files of the same images (e.g. a run's embed stage in fp32 and with
//     --precision bf16: runs/<name>/embed/<backbone>-pool-s0-*/pool.arrow).
// Each image's k nearest neighbours (exact k-NN, itself excluded) under the bf16 features against
// those under the fp32 ones; calibration: the fp32 features rounded to bf16 (no bf16 inside the
// network). For the neighbours that differ, how far beyond the fp32 k-th neighbour they lie
// (relative distance gap): near-ties at the k-th place make any rounding swap them.
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { initBackend } from '../dist/src/backends/chain.js';
import { setComputePrecision } from '../dist/src/backends/precision.js';
import { embeddingMatrix, readArrowFile } from '../dist/src/core/arrow.js';
import { loadCheckpoint } from '../dist/src/models/load.js';
import { ResNet } from '../dist/src/models/resnet.js';
import { ViT } from '../dist/src/models/vit.js';
import { knn } from '../dist/src/retrieval/knn.js';

await initBackend('native', { quiet: true });
const args = process.argv.slice(2);
const fromFiles = args[0]?.endsWith('.arrow');
const k = Number((fromFiles ? args[2] : args[1]) ?? 50);

/** Features of smooth random images under a parity-fixture model in `precision`: { f, d }. */
async function embedSynthetic(n, which, precision) {
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

async function fromArrow(file) {
  const m = embeddingMatrix(await readArrowFile(file), 'embedding', file);
  return { f: m.data, d: m.dim };
}

let a, b, what;
if (fromFiles) {
  [a, b] = [await fromArrow(args[0]), await fromArrow(args[1])];
  if (a.f.length !== b.f.length || a.d !== b.d) throw new Error(`${args[0]} and ${args[1]} hold different shapes`);
  what = { fp32File: args[0], bf16File: args[1] };
} else {
  const n = Number(args[0] ?? 10000);
  const which = args[2] ?? 'bottleneck';
  [a, b] = [await embedSynthetic(n, which, 'fp32'), await embedSynthetic(n, which, 'bf16')];
  what = { model: which };
}
const n = a.f.length / a.d;
let minCos = 1;
for (let i = 0; i < n; i++) {
  let dot = 0, x = 0, y = 0;
  for (let c = 0; c < a.d; c++) (dot += a.f[i * a.d + c] * b.f[i * a.d + c]), (x += a.f[i * a.d + c] ** 2), (y += b.f[i * a.d + c] ** 2);
  minCos = Math.min(minCos, x * y > 0 ? dot / Math.sqrt(x * y) : x === y ? 1 : 0);
}
/** Each image's k nearest others (fp32 distance order) and the distance of the k-th. */
function neighbours(f) {
  const r = knn(f, a.d, f, k + 1);
  const sets = [];
  for (let i = 0; i < n; i++) sets.push(Array.from(r.indices.subarray(i * (k + 1), (i + 1) * (k + 1))).filter((j) => j !== i).slice(0, k));
  return sets;
}
const na = neighbours(a.f);
const sqDist = (i, j) => {
  let s = 0;
  for (let c = 0; c < a.d; c++) s += (a.f[i * a.d + c] - a.f[j * a.d + c]) ** 2;
  return s;
};
/** Mean share of each image's k neighbours under `f` that are also among its fp32 ones, and the misses' relative gaps. */
function overlap(f) {
  const nb = neighbours(f);
  let same = 0;
  const gaps = [];
  for (let i = 0; i < n; i++) {
    const A = new Set(na[i]);
    const kth = sqDist(i, na[i][k - 1]);
    for (const j of nb[i]) {
      if (A.has(j)) same++;
      else gaps.push(kth > 0 ? Math.sqrt(sqDist(i, j) / kth) - 1 : Infinity);
    }
  }
  gaps.sort((x, y) => x - y);
  const q = (p) => (gaps.length ? +gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))].toExponential(2) : null);
  return { overlap: +(same / (n * k)).toFixed(5), missGap: { median: q(0.5), p90: q(0.9), max: q(1) } };
}
const bfRound = (x) => { const u = new Uint32Array(Float32Array.from(x).buffer); for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) << 16; return new Float32Array(u.buffer); };
// how close the k-th and (k+1)-th fp32 neighbours are: the room a perturbation has before it swaps them
const r2 = knn(a.f, a.d, a.f, k + 2);
// and the k-th neighbour's distance against the feature's norm: rounding errors scale with the norm,
// so where neighbours are close relative to it, a 2⁻⁹ error reorders them
const margins = [], relKth = [];
for (let i = 0; i < n; i++) {
  const nb = Array.from(r2.indices.subarray(i * (k + 2), (i + 1) * (k + 2))).filter((j) => j !== i);
  const dk = Math.sqrt(sqDist(i, nb[k - 1])), dk1 = Math.sqrt(sqDist(i, nb[k]));
  margins.push(dk > 0 ? dk1 / dk - 1 : 0);
  let nrm = 0;
  for (let c = 0; c < a.d; c++) nrm += a.f[i * a.d + c] ** 2;
  relKth.push(nrm > 0 ? dk / Math.sqrt(nrm) : Infinity);
}
margins.sort((x, y) => x - y);
relKth.sort((x, y) => x - y);
console.log(JSON.stringify({
  ...what, pool: n, dim: a.d, k, minFeatureCosine: +minCos.toFixed(6),
  bf16: overlap(b.f), fp32FeaturesRoundedToBf16: overlap(bfRound(a.f)),
  kthMargin: { median: +margins[n >> 1].toExponential(2), p10: +margins[Math.floor(n / 10)].toExponential(2) },
  kthDistanceOverNorm: { median: +relKth[n >> 1].toExponential(2), p10: +relKth[Math.floor(n / 10)].toExponential(2) },
}));
