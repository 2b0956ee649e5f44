/**
 * The cost of a perceptual similarity measure (paper Table 2), measured: an LPIPS-style
 * distance on the AlexNet feature stack against squared L2 between penultimate
 * embeddings of each backbone. For each method it measures the stored values per image,
 * bytes per image, time to embed an image, and the time to rank a pool for one query at
 * several pool sizes; then it projects the paper's setting (a 952,951-image pool,
 * 1,031 queries) from a least-squares line through the ranking times.
 *
 * Ranking = distances of one query to every pool image, then its top k: for LPIPS the
 * per-tap formula over the stored, unit-normalised and lin-scaled taps
 * ({@link lpipsRankPool}); for embeddings `knn` from src/retrieval. A second measurement
 * ranks `queryBatch` queries at once with `knn` (one matrix product per pool chunk; LPIPS
 * on its flattened 484,992-value stack, where its distance is plain squared L2). The
 * pool's features live in host memory and stream through the tfjs backend in chunks (as
 * a 1.8 TB LPIPS pool would have to); pool rows are copies of embedded random images,
 * since the cost does not depend on the values. LPIPS and embeddings are timed at
 * different pool sizes (`poolSizes`, `embedPoolSizes`): at 1.85 MiB per LPIPS image a
 * large pool does not fit, and at a few KiB per embedding a small one times only overhead.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import { log } from '../core/log.js';
import type { ImageModel } from '../core/types.js';
import { createModel, getModelSpec } from '../models/registry.js';
import { knn, RunningTopK } from '../retrieval/knn.js';
import { LpipsNet, lpipsDims, lpipsRankPool, type TorchWeights } from './lpips.js';

/** The paper's setting and figures (Table 2). */
export const PAPER = {
  pool: 952_951,
  queries: 1_031,
  lpipsDims: 484_992,
  resnetDims: 2048,
  lpipsSeconds: 1147.58,
  oursSeconds: 4.81,
  lpipsGB: 1806.74,
  oursGB: 7.63,
  /** 1 − 2048 / 484,992 */
  reduction: 1 - 2048 / 484_992,
} as const;

/** Options of {@link benchSimilarity}. */
export interface SimilarityBenchOptions {
  /** Backbones to compare against LPIPS (registry names). Default resnet50, dino_vits16. */
  backbones?: readonly string[];
  /** Pool sizes at which LPIPS ranking is timed (1.85 MiB per image in memory). Default 32, 128, 512. */
  poolSizes?: readonly number[];
  /** Pool sizes at which embedding ranking is timed; larger, since a small pool times only fixed overhead. Default 1024, 4096, 16384. */
  embedPoolSizes?: readonly number[];
  /** Image side in pixels for LPIPS (224 in the paper); backbones use their own crop. */
  size?: number;
  /** Images per embedding batch. Default 4. */
  batch?: number;
  /** Least timed repetitions after one warm-up (fastest reported; short operations repeat for 0.3 s). Default 3. */
  repeats?: number;
  /** Neighbours kept per query. Default 50. */
  k?: number;
  /** Queries ranked together in the batched measurement (one matrix product per pool chunk); 0 skips it. Default 32. */
  queryBatch?: number;
  /** torchvision-named AlexNet (+ LPIPS lin) weights; default: random init. */
  lpipsWeights?: TorchWeights;
  /** Model factory; default `createModel` from src/models/registry.ts (random weights, no head). */
  createModel?: (name: string) => ImageModel | Promise<ImageModel>;
  /** Input side of a backbone; default its registry preprocess crop. */
  inputSize?: (name: string) => number | Promise<number>;
}

