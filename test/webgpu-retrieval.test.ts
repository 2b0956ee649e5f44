/**
 * Retrieval on the webgpu backend gives the native backend's answer, exactly: k-NN, the leakage
 * filter's thresholds, nearest test rows and keep/drop decisions, and Algorithm 1's candidates and
 * picks, on data built of near-ties (distance gaps far below float32's screening error) and exact
 * ties (duplicate rows). On webgpu the asynchronous paths (knnAsync, the filter, Algorithm 1's
 * search) screen distances on the GPU (src/retrieval/gpu-screen.ts: the screen's counters and
 * tf.profile's kernel list show it) and re-rank in float64 on the host, in blocks sized from the
 * adapter's limits and in blocks made tiny by a small pretend limit; without the screening margin
 * the answers differ (so the identities can fail); a block that cannot fit gets the adapter-limit
 * error. select.clean's label check (neighbourLabels) goes through knnAsync too. The synchronous `knn` runs on the host there: distance blocks as host matMuls, checked
 * here against the cpu backend's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { HostMatrix } from '../src/backends/host.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { loadWebgpuBackend } from '../src/backends/webgpu.js';
import { mulberry32 } from '../src/core/rng.js';
import { classThresholds, leakageFilter } from '../src/retrieval/filter.js';
import { exactSqDist, knn, knnAsync } from '../src/retrieval/knn.js';
import { searchCandidates, selectAlgorithm1, type SeedSet } from '../src/retrieval/select.js';
import { resetScreenStats, scaleScreenMargin, screenStats, setScreenLimits } from '../src/retrieval/gpu-screen.js';
import { ConfigError } from '../src/core/errors.js';
import { neighbourLabels } from '../src/retrieval/clean.js';
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
// centres far apart (norm ≈ 85 after centring: float32 screening error ≈ 1e-2 on the shells' distances of 1 + m·1e-6), twice
const farCentres = Float32Array.from({ length: 6 * DIM }, () => 60 * (rnd() - 0.5));
const farQueries = Float32Array.from({ length: 12 * DIM }, (_, i) => farCentres[i % (6 * DIM)]!);
const farShells = nearTieRows(rnd, farCentres, DIM, 240);
// Algorithm 1's two-chunk pool: 4,200 rows of width 256 around far centres, more than one streamed chunk
// holds (4,048 at the 16 MiB budget with 4 seeds a class), so the search screens its second chunk
// against the caps the first one set
const WIDE = 256;
const wideCentres = Float32Array.from({ length: 6 * WIDE }, () => 60 * (rnd() - 0.5));
const wideSeeds = Float32Array.from({ length: 12 * WIDE }, (_, i) => wideCentres[i % (6 * WIDE)]!);
const widePool = nearTieRows(rnd, wideCentres, WIDE, 4200);
const ids = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`);
const labels3 = (n: number) => Int32Array.from({ length: n }, (_, i) => i % 3);

/** GPU blocks screened by `f` (0 where nothing ran on the GPU); where some were, every one ran on webgpu. */
async function gpuBlocks(f: () => Promise<unknown>): Promise<number> {
  resetScreenStats();
  await f();
  const s = screenStats();
  if (s.blocks > 0) expect([...s.backends]).toEqual(['webgpu']);
  return s.blocks;
}

const store = (role: string, data: Float32Array, labels: Int32Array, dim = DIM) => EmbeddingStore.fromArrays(role, { ids: ids(role[0]!, labels.length), labels, data, dim });
const seeds: SeedSet = { ids: ids('s', 12), labels: labels3(12), data: queries, dim: DIM };
// τ so large that every 'pool' row goes: the removals list each one's nearest 'test' row and the distance. The
// 'pool' is the far centres and the 'test' set the shells around them, so the nearest test rows are near-ties.
const tauAll = new Map([0, 1, 2].map((y) => [y, { label: y, tau: 1e9, trainId: '', testId: '' }]));
const nearestTest = async (hold: 'pool' | 'test') =>
  (await leakageFilter(store('pool', farQueries, labels3(12)), [store('test', farShells, labels3(240))], tauAll, { hold })).removed.map((r) => [r.nearestTestId, r.distance]);
const candidates = async (data: Float32Array, dim: number) => {
  const c = await searchCandidates({ ...seeds, data: dim === DIM ? farQueries : wideSeeds, dim }, store('pool', data, labels3(data.length / dim), dim), { k: 3, kVal: 1, memoryBudgetMiB: 16 });
  return c.indices.map((ix, q) => [Array.from(ix), Array.from(c.distances[q]!)]);
};

