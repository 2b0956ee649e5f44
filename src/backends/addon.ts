/**
 * Finding and loading the oneDNN Node addon (native/src/addon.cc) that the `native`
 * backend's kernels call.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's exports (see native/src/addon.cc for layouts and parameter orders). */
export interface NativeAddon {
  conv2d(
    x: Float32Array, w: Float32Array, bias: Float32Array | null, out: Float32Array, p: Int32Array, alpha: number,
    packed?: Float32Array | null, packedMode?: 0 | 1 | 2, residual?: Float32Array | null,
  ): void;
  convPackedSize(p: Int32Array, alpha: number, hasBias: boolean): number;
  conv2dBackpropInput(dy: Float32Array, w: Float32Array, dx: Float32Array, p: Int32Array): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, p: Int32Array): void;
  matmul(a: Float32Array, b: Float32Array, bias: Float32Array | null, out: Float32Array, p: Int32Array, alpha: number): void;
  linear(
    x: Float32Array, w: Float32Array, bias: Float32Array | null, out: Float32Array, p: Int32Array,
    packed: Float32Array, repack: boolean, residual: Float32Array | null,
  ): void;
  linearPackedSize(p: Int32Array, hasBias: boolean): number;
  // bf16 compute and certified retrieval (native/src/bf16.cc). Precision codes: 0 fp32, 1 bf16;
  // the retrieval functions throw on 1 where bf16Available() is false.
  /** Sets the precision of convolutions, matmuls and linear layers; returns the one in effect (1 is refused, giving 0, where bf16 is unavailable). */
  setPrecision(p: 0 | 1): 0 | 1;
  getPrecision(): 0 | 1;
  /** Whether oneDNN's effective ISA (as `ONEDNN_MAX_CPU_ISA` limits it) has bf16 dot products, and that ISA's name. */
  bf16Available(): { available: boolean; isa: string };
  /** `y[i]` = `x[i]` rounded to the nearest bf16 (ties to even); `y.length` ≥ `x.length`. */
  toBf16(x: Float32Array, y: Uint16Array): void;
  /**
   * The screening form of held rows: `x` [n, dim] centred on `mu` [dim] (first set to the rows' mean
   * when `computeMu`), in `out` (n·dim bf16 as Uint16Array, or fp32), float64 squared norms in `n2` [n].
   */
  prepareRows(
    x: Float32Array, dim: number, precision: 0 | 1, mu: Float32Array, computeMu: boolean,
    out: Uint16Array | Float32Array, n2: Float64Array,
  ): void;
  /**
   * Certified nearest rows between `held` [nh, dim] (screening form from prepareRows) and `r` rows of
   * `rows` [*, dim] (rows `which[i]`, or the first r without `which`): for each row its nearest held
   * row, or with `perHeld` for each held row its nearest of the r rows; float64 distances, ties to the
   * lower index, -1 / Infinity where empty. Returns how many pairs were computed exactly.
   */
  nearestRows(
    held: Float32Array, heldScreen: Uint16Array | Float32Array, heldN2: Float64Array, mu: Float32Array, rows: Float32Array,
    which: Int32Array | null, r: number, dim: number, precision: 0 | 1, perHeld: boolean, outIdx: Int32Array, outDist: Float64Array,
  ): number;
  /**
   * Certified k-NN: for each query of `queries` [nq, dim], the k rows of `pool` [np, dim] nearest by
   * float64 distance, ascending (ties: lower index), in `outIdx` / `outDist` [nq·k], padded with
   * -1 / Infinity. Returns how many pairs were computed exactly.
   */
  knnRows(queries: Float32Array, pool: Float32Array, dim: number, k: number, precision: 0 | 1, outIdx: Int32Array, outDist: Float64Array): number;

  pool(x: Float32Array, out: Float32Array, p: Int32Array): void;
  poolBackward(x: Float32Array | null, dy: Float32Array, dx: Float32Array, p: Int32Array): void;
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, p: Int32Array): void;
  unary(op: number, x: Float32Array, y: Float32Array, alpha: number): void;
  softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  reduce(op: number, x: Float32Array, y: Float32Array, outer: number, mid: number, inner: number): void;
  transpose(x: Float32Array | Int32Array, y: Float32Array | Int32Array, p: Int32Array): void;
  batchNorm(
    x: Float32Array, mean: Float32Array, variance: Float32Array, offset: Float32Array | null,
    scale: Float32Array | null, y: Float32Array, eps: number,
  ): void;
  copyRows(src: Float32Array, dst: Float32Array, rows: number, cols: number, srcStride: number, dstStride: number): void;
  /** The 3×3 "same" patches of NHWC x [n, h, w, c]: out [n·h·w, 9·c] (see IM2COL_KERNEL). */
  im2col3x3(x: Float32Array, out: Float32Array, n: number, h: number, w: number, c: number): void;
  /** im2col3x3's gradient: dx [n, h, w, c] from dcol [n·h·w, 9·c], summed in tfjs's order. */
  col2im3x3(dcol: Float32Array, dx: Float32Array, n: number, h: number, w: number, c: number): void;
  batchNormGrad(
    x: Float32Array, dy: Float32Array, mean: Float32Array, variance: Float32Array, scale: Float32Array | null,
    dx: Float32Array, dmean: Float32Array, dvar: Float32Array, dscale: Float32Array, doffset: Float32Array, eps: number,
  ): void;
  topk(x: Float32Array, values: Float32Array, indices: Int32Array, rows: number, cols: number, k: number): void;
  layerNorm(x: Float32Array, w: Float32Array, b: Float32Array, y: Float32Array, cols: number, eps: number): void;
  gelu(x: Float32Array, y: Float32Array): void;
  reluGrad(dy: Float32Array, x: Float32Array, dx: Float32Array): void;
  attention(qkv: Float32Array, out: Float32Array, batch: number, tokens: number, heads: number, scale: number): void;
  sgdStep(
    p: Float32Array, g: Float32Array, buf: Float32Array | null, pOut: Float32Array, bufOut: Float32Array,
    lr: number, momentum: number, weightDecay: number, nesterov: boolean,
  ): void;
  batchNormTrain(
    x: Float32Array, scale: Float32Array | null, offset: Float32Array | null, y: Float32Array, mean: Float32Array,
    variance: Float32Array, eps: number, residual: Float32Array | null, relu: boolean,
  ): void;
  batchNormTrainGrad(
    x: Float32Array, dy: Float32Array, mean: Float32Array, variance: Float32Array, scale: Float32Array | null,
    dx: Float32Array, dscale: Float32Array, doffset: Float32Array, eps: number, y: Float32Array | null, dres: Float32Array | null,
  ): void;
  /**
   * Algorithm 1's candidate search, one streamed pool chunk (native/src/select.cc; layouts there):
   * offers the chunk's rows to the float64 top-cap heaps of their class's seeds; returns the
   * float64 distances computed.
   */
  alg1Chunk(
    seeds: Float32Array, dim: number, slotOfLabel: Int32Array, slotStart: Int32Array, slotSeeds: Int32Array,
    rows: Float32Array, labels: Int32Array | null, eligible: Uint8Array | null, rowIds: Int32Array,
    heapBase: Float64Array, heapD: Float64Array, heapJ: Int32Array, heapSize: Int32Array, counts: Float64Array, kept: Uint8Array,
  ): number;
  /** Sorts each seed's heap entries ascending by (distance, row), in place. */
  alg1Sort(heapBase: Float64Array, heapD: Float64Array, heapJ: Int32Array, heapSize: Int32Array): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  version(): string;
}