/** Measurements of one method. Times in seconds. */
export interface MethodCost {
  method: string;
  dims: number;
  bytesPerImage: number;
  inputSize: number;
  embedSecondsPerImage: number;
  /** Seconds (fastest run) to rank a pool of `pool` images for one query. */
  rank: { pool: number; seconds: number }[];
  /** Line seconds = intercept + slope · pool (least squares, or through the largest pool when noise makes the slope ≤ 0). */
  fit: Fit;
  /** Seconds (fastest run) to rank a pool for `queryBatch` queries at once (squared L2 via `knn`; LPIPS on its flattened, lin-scaled stack). */
  rankBatch: { pool: number; seconds: number }[];
  fitBatch?: Fit;
  /** The paper's setting, projected from the measurements. */
  projected: {
    /** 1,031 queries, each ranked against 952,951 images. */
    rankSeconds: number;
    /** 952,951 × bytes per image. */
    storageBytes: number;
    /** Embedding the whole pool once. */
    embedPoolSeconds: number;
    /** 1,031 queries ranked `queryBatch` at a time (absent when not measured). */
    rankBatchedSeconds?: number;
  };
}

/** Result of {@link benchSimilarity}. */
export interface SimilarityBenchResult {
  backend: string;
  /** Queries per batch in `rankBatch` (0 = not measured). */
  queryBatch: number;
  date: string;
  host: string;
  methods: MethodCost[];
  paper: typeof PAPER;
}

/** A line through timing points and how it was chosen. */
export interface Fit {
  intercept: number;
  slope: number;
  how: 'least-squares' | 'largest-pool';
}

/**
 * Least-squares line through (pool, seconds). When timing noise at small pools gives a
 * slope ≤ 0, falls back to the line through the origin and the largest pool (an upper
 * bound on the per-image cost, since it includes the fixed overhead).
 */
function lineFit(points: { pool: number; seconds: number }[]): Fit {
  const last = points[points.length - 1]!;
  const origin = { intercept: 0, slope: last.seconds / last.pool, how: 'largest-pool' as const };
  if (points.length === 1) return origin;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.pool, 0) / n;
  const my = points.reduce((a, p) => a + p.seconds, 0) / n;
  const sxx = points.reduce((a, p) => a + (p.pool - mx) ** 2, 0);
  const sxy = points.reduce((a, p) => a + (p.pool - mx) * (p.seconds - my), 0);
  const slope = sxx > 0 ? sxy / sxx : 0;
  if (!(slope > 0)) return origin;
  return { intercept: my - slope * mx, slope, how: 'least-squares' };
}

/**
 * Fastest of at least `repeats` timed runs after a warm-up; short operations repeat until
 * 0.3 s have passed (up to 50 runs). The minimum, not the median: on a machine shared
 * with other jobs, the slow runs measure the neighbours, not the operation.
 */
async function timeIt(repeats: number, f: () => Promise<void> | void): Promise<number> {
  await f(); // warm-up: kernel compilation, allocation
  const ts: number[] = [];
  const start = performance.now();
  while (ts.length < repeats || (ts.length < 50 && performance.now() - start < 300)) {
    const t0 = performance.now();
    await f();
    ts.push((performance.now() - t0) / 1000);
  }
  return Math.min(...ts);
}

/** Copies `rows` ([m, dim]) cyclically into a new [n, dim] array. */
function tile(rows: Float32Array, dim: number, n: number): Float32Array {
  const m = rows.length / dim;
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) out.set(rows.subarray((i % m) * dim, ((i % m) + 1) * dim), i * dim);
  return out;
}

function project(m: Omit<MethodCost, 'projected' | 'fit' | 'fitBatch'>, queryBatch: number): MethodCost {
  const fit = lineFit(m.rank);
  const at = (f: Fit) => Math.max(0, f.intercept + f.slope * PAPER.pool);
  const fitBatch = m.rankBatch.length ? lineFit(m.rankBatch) : undefined;
  return {
    ...m,
    fit,
    ...(fitBatch ? { fitBatch } : {}),
    projected: {
      rankSeconds: at(fit) * PAPER.queries,
      storageBytes: PAPER.pool * m.bytesPerImage,
      embedPoolSeconds: PAPER.pool * m.embedSecondsPerImage,
      ...(fitBatch ? { rankBatchedSeconds: at(fitBatch) * Math.ceil(PAPER.queries / queryBatch) } : {}),
    },
  };
}

