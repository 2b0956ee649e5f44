// Per-shape wall time of the native addon's conv2d calls in a ResNet-50 forward (eval mode, batch 8,
// 224 px): which convolutions the step spends its time in, outside tf.profile's own overhead.
//   node scripts/conv-times.mjs        (needs the native addon and `npx tsc -p .`)
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../dist/src/backends/chain.js';
import { nativeAddon } from '../dist/src/backends/native.js';
await initBackend('native', { quiet: true });
const { createModel } = await import('../dist/src/models/registry.js');
const a = nativeAddon();
const orig = a.conv2d.bind(a);
const acc = new Map();
let on = false;
a.conv2d = (...args) => {
  const p = args[4];
  const t = performance.now();
  orig(...args);
  if (on) {
    const k = `k${p[7]}x${p[8]} s${p[9]} ${p[1]}x${p[2]}x${p[3]}->${p[6]}${p[17] & 16 ? ' +res' : ''}`;
    const e = acc.get(k) ?? { n: 0, ms: 0 };
    e.n++; e.ms += performance.now() - t; acc.set(k, e);
  }
};
const m = createModel('resnet50', { numClasses: 0 });
const x = tf.randomUniform([8, 224, 224, 3]);
const step = () => { const y = tf.tidy(() => m.forwardFeatures(x, false)); y.dataSync(); y.dispose(); };
step(); step();
on = true;
const N = 5;
let wall = performance.now();
for (let i = 0; i < N; i++) step();
wall = (performance.now() - wall) / N;
let tot = 0;
const rows = [...acc.entries()].sort((p, q) => q[1].ms - p[1].ms);
for (const [k, e] of rows) { tot += e.ms / N; }
console.log(`wall ${wall.toFixed(1)} ms/step, conv calls ${tot.toFixed(1)} ms/step`);
for (const [k, e] of rows.slice(0, 30)) console.log(k.padEnd(36), (e.n / N).toFixed(0).padStart(3), (e.ms / N).toFixed(2).padStart(8));