/** The addon's most recently added functions: a build without them predates this checkout. */
const NEWEST_FUNCTIONS = ['im2col3x3', 'col2im3x3'] as const;

const ADDON_REL = join('native', 'build', 'Release', 'dcd_native.node');

/** Finds the built addon: `DCD_NATIVE_ADDON`, else `native/build/Release` above this file. */
export function findAddon(): string | undefined {
  const env = process.env.DCD_NATIVE_ADDON;
  if (env) return env;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = join(dir, ADDON_REL);
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  return undefined;
}

let addon: NativeAddon | undefined;

/** The loaded addon (after {@link registerNativeBackend} succeeded). */
export function nativeAddon(): NativeAddon {
  if (!addon) throw new Error('native addon not loaded: call registerNativeBackend() first');
  return addon;
}

/**
 * Loads the addon (once) and sets its thread count: `DCD_NATIVE_THREADS`, else all cores.
 * @returns the addon, or why it cannot be loaded
 */
export function loadAddon(): { ok: true; addon: NativeAddon } | { ok: false; why: string } {
  if (addon) return { ok: true, addon };
  const file = findAddon();
  if (!file)
    return {
      ok: false,
      why: 'addon not built (install oneDNN with `apt-get install libdnnl-dev`, then run `node scripts/build-native.mjs`)',
    };
  // Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread takes
  // the core its descheduled partner needs, and ViT-S ran 9x slower that way (measured here).
  // libgomp reads this once, when the addon loads it.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    return { ok: false, why: `cannot load ${file}: ${(e as Error).message.split('\n')[0]}` };
  }
  // a build from before this checkout's newest kernels (a `git pull` without rebuilding)
  const missing = NEWEST_FUNCTIONS.filter((f) => typeof (addon as unknown as Record<string, unknown>)[f] !== 'function');
  if (missing.length) {
    addon = undefined;
    return { ok: false, why: `${file} is older than this checkout (no ${missing.join(', ')}): rebuild it with \`node scripts/build-native.mjs\`` };
  }
  const threads = Number(process.env.DCD_NATIVE_THREADS ?? availableParallelism());
  addon.setNumThreads(Number.isInteger(threads) && threads > 0 ? threads : availableParallelism());
  return { ok: true, addon };
}
