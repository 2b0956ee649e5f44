import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../dist/src/core/backend.js';
import { nativeAddon } from '../dist/src/backends/native.js';
await initBackend('native', { quiet: true });
const a = nativeAddon();
const T = (name, f, k = 20) => { f(); const t = performance.now(); for (let i = 0; i < k; i++) f(); console.log(name.padEnd(30), ((performance.now() - t) / k).toFixed(3), 'ms'); };
for (const [M, N] of [[1576, 1536], [1576, 384], [8*56*56, 256]]) {
  const n = M * N;
  const x = tf.randomNormal([M, N]), b = tf.randomNormal([N]);
  const xv = x.dataSync(), bv = b.dataSync(), y = new Float32Array(n);
  const p = Int32Array.from([2, M, N, N, 1, 0, 1]);
  console.log(M, N);
  T(' addon add prealloc', () => a.binary(0, xv, bv, y, p));
  T(' addon add new', () => { const z = new Float32Array(n); a.binary(0, xv, bv, z, p); });
  T(' tf.add bias', () => tf.add(x, b).dispose());
  T(' tf.relu', () => tf.relu(x).dispose());
  T(' tf.erf', () => tf.erf(x).dispose());
  T(' new Float32Array only', () => { const z = new Float32Array(n); z[1000] = 1; });
  T(' addon relu prealloc', () => a.unary(0, xv, y, 0));
  T(' addon erf prealloc', () => a.unary(8, xv, y, 0));
  x.dispose(); b.dispose();
}
