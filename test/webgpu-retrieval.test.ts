/**
 * Retrieval on the webgpu backend gives the native backend's answer, exactly: k-NN, the leakage
 * filter's thresholds and keep/drop decisions and Algorithm 1's picks, on data built of near-ties
 * (distance gaps far below float32's screening error) and exact ties (duplicate rows). On webgpu
 * the screening and the float64 certification run in the native addon when it is built
 * (src/backends/host.ts); without it, distance blocks run as host matMuls, checked here against
 * the cpu backend's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { HostMatrix } from '../src/backends/host.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { loadWebgpuBackend } from '../src/backends/webgpu.js';
import { mulberry32 } from '../src/core/rng.js';
import { certifiedKernels } from '../src/retrieval/certified.js';
import { classThresholds, leakageFilter } from '../src/retrieval/filter.js';
import { knn } from '../src/retrieval/knn.js';
import { selectAlgorithm1, type SeedSet } from '../src/retrieval/select.js';
import { alg1Kernels } from '../src/retrieval/select-native.js';
import { EmbeddingStore } from '../src/retrieval/store.js';

const WEBGPU = (await loadWebgpuBackend({ allowSoftware: true })).ok;
const NATIVE = registerNativeBackend().ok;

/**
 * `n` rows near `centres` (norm ≈ 35: float32 screening error ≈ 1e-3) at squared distance
 * 1 + m·1e-6 (m in 0..7) from their centre: near-ties no float32 kernel orders; every 7th row is an
 * exact duplicate of the one before (a tie the lower index wins).
 */
function nearTieRows(rnd: () => number, centres: Float32Array, dim: number, n: number): Float32Array {
  const nc = centres.length / dim;
  const out = new Float32Array(n * dim);
  for (let j = 0; j < n; j++) {
    if (j % 7 === 6) {
      out.copyWithin(j * dim, (j - 1) * dim, j * dim);
      continue;
    }
    const c = j % nc;
    const v = Array.from({ length: dim }, () => rnd() - 0.5);
    const norm = Math.hypot(...v);
    const r = Math.sqrt(1 + 1e-6 * Math.floor(rnd() * 8));
    for (let t = 0; t < dim; t++) out[j * dim + t] = centres[c * dim + t]! + (v[t]! / norm) * r;
  }
  return out;
}

const DIM = 24;
const rnd = mulberry32(11);
const centres = Float32Array.from({ length: 6 * DIM }, () => 7 + rnd());
// the queries and seeds are the centres, twice (exact ties between queries)
const queries = Float32Array.from({ length: 12 * DIM }, (_, i) => centres[i % (6 * DIM)]!);
const pool = nearTieRows(rnd, centres, DIM, 400);
const poolLabels = Int32Array.from({ length: 400 }, (_, j) => j % 3);
const trainRows = nearTieRows(rnd, centres, DIM, 60);
const testRows = nearTieRows(rnd, centres, DIM, 45);
const ids = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`);
const labels3 = (n: number) => Int32Array.from({ length: n }, (_, i) => i % 3);

/** Everything retrieval decides on this data, on the active backend. */
async function decisions() {
  const before = tf.memory().numTensors;
  const k = knn(queries, DIM, pool, 9);
  const store = (role: string, data: Float32Array, labels: Int32Array) => EmbeddingStore.fromArrays(role, { ids: ids(role[0]!, labels.length), labels, data, dim: DIM });
  const tau = await classThresholds(store('train', trainRows, labels3(60)), store('test', testRows, labels3(45)));
  const filtered = await leakageFilter(store('pool', pool, poolLabels), [store('test', testRows, labels3(45))], tau);
  const seeds: SeedSet = { ids: ids('s', 12), labels: labels3(12), data: queries, dim: DIM };
  const sel = await selectAlgorithm1(seeds, store('pool', pool, poolLabels), { k: 3, kVal: 1 });
  expect(tf.memory().numTensors, 'tensors leaked').toBe(before);
  return {
    knn: { indices: Array.from(k.indices), distances: Array.from(k.distances) },
    tau: [...tau.values()],
    removed: filtered.removed,
    kept: filtered.kept,
    train: [sel.train.ids, sel.train.seedIds, Array.from(sel.train.distances)],
    deval: sel.deval ? [sel.deval.ids, sel.deval.seedIds, Array.from(sel.deval.distances)] : null,
  };
}

describe.runIf(WEBGPU && NATIVE)('retrieval on webgpu equals retrieval on native (near-ties, exact ties)', () => {
  let onNative: Awaited<ReturnType<typeof decisions>>;
  beforeAll(async () => {
    await initBackend('native', { quiet: true });
    onNative = await decisions();
  });
  afterAll(async () => {
    await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
  });

  it('uses the certified kernels on webgpu, and gives identical k-NN, thresholds, removals and picks', async () => {
    await initBackend('webgpu', { quiet: true });
    expect(certifiedKernels()).not.toBeNull();
    expect(alg1Kernels()).not.toBeNull();
    const onWebgpu = await decisions();
    expect(onWebgpu).toEqual(onNative);
    // the data is not trivial: picks and removals exist, and distances tie to float32 precision
    expect(onNative.train[0]!.length).toBeGreaterThan(10);
    expect(onNative.removed.length + onNative.kept).toBe(400);
    const d = onNative.knn.distances;
    expect(d.some((v, i) => i % 9 > 0 && v === d[i - 1])).toBe(true);
  });

  it('the same data ordered by the float32 kernel differs (so the identity above can fail)', async () => {
    await initBackend('cpu', { quiet: true });
    const r = knn(queries, DIM, pool, 9);
    expect(Array.from(r.indices)).not.toEqual(onNative.knn.indices);
  });
});

describe('HostMatrix (distance blocks where the active backend reads only asynchronously)', () => {
  it('multiplies as its host backend (native when built, else cpu) does, bit for bit, and frees its memory', async () => {
    await initBackend(NATIVE ? 'native' : 'cpu', { quiet: true });
    const a = Float32Array.from({ length: 5 * 7 }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: 7 * 3 }, (_, i) => Math.cos(i * 1.3));
    const ref = tf.tidy(() => tf.matMul(tf.tensor2d(a, [5, 7]), tf.tensor2d(b, [7, 3])).dataSync());
    const before = tf.memory().numTensors;
    const cpu = tf.findBackend('cpu')!;
    const dataBefore = cpu.numDataIds();
    const h = new HostMatrix(b, 7, 3);
    const got = h.leftMul(a, 5);
    h.dispose();
    expect(Array.from(got)).toEqual(Array.from(ref));
    expect(tf.memory().numTensors).toBe(before);
    if (!NATIVE) expect(cpu.numDataIds()).toBe(dataBefore);
    await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
  });
});