/** What retrieval decides, part by part (each a small job on the near-tie data). */
const PARTS = {
  knn: async () => {
    const k = await knnAsync(queries, DIM, pool, 9);
    return { indices: Array.from(k.indices), distances: Array.from(k.distances) };
  },
  knnSmall: async () => {
    const k = await knnAsync(queries, DIM, pool.subarray(0, 120 * DIM), 9);
    return { indices: Array.from(k.indices), distances: Array.from(k.distances) };
  },
  // τ holds the train side (the held rows get the answer), the filter the test side (the streamed rows do): both orientations of the join
  filter: async () => {
    const tau = await classThresholds(store('train', trainRows, labels3(60)), store('test', testRows, labels3(45)), { hold: 'train' });
    const f = await leakageFilter(store('pool', pool, poolLabels), [store('test', testRows, labels3(45))], tau, { hold: 'test' });
    return { tau: [...tau.values()], removed: f.removed, kept: f.kept };
  },
  select: async () => {
    const sel = await selectAlgorithm1(seeds, store('pool', pool, poolLabels), { k: 3, kVal: 1 });
    return [sel.train.ids, sel.train.seedIds, Array.from(sel.train.distances), sel.deval!.ids, sel.deval!.seedIds, Array.from(sel.deval!.distances)];
  },
  // select.clean's label check: each of 60 pool rows' 9 nearest other pool rows' weak labels
  labelCheck: async () => {
    const rows = Int32Array.from({ length: 60 }, (_, i) => i * 6);
    const q = Float32Array.from(Array.from(rows).flatMap((r) => Array.from(pool.subarray(r * DIM, (r + 1) * DIM))));
    return Array.from(await neighbourLabels(q, DIM, pool, poolLabels, 9, rows));
  },
  nearestHeld: () => nearestTest('pool'),
  nearestStreamed: () => nearestTest('test'),
  candsOneChunk: () => candidates(farShells, DIM),
  candsTwoChunks: () => candidates(widePool, WIDE),
};
type Part = keyof typeof PARTS;

/** The answers of `parts` on the active backend, and how many GPU blocks each screened; no tensor leaks. */
async function decisions(parts: readonly Part[]) {
  const before = tf.memory().numTensors;
  const answers: Partial<Record<Part, unknown>> = {};
  const blocks: Partial<Record<Part, number>> = {};
  for (const p of parts) blocks[p] = await gpuBlocks(async () => (answers[p] = await PARTS[p]()));
  expect(tf.memory().numTensors, 'tensors leaked').toBe(before);
  return { answers, blocks };
}

const ALL = Object.keys(PARTS) as Part[];
const SMALL: Part[] = ['knnSmall', 'nearestHeld', 'nearestStreamed', 'candsOneChunk'];
const MARGIN: Part[] = ['knn', 'nearestHeld', 'nearestStreamed', 'candsTwoChunks'];