/**
 * Times ranking pools of each size for `q` queries at once with `knn`.
 * @param rows row-major [m, dims] features of embedded images, tiled into queries and pool
 */
async function timeBatched(label: string, rows: Float32Array, dims: number, pools: readonly number[], q: number, k: number, repeats: number) {
  const out: { pool: number; seconds: number }[] = [];
  if (q < 1) return out;
  const queries = tile(rows, dims, q);
  // Pool rows per distance block: about 64 MB, so LPIPS's 1.9 MB rows stream in small blocks.
  const chunkRows = Math.max(1, Math.min(4096, Math.floor((64 * 2 ** 20) / (dims * 4))));
  for (const n of pools) {
    const pool = tile(rows, dims, n);
    const sec = await timeIt(repeats, () => void knn(queries, dims, pool, Math.min(k, n), { chunkRows }));
    out.push({ pool: n, seconds: sec });
    log.info(`bench similarity: ${label} pool ${n}: ${(sec * 1000).toFixed(1)} ms for ${q} queries`);
  }
  return out;
}

/**
 * Measures LPIPS (AlexNet) against each backbone's penultimate embedding on this
 * machine's tfjs backend, and projects the paper's setting. Disposes everything it makes.
 */
export async function benchSimilarity(opts: SimilarityBenchOptions = {}): Promise<SimilarityBenchResult> {
  const backbones = opts.backbones ?? ['resnet50', 'dino_vits16'];
  const pools = [...(opts.poolSizes ?? [32, 128, 512])].sort((a, b) => a - b);
  const embedPools = [...(opts.embedPoolSizes ?? [1024, 4096, 16384])].sort((a, b) => a - b);
  const size = opts.size ?? 224;
  const batch = opts.batch ?? 4;
  const repeats = opts.repeats ?? 3;
  const k = opts.k ?? 50;
  const qb = opts.queryBatch ?? 32;
  if (!Number.isInteger(qb) || qb < 0) throw new ConfigError(`--query-batch: expected an integer ≥ 0, received ${qb}`);
  if (!pools.length || pools.some((p) => !Number.isInteger(p) || p < 1)) throw new ConfigError(`--pool-sizes: expected positive integers, received ${pools.join(',')}`);
  if (!embedPools.length || embedPools.some((p) => !Number.isInteger(p) || p < 1))
    throw new ConfigError(`--embed-pool-sizes: expected positive integers, received ${embedPools.join(',')}`);
  if (!Number.isInteger(batch) || batch < 1) throw new ConfigError(`--batch: expected a positive integer, received ${batch}`);
  if (!Number.isInteger(repeats) || repeats < 1) throw new ConfigError(`--repeats: expected a positive integer, received ${repeats}`);
  const methods: MethodCost[] = [];

  // LPIPS on AlexNet.
  {
    const net = new LpipsNet({ weights: opts.lpipsWeights, seed: 0 });
    const x = tf.randomUniform([batch, size, size, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
    let feats: Float32Array[] = [];
    try {
      const embed = await timeIt(repeats, async () => {
        const f = net.features(x);
        feats = await Promise.all(f.map((t) => t.data() as Promise<Float32Array>));
        tf.dispose(f);
      });
      const tapLens = feats.map((f) => f.length / batch);
      const dims = tapLens.reduce((a, b) => a + b, 0);
      if (size === 224 && dims !== lpipsDims(224)) throw new Error(`LPIPS stack gave ${dims} values, expected ${lpipsDims(224)}`);
      const query = feats.map((f, t) => f.slice(0, tapLens[t]!));
      const rank: { pool: number; seconds: number }[] = [];
      for (const n of pools) {
        const pool = feats.map((f, t) => tile(f, tapLens[t]!, n));
        const s = await timeIt(repeats, async () => {
          const d = await lpipsRankPool(query, pool, n);
          const top = new RunningTopK(1, Math.min(k, n));
          for (let j = 0; j < n; j++) top.push(0, d[j]!, j);
          top.sorted(0);
        });
        rank.push({ pool: n, seconds: s });
        log.info(`bench similarity: lpips_alexnet pool ${n}: ${(s * 1000).toFixed(1)} ms per query`);
      }
      // The flattened stack per image: LPIPS = squared L2 between these rows.
      const flat = new Float32Array(batch * dims);
      for (let b = 0; b < batch; b++) {
        let off = b * dims;
        feats.forEach((f, t) => {
          flat.set(f.subarray(b * tapLens[t]!, (b + 1) * tapLens[t]!), off);
          off += tapLens[t]!;
        });
      }
      feats = [];
      const rankBatch = await timeBatched('lpips_alexnet', flat, dims, pools, qb, k, repeats);
      methods.push(project({ method: 'lpips_alexnet', dims, bytesPerImage: dims * 4, inputSize: size, embedSecondsPerImage: embed / batch, rank, rankBatch }, qb));
    } finally {
      x.dispose();
      net.dispose();
    }
  }

  // Penultimate embeddings.
  const fac = {
    create: opts.createModel ?? ((n: string) => createModel(n, { numClasses: 0, seed: 0 })),
    size: opts.inputSize ?? ((n: string) => getModelSpec(n).preprocess.crop),
  };
  for (const name of backbones) {
    const model = await fac.create(name);
    const s = await fac.size(name);
    const x = tf.randomNormal([batch, s, s, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
    let emb: Float32Array = new Float32Array(0);
    try {
      const embed = await timeIt(repeats, async () => {
        const f = tf.tidy(() => model.forwardFeatures(x, false));
        emb = (await f.data()) as Float32Array;
        f.dispose();
      });
      const dims = model.numFeatures;
      const query = emb.slice(0, dims);
      const rank: { pool: number; seconds: number }[] = [];
      for (const n of embedPools) {
        const pool = tile(emb, dims, n);
        const sec = await timeIt(repeats, () => void knn(query, dims, pool, Math.min(k, n)));
        rank.push({ pool: n, seconds: sec });
        log.info(`bench similarity: ${name} pool ${n}: ${(sec * 1000).toFixed(2)} ms per query`);
      }
      const rankBatch = await timeBatched(name, emb, dims, embedPools, qb, k, repeats);
      methods.push(project({ method: name, dims, bytesPerImage: dims * 4, inputSize: s, embedSecondsPerImage: embed / batch, rank, rankBatch }, qb));
    } finally {
      x.dispose();
      model.dispose();
    }
  }
  const os = await import('node:os');
  return {
    backend: tf.getBackend(),
    queryBatch: qb,
    date: new Date().toISOString(),
    host: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    methods,
    paper: PAPER,
  };
}

const fmtS = (s: number) => (s >= 100 ? s.toFixed(0) : s >= 1 ? s.toFixed(2) : s >= 0.01 ? s.toFixed(3) : s.toExponential(2));
const fmtBytes = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(2)} MiB` : `${(b / 2 ** 10).toFixed(2)} KiB`);
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** The measurements, the projection and the comparison with the paper, as Markdown. */
export function similarityMarkdown(r: SimilarityBenchResult): string {
  const lp = r.methods.find((m) => m.method === 'lpips_alexnet');
  const pools = [...new Set(r.methods.flatMap((m) => m.rank.map((p) => p.pool)))].sort((a, b) => a - b);
  const o: string[] = [];
  o.push(`Measured on ${r.host}, tfjs backend \`${r.backend}\`, ${r.date.slice(0, 10)}.`, '');
  o.push('| method | input px | dims | bytes / image | embed s / image | ' + pools.map((p) => `rank ${p} (ms)`).join(' | ') + ' |');
  o.push('|---|---:|---:|---:|---:|' + pools.map(() => '---:').join('|') + '|');
  for (const m of r.methods) {
    const cells = pools.map((p) => {
      const x = m.rank.find((q) => q.pool === p);
      return x ? (x.seconds * 1000).toFixed(2) : '–';
    });
    o.push(`| ${m.method} | ${m.inputSize} | ${m.dims.toLocaleString('en-US')} | ${fmtBytes(m.bytesPerImage)} | ${fmtS(m.embedSecondsPerImage)} | ${cells.join(' | ')} |`);
  }
  if (r.queryBatch > 0) {
    o.push('', `Ranking ${r.queryBatch} queries at once (ms), \`knn\` on the flattened features:`, '');
    o.push('| method | ' + pools.map((p) => `pool ${p}`).join(' | ') + ' |');
    o.push('|---|' + pools.map(() => '---:').join('|') + '|');
    for (const m of r.methods)
      o.push(`| ${m.method} | ${pools.map((p) => { const x = m.rankBatch.find((q) => q.pool === p); return x ? (x.seconds * 1000).toFixed(2) : '–'; }).join(' | ')} |`);
  }
  o.push('', `Projected to the paper's setting (${PAPER.pool.toLocaleString('en-US')}-image pool, ${PAPER.queries.toLocaleString('en-US')} queries; ranking time from a least-squares line through each method's measured pool sizes):`, '');
  const batched = r.queryBatch > 0 && r.methods.every((m) => m.projected.rankBatchedSeconds !== undefined);
  const bh = batched ? ` rank all queries, ${r.queryBatch} at a time (s) | time reduction, batched |` : '';
  o.push(`| method | rank all queries, one at a time (s) | time reduction vs LPIPS |${bh} storage | storage reduction vs LPIPS | embed the pool once (h) | line |`);
  o.push(`|---|---:|---:|${batched ? '---:|---:|' : ''}---:|---:|---:|---|`);
  const red = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? pct(1 - a / b) : '');
  for (const m of r.methods) {
    const other = lp && m !== lp;
    const tr = other ? red(m.projected.rankSeconds, lp.projected.rankSeconds) : '';
    const sr = other ? pct(1 - m.bytesPerImage / lp.bytesPerImage) : '';
    const bc = batched ? ` ${fmtS(m.projected.rankBatchedSeconds!)} | ${other ? red(m.projected.rankBatchedSeconds, lp.projected.rankBatchedSeconds) : ''} |` : '';
    o.push(
      `| ${m.method} | ${fmtS(m.projected.rankSeconds)} | ${tr} |${bc} ${fmtBytes(m.projected.storageBytes)} | ${sr} | ${(m.projected.embedPoolSeconds / 3600).toFixed(1)} | ${m.fit.how}${m.fitBatch ? ` / ${m.fitBatch.how}` : ''} |`,
    );
  }
  o.push(
    '',
    `Paper (Table 2): LPIPS ${PAPER.lpipsSeconds} s and ${PAPER.lpipsGB} GB against ${PAPER.oursSeconds} s and ${PAPER.oursGB} GB (ResNet-50, 2048 dims); ` +
      `headline reduction 1 − 2048/484,992 = ${pct(PAPER.reduction)} (its time ratio gives ${pct(1 - PAPER.oursSeconds / PAPER.lpipsSeconds)}). ` +
      `The paper's storage figures equal 1,000,000 images × dims × 4 bytes in GiB (${((1e6 * PAPER.lpipsDims * 4) / 2 ** 30).toFixed(2)} and ${((1e6 * PAPER.resnetDims * 4) / 2 ** 30).toFixed(2)}).`,
  );
  return o.join('\n') + '\n';
}