// SwiftShader runs the GPU's work on CPU threads: under a loaded machine (CI's parallel workers) a test here took
// over the default 120 s once, though 10–20 s alone
describe.runIf(WEBGPU && NATIVE)('retrieval on webgpu equals retrieval on native (near-ties, exact ties)', { timeout: 360_000 }, () => {
  let onNative: Awaited<ReturnType<typeof decisions>>;
  let onWebgpu: Awaited<ReturnType<typeof decisions>>;
  beforeAll(async () => {
    await initBackend('native', { quiet: true });
    onNative = await decisions(ALL);
  });
  afterAll(async () => {
    await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
  });

  it('screens on the GPU and gives identical k-NN, thresholds, removals, nearest test rows, candidates and picks', async () => {
    await initBackend('webgpu', { quiet: true });
    onWebgpu = await decisions(ALL);
    expect(onWebgpu.answers).toEqual(onNative.answers);
    // every part screened its distances on the GPU (on webgpu, see gpuBlocks); on native none did
    for (const p of ALL) expect(onWebgpu.blocks[p], p).toBeGreaterThan(0);
    for (const p of ALL) expect(onNative.blocks[p], p).toBe(0);
    // the data is not trivial: picks and removals exist, and distances tie to float32 precision
    const f = onNative.answers.filter as { removed: unknown[]; kept: number };
    expect(f.removed.length).toBeGreaterThan(0);
    expect(f.kept).toBeGreaterThan(0);
    expect(f.removed.length + f.kept).toBe(400);
    expect((onNative.answers.select as string[][])[0]!.length).toBeGreaterThan(10);
    expect(onNative.answers.nearestHeld).toEqual(onNative.answers.nearestStreamed);
    const d = (onNative.answers.knn as { distances: number[] }).distances;
    expect(d.some((v, i) => i % 9 > 0 && v === d[i - 1])).toBe(true);
  });

  it('gives the same answers in blocks cut small by a pretend adapter limit of 4 KiB (39 columns × 16 rows)', async () => {
    await initBackend('webgpu', { quiet: true });
    setScreenLimits({ maxStorageBufferBindingSize: 4096, maxBufferSize: 4096, description: 'a pretend adapter' });
    try {
      const small = await decisions(SMALL);
      for (const p of SMALL) expect(small.answers[p], p).toEqual(onNative.answers[p]);
      // more blocks than at the adapter's own limits
      for (const p of ['knnSmall', 'candsOneChunk'] as const) expect(small.blocks[p], p).toBeGreaterThan(onWebgpu.blocks[p]!);
    } finally {
      setScreenLimits(null);
    }
  });

  it('without the screening margin the GPU gets k-NN, nearest test rows and candidates wrong (so the identities above can fail)', async () => {
    await initBackend('webgpu', { quiet: true });
    scaleScreenMargin(0);
    try {
      const bare = await decisions(MARGIN);
      for (const p of MARGIN) expect(bare.answers[p], p).not.toEqual(onNative.answers[p]);
    } finally {
      scaleScreenMargin(1);
    }
  });

  it('a block that cannot fit the adapter is a ConfigError naming the limit, and leaks nothing', async () => {
    await initBackend('webgpu', { quiet: true });
    setScreenLimits({ maxStorageBufferBindingSize: 64, maxBufferSize: 1 << 20, description: 'a pretend adapter' });
    const before = tf.memory().numTensors;
    try {
      const err = await knnAsync(queries, DIM, pool, 9).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(String(err)).toMatch(/retrieval screening block \(one row of width 24\) needs a buffer of 104 bytes.*maxStorageBufferBindingSize of 64 bytes.*--backend native/);
    } finally {
      setScreenLimits(null);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the same data ordered by the float32 kernel differs (so the identity above can fail)', async () => {
    await initBackend('cpu', { quiet: true });
    const r = knn(queries, DIM, pool, 9);
    expect(Array.from(r.indices)).not.toEqual((onNative.answers.knn as { indices: number[] }).indices);
  });
});

/** The float64 answer by brute force: per query the k rows by (exactSqDist, index), padded with -1 / Infinity. */
function referenceKnn(q: Float32Array, p: Float32Array, k: number) {
  const nq = q.length / DIM;
  const np = p.length / DIM;
  const indices = new Int32Array(nq * k).fill(-1);
  const distances = new Float32Array(nq * k).fill(Infinity);
  for (let i = 0; i < nq; i++) {
    const d = Array.from({ length: np }, (_, j) => [exactSqDist(q, i, p, j, DIM), j] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    d.slice(0, k).forEach(([dist, j], t) => ((indices[i * k + t] = j), (distances[i * k + t] = dist)));
  }
  return { indices: Array.from(indices), distances: Array.from(distances) };
}

describe.runIf(WEBGPU)('knnAsync on webgpu equals the float64 brute force (no native addon needed)', () => {
  afterAll(async () => {
    await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
  });

  it('on near-ties and exact ties, with k past the pool size (padding), and on an empty side', async () => {
    await initBackend('webgpu', { quiet: true });
    const before = tf.memory().numTensors;
    for (const [q, p, k] of [
      [farQueries, farShells, 7],
      [queries, pool.subarray(0, 40 * DIM), 50],
    ] as const) {
      const r = await knnAsync(q, DIM, p, k);
      expect({ indices: Array.from(r.indices), distances: Array.from(r.distances) }).toEqual(referenceKnn(q, p, k));
    }
    const none = await knnAsync(new Float32Array(0), DIM, pool, 3);
    expect(none.indices.length).toBe(0);
    const empty = await knnAsync(queries.subarray(0, DIM), DIM, new Float32Array(0), 2);
    expect(Array.from(empty.indices)).toEqual([-1, -1]);
    await expect(knnAsync(queries, DIM, pool, 0)).rejects.toThrow(/k must be an integer ≥ 1/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('runs the screen as webgpu kernels: matMul, top-k and the threshold count', async () => {
    await initBackend('webgpu', { quiet: true });
    const profile = await tf.profile(async () => void (await knnAsync(queries, DIM, pool.subarray(0, 60 * DIM), 3)));
    expect(profile.kernelNames).toEqual(expect.arrayContaining(['BatchMatMul', 'TopK', 'GreaterEqual', 'Sum']));
    expect(tf.getBackend()).toBe('webgpu');
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
