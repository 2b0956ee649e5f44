/**
 * The `native` tfjs backend: tfjs's `cpu` backend (tensors in ordinary typed arrays, every
 * `cpu` kernel inherited) with the hot kernels replaced by a Node addon built on oneDNN
 * (`native/src/addon.cc`). Each replaced kernel handles the float32 / NHWC cases it was
 * tested on and hands every other case to the `cpu` kernel it replaces.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

type TensorInfo = tf.TensorInfo;
type NamedAttrMap = tf.NamedAttrMap;
type KernelFunc = tf.KernelFunc;

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
  setNumThreads(n: number): void;
  getNumThreads(): number;
  version(): string;
}

/** Backend name registered with tfjs. */
export const NATIVE_BACKEND = 'native';

/**
 * Recycles the float32 output buffers of native kernels. A fresh `new Float32Array(n)` of a few
 * MB costs more than the kernel that fills it (page faults on first touch, plus the GC that
 * external memory triggers): a bias add on [1576, 1536] took 1.1 ms into a reused buffer and
 * 6.8 ms into a new one here. So native kernels take their outputs from this pool
 * ({@link alloc}) and the backend gives a buffer back when its tensor's data is freed.
 *
 * A buffer is only ever reused when nothing else can still see it: it must be registered
 * exactly once, as the whole array (a `subarray` view of it registered by some `cpu` kernel,
 * or a second registration, makes it "escaped"), and never read out (`dataSync`/`data`
 * return the backing array itself on this backend, so a read also makes it escaped).
 * Escaped buffers are left to the GC as before.
 *
 * How much it keeps: with a fixed cap, at most that many bytes of free buffers. Without one
 * (the default) the cap follows the workload, as a caching allocator does: free plus live pooled
 * buffers are kept within the largest live set seen so far (at least `floorBytes`, at most
 * `ceilingBytes`). A training step frees nearly everything it allocated at its end, so the next
 * step finds every buffer again (ResNet-50 at batch 32 needs ≈ 8 GB: a fixed 1 GiB cap made a step
 * 12.4 s, mostly page faults, instead of 7.2 s).
 */
export class BufferPool {
  /** Buffers smaller than this (elements) are allocated plainly: cheap, and not worth tracking. */
  static readonly MIN = 1 << 14;
  private readonly free = new Map<number, Float32Array[]>();
  /** Buffers handed out and not escaped: `true` once registered as a tensor's values. */
  private readonly owned = new WeakMap<ArrayBuffer, { arr: Float32Array; registered: boolean }>();
  private bytes = 0;
  /** Bytes of buffers handed out and still owned by the pool (live tensors' data), and their peak. */
  private live = 0;
  private peak = 0;
  hits = 0;
  misses = 0;
  /**
   * @param fixedCap bytes of free buffers to hold at most; null: adaptive (see the class comment)
   * @param floorBytes, ceilingBytes bounds of the adaptive cap
   */
  constructor(
    public fixedCap: number | null,
    readonly floorBytes = 2 ** 30,
    readonly ceilingBytes = Math.max(2 ** 30, totalmem() / 2),
  ) {}

  /** The current cap: bytes the pool may hold in free buffers (adaptive: minus the live ones). */
  get capBytes(): number {
    if (this.fixedCap !== null) return this.fixedCap;
    return Math.min(this.ceilingBytes, Math.max(this.floorBytes, this.peak));
  }

  /** Bytes of pooled buffers in use by live tensors now, and the most seen at once. */
  liveBytes(): { live: number; peak: number } {
    return { live: this.live, peak: this.peak };
  }

  /** A Float32Array of `n` elements whose contents are unspecified (kernels overwrite all of it). */
  alloc(n: number): Float32Array {
    if (n < BufferPool.MIN) return new Float32Array(n);
    const list = this.free.get(n);
    let arr = list?.pop();
    if (arr) {
      this.hits++;
      this.bytes -= arr.byteLength;
      // keep the map in least-recently-used order of sizes
      this.free.delete(n);
      if (list!.length > 0) this.free.set(n, list!);
    } else {
      this.misses++;
      // adaptive: free + live stay within the largest live set seen (drop unused sizes first)
      if (this.fixedCap === null) this.evictTo(Math.max(this.capBytes, this.live + n * 4) - this.live - n * 4);
      arr = new Float32Array(n);
    }
    this.live += arr.byteLength;
    this.peak = Math.max(this.peak, this.live);
    this.owned.set(arr.buffer as ArrayBuffer, { arr, registered: false });
    return arr;
  }

  /** Called for every array the backend stores as a tensor's values. */
  registered(v: unknown): void {
    if (!(v instanceof Float32Array)) return;
    const st = this.owned.get(v.buffer as ArrayBuffer);
    if (!st) return;
    if (!st.registered && v === st.arr) st.registered = true;
    else this.untrack(st.arr);
  }

  /** Called when the array may be seen outside the backend (a read). */
  escaped(v: unknown): void {
    if (!(v instanceof Float32Array)) return;
    const st = this.owned.get(v.buffer as ArrayBuffer);
    if (st) this.untrack(st.arr);
  }

  /** Called when the tensor data holding `v` was freed. */
  release(v: unknown): void {
    if (!(v instanceof Float32Array)) return;
    const st = this.owned.get(v.buffer as ArrayBuffer);
    if (!st || !st.registered || v !== st.arr) return;
    this.untrack(v);
    const cap = this.fixedCap ?? this.capBytes - this.live;
    if (cap <= 0 || v.byteLength > cap) return;
    this.evictTo(cap - v.byteLength);
    const list = this.free.get(v.length) ?? [];
    this.free.delete(v.length);
    list.push(v);
    this.free.set(v.length, list);
    this.bytes += v.byteLength;
  }

  /**
   * Takes a read-out array back (see {@link recycleReadout}): pooled like a released buffer when it
   * is a whole buffer of a pooled size that the pool does not track already.
   */
  adopt(v: Float32Array): void {
    if (v.length < BufferPool.MIN || v.byteOffset !== 0 || v.byteLength !== v.buffer.byteLength) return;
    if (this.owned.has(v.buffer as ArrayBuffer) || this.free.get(v.length)?.includes(v)) return;
    this.owned.set(v.buffer as ArrayBuffer, { arr: v, registered: true });
    this.live += v.byteLength; // release() counts it out again
    this.release(v);
  }

  /** Drops free buffers, least recently used size first, until at most `max` bytes are held. */
  private evictTo(max: number): void {
    for (const [n, list] of this.free) {
      while (this.bytes > max && list.length > 0) {
        list.pop();
        this.bytes -= n * 4;
      }
      if (list.length === 0) this.free.delete(n);
      if (this.bytes <= max) break;
    }
  }

  private untrack(arr: Float32Array): void {
    this.owned.delete(arr.buffer as ArrayBuffer);
    this.live -= arr.byteLength;
  }

  /** Bytes held in free buffers. */
  heldBytes(): number {
    return this.bytes;
  }

  clear(): void {
    this.free.clear();
    this.bytes = 0;
  }
}

/**
 * The output-buffer pool of the native backend: `DCD_NATIVE_POOL_MB` sets a fixed cap on its free
 * buffers (0 disables it); unset, the cap adapts to the workload (see {@link BufferPool}).
 */
export const nativePool = new BufferPool(poolCapFromEnv(process.env.DCD_NATIVE_POOL_MB));

/**
 * Hands an array read out of a tensor (`dataSync`/`data`) back to the native backend's buffer pool,
 * so that a loop reading one large block per iteration reuses one buffer instead of leaving each
 * to the GC (which can lag by gigabytes of external memory). The caller guarantees that the tensor
 * it came from is disposed and that nothing keeps a reference to the array. No-op on other backends.
 */
export function recycleReadout(v: Float32Array): void {
  if (tf.getBackend() === NATIVE_BACKEND) nativePool.adopt(v);
}

/** `DCD_NATIVE_POOL_MB` in bytes (null when unset); anything but a number ≥ 0 is an error that names it. */
export function poolCapFromEnv(v: string | undefined): number | null {
  if (v === undefined || v.trim() === '') return null;
  const mb = Number(v);
  if (!Number.isFinite(mb) || mb < 0) throw new Error(`DCD_NATIVE_POOL_MB=${JSON.stringify(v)}: expected a number of MiB ≥ 0 (0 disables the buffer pool), or unset it for the adaptive cap`);
  return mb * 2 ** 20;
}

/** The tfjs backend object: the `cpu` backend's storage, with native kernels registered on top. */
export class NativeBackend extends MathBackendCPU {
  constructor() {
    super();
    // MathBackendCPU prints a "use tfjs-node" banner on first use in Node; it does not apply here.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }
  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): tf.DataId {
    nativePool.registered(values);
    return super.write(values, shape, dtype);
  }
  override move(dataId: tf.DataId, values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    nativePool.registered(values);
    super.move(dataId, values, shape, dtype, refCount);
  }
  override readSync(dataId: tf.DataId): tf.backend_util.BackendValues {
    const v = super.readSync(dataId);
    nativePool.escaped(v);
    return v;
  }
  override disposeData(dataId: tf.DataId, force = false): boolean {
    const v = this.data.has(dataId) ? this.data.get(dataId)!.values : undefined;
    const freed = super.disposeData(dataId, force);
    if (v !== undefined && !this.data.has(dataId)) nativePool.release(v);
    return freed;
  }
  override dispose(): void {
    nativePool.clear();
    super.dispose();
  }
}

/** An output buffer for a native kernel (see {@link BufferPool}). */
const alloc = (n: number): Float32Array => nativePool.alloc(n);

/**
 * Per-kernel call counts since load: `native` (ran in the addon) and `fallback` (handed to the
 * `cpu` kernel). Tests use them to prove that each native kernel really ran.
 */
export const nativeStats: { native: Record<string, number>; fallback: Record<string, number> } = {
  native: {},
  fallback: {},
};

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
 * Loads the addon and registers the `native` backend and its kernels with tfjs. Idempotent.
 * Threads: `DCD_NATIVE_THREADS`, else all cores.
 */
export function registerNativeBackend(): { ok: true; version: string } | { ok: false; why: string } {
  if (addon) return { ok: true, version: addon.version() };
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
  const threads = Number(process.env.DCD_NATIVE_THREADS ?? availableParallelism());
  addon.setNumThreads(Number.isInteger(threads) && threads > 0 ? threads : availableParallelism());
  if (tf.findBackendFactory(NATIVE_BACKEND) == null) tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 1);
  for (const k of tf.getKernelsForBackend('cpu')) {
    if (tf.getKernel(k.kernelName, NATIVE_BACKEND) == null) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  }
  for (const [name, fn] of Object.entries(nativeKernels())) {
    if (tf.getKernel(name, NATIVE_BACKEND) != null) tf.unregisterKernel(name, NATIVE_BACKEND);
    const counted = (a: Args) => {
      nativeStats.native[name] = (nativeStats.native[name] ?? 0) + 1;
      return fn(a);
    };
    tf.registerKernel({ kernelName: name, backendName: NATIVE_BACKEND, kernelFunc: counted as unknown as KernelFunc });
  }
  installBatchNormGrad();
  installBatchNormTrainGrad();
  installReluGrad();
  return { ok: true, version: addon.version() };
}

/** The native kernel behind FusedBatchNorm's gradient on this backend (see installBatchNormGrad). */
export const BN_GRAD_KERNEL = 'DcdFusedBatchNormGrad';
/** Native-only inference kernels: LayerNorm over the last axis (inputs x, weight, bias; attr eps) and exact GELU (input x). */
export const LAYER_NORM_KERNEL = 'DcdLayerNorm';
export const GELU_KERNEL = 'DcdGelu';
/**
 * ViT self-attention from the qkv projection (input qkv [B·T, 3·D]: q | k | v, each `heads` blocks
 * of D/heads; attrs batch, tokens, heads, scale) to the heads side by side [B·T, D]:
 * softmax(Q·Kᵀ·scale)·V per batch item and head, without the transposes and slices. Inference only.
 */
export const ATTENTION_KERNEL = 'DcdAttention';
/**
 * Training-mode BatchNorm over the last axis with the batch statistics, optionally followed by a
 * residual add and ReLU: inputs x, scale, offset and optionally residual (x's shape); attrs eps,
 * activation ('linear' | 'relu'), residual (true when that input is given); outputs [y = act(bn(x) + residual), mean, variance (biased)].
 * Its gradient (through the statistics, the ReLU and to the residual) is the native
 * {@link BN_TRAIN_GRAD_KERNEL}. The models call it on this backend (src/models/ops.ts).
 */
export const BN_TRAIN_KERNEL = 'DcdBatchNormTrain';
export const BN_TRAIN_GRAD_KERNEL = 'DcdBatchNormTrainGrad';
/**
 * One torch.optim.SGD update (dampening 0) in one pass: inputs param, grad and optionally buf (the
 * momentum buffer; absent = zeros); attrs lr, momentum, weightDecay, nesterov; outputs [param',
 * buf']. dcd's optimizer calls it on this backend (src/train/optimizer.ts). No gradient.
 */
export const SGD_KERNEL = 'DcdSgdStep';
/** ReLU's gradient dy·step(x) in one kernel (inputs dy, x); see installReluGrad. */
export const RELU_GRAD_KERNEL = 'DcdReluGrad';
/**
 * act(conv(x, filter) + bias + residual), act linear or relu: FusedConv2D's inputs plus
 * `residual` (the conv's output shape), as one oneDNN convolution with a sum post-op. ResNet's
 * eval blocks end with it (the residual add and ReLU fused, as inference runtimes do). No gradient.
 */
export const CONV_ADD_KERNEL = 'DcdFusedConv2DAdd';
/**
 * A linear layer with constant weights, act(x·Wᵀ + bias + residual): inputs x [M, K], weight
 * [N, K] (PyTorch's layout), optionally bias [N] and residual [M, N]; attr activation 'linear' |
 * 'gelu' (exact). One oneDNN matmul with GELU and the residual add as post-ops, the weights kept
 * in the primitive's packed layout for as long as their data lives. A ViT block's linear layers
 * at inference. No gradient.
 */
export const LINEAR_KERNEL = 'DcdLinear';

/**
 * Replaces FusedBatchNorm's registered gradient by one that, on the `native` backend and for
 * per-channel parameters, computes all five gradients in one native kernel; anywhere else it
 * calls the original (tfjs-core's, which makes ~12 full passes over the activations: 1,489
 * Multiply calls were 36% of a ResNet-50 train step). Gradients are registered per kernel,
 * not per backend, hence the wrapper.
 */
function installBatchNormGrad(): void {
  const orig = tf.getGradient('FusedBatchNorm');
  if (!orig || (orig as { dcdNative?: boolean }).dcdNative) return;
  const cfg = {
    kernelName: 'FusedBatchNorm',
    inputsToSave: orig.inputsToSave,
    outputsToSave: orig.outputsToSave,
    dcdNative: true,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: NamedAttrMap) => {
      const [x, mean, variance, scale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined];
      const C = mean.size;
      const ok =
        tf.getBackend() === NATIVE_BACKEND && !Array.isArray(dy) && C > 0 && x.rank >= 1 && x.shape[x.rank - 1] === C &&
        mean.rank === 1 && variance.rank === 1 && variance.size === C && (scale == null || (scale.rank === 1 && scale.size === C)) &&
        [x, dy, mean, variance, scale].every((t) => t == null || t.dtype === 'float32');
      if (!ok) return orig.gradFunc(dy, saved, attrs);
      // Computed now, not inside the per-input closures: the engine runs each closure in its own
      // tidy, which would dispose the other four outputs.
      const inputs: Record<string, tf.Tensor> = { x, dy: dy as tf.Tensor, mean, variance };
      if (scale) inputs.scale = scale;
      const r = tf.engine().runKernel(BN_GRAD_KERNEL, inputs, attrs) as tf.Tensor[];
      return { x: () => r[0]!, mean: () => r[1]!, variance: () => r[2]!, scale: () => r[3]!, offset: () => r[4]! };
    },
  };
  tf.registerGradient(cfg as unknown as tf.GradConfig);
}

/**
 * The gradient of {@link BN_TRAIN_KERNEL}: x (through the batch mean and variance), scale and
 * offset in one native kernel. Gradients that reach the mean or variance outputs themselves
 * (unusual: the models only read them for the running statistics) are added with tfjs ops.
 */
function installBatchNormTrainGrad(): void {
  if (tf.getGradient(BN_TRAIN_KERNEL)) return;
  tf.registerGradient({
    kernelName: BN_TRAIN_KERNEL,
    inputsToSave: ['x', 'scale'],
    outputsToSave: [true, true, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: NamedAttrMap) => {
      // tfjs passes zeros for outputs off the loss path (the statistics, normally): skip those.
      const live = (t: tf.Tensor | null | undefined) => (t && (t.dataSync() as Float32Array).some((v) => v !== 0) ? t : null);
      const [dy, dmean, dvar] = [(dys as tf.Tensor[])[0] ?? null, live((dys as tf.Tensor[])[1]), live((dys as tf.Tensor[])[2])];
      const [x, scale, y, mean, variance] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      const C = mean.size;
      const relu = attrs.activation === 'relu', residual = attrs.residual === true;
      // Computed now, not inside the per-input closures (each runs in its own tidy).
      const gradAttrs = { eps: attrs.eps, relu, residual };
      let [dx, dscale, doffset, dres] = dy
        ? (tf.engine().runKernel(BN_TRAIN_GRAD_KERNEL, relu ? { x, dy, mean, variance, scale, y } : { x, dy, mean, variance, scale }, gradAttrs) as tf.Tensor[])
        : [tf.zerosLike(x), tf.zerosLike(scale), tf.zeros([C]), residual ? tf.zerosLike(x) : undefined];
      if (residual && !dres) dres = relu ? tf.engine().runKernel(RELU_GRAD_KERNEL, { dy: dy!, x: y }) as tf.Tensor : dy!.clone();
      // (a gradient reaching the statistics adds to x's: they depend on x alone, not on the residual or ReLU)
      if (dmean || dvar) {
        const N = x.size / C;
        const extra = tf.tidy(() => {
          let e: tf.Tensor = tf.zerosLike(x);
          if (dmean) e = tf.add(e, tf.div(dmean, N));
          if (dvar) e = tf.add(e, tf.mul(tf.sub(x, mean), tf.mul(dvar, 2 / N)));
          return e;
        });
        const sum = tf.add(dx!, extra);
        tf.dispose([dx!, extra]);
        dx = sum;
      }
      return { x: () => dx!, scale: () => dscale!, offset: () => doffset!, residual: () => dres! };
    },
  });
}

/**
 * Replaces Relu's registered gradient (tfjs: dy · step(x), two passes) by one that runs
 * {@link RELU_GRAD_KERNEL} on the `native` backend for float32, and the original elsewhere.
 */
function installReluGrad(): void {
  const orig = tf.getGradient('Relu');
  if (!orig || (orig as { dcdNative?: boolean }).dcdNative) return;
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: orig.inputsToSave,
    outputsToSave: orig.outputsToSave,
    dcdNative: true,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: NamedAttrMap) => {
      const [x] = saved as [tf.Tensor];
      if (tf.getBackend() !== NATIVE_BACKEND || Array.isArray(dy) || dy.dtype !== 'float32' || x.dtype !== 'float32') return orig.gradFunc(dy, saved, attrs);
      return { x: () => tf.engine().runKernel(RELU_GRAD_KERNEL, { dy, x }) as tf.Tensor };
    },
  } as unknown as tf.GradConfig);
}

/** Names of the kernels the addon replaces (everything else is the `cpu` kernel). */
export function nativeKernelNames(): string[] {
  return Object.keys(nativeKernels());
}

// ---------------------------------------------------------------------------------------------

type Args = { inputs: Record<string, TensorInfo | undefined>; backend: NativeBackend; attrs?: NamedAttrMap };

function cpuKernel(name: string): (a: Args) => TensorInfo | TensorInfo[] {
  const k = tf.getKernel(name, 'cpu');
  if (!k) throw new Error(`tfjs cpu kernel ${name} is not registered`);
  const f = k.kernelFunc as unknown as (a: Args) => TensorInfo | TensorInfo[];
  return (a: Args) => {
    nativeStats.native[name]--;
    nativeStats.fallback[name] = (nativeStats.fallback[name] ?? 0) + 1;
    return f(a);
  };
}

function f32(b: NativeBackend, t: TensorInfo): Float32Array {
  const v = b.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

function allF32(...ts: (TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t == null || t.dtype === 'float32');
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

const ACT: Record<string, number> = { linear: 0, relu: 1, relu6: 2, elu: 3, leakyrelu: 4, sigmoid: 5 };

function convParams(c: tf.backend_util.Conv2DInfo, act = 0): Int32Array {
  const p = c.padInfo;
  return Int32Array.from([
    c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.outHeight, c.outWidth, c.outChannels,
    c.filterHeight, c.filterWidth, c.strideHeight, c.strideWidth, c.dilationHeight, c.dilationWidth,
    p.top, p.left, p.bottom, p.right, act,
  ]);
}

function poolParams(c: tf.backend_util.Conv2DInfo, max: boolean): Int32Array {
  const p = c.padInfo;
  return Int32Array.from([
    c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.outHeight, c.outWidth, c.filterHeight, c.filterWidth,
    c.strideHeight, c.strideWidth, p.top, p.left, p.bottom, p.right, max ? 0 : 1,
  ]);
}


const BIN: Record<string, number> = {
  Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5, SquaredDifference: 6,
};
const UN: Record<string, number> = {
  Relu: 0, Relu6: 1, Exp: 2, Log: 3, Sqrt: 4, Rsqrt: 5, Tanh: 6, Sigmoid: 7, Erf: 8, Square: 9, Neg: 10,
  Abs: 11, Step: 12,
};

/**
 * Broadcast layout for the addon's binary kernel: output shape and each input's strides (0 on
 * broadcast axes), with adjacent axes merged where both inputs allow it.
 */
function broadcastLayout(aShape: number[], bShape: number[]): { out: number[]; p: Int32Array } | undefined {
  const out = tf.broadcast_util.assertAndGetBroadcastShape(aShape, bShape);
  const r = out.length;
  const strides = (s: number[]) => {
    const full = [...new Array(r - s.length).fill(1), ...s];
    const st = new Array<number>(r).fill(0);
    let acc = 1;
    for (let d = r - 1; d >= 0; d--) {
      st[d] = full[d] === 1 && out[d] !== 1 ? 0 : acc;
      acc *= full[d];
    }
    return st;
  };
  const sa = strides(aShape), sb = strides(bShape);
  const p = packLayout(out.map((n, d) => ({ n, a: sa[d], b: sb[d] })));
  return p && { out, p };
}

/** Merges adjacent axes that both inputs step through contiguously; the addon's binary layout. */
function packLayout(dims: { n: number; a: number; b: number }[]): Int32Array | undefined {
  const merged: { n: number; a: number; b: number }[] = [];
  for (const cur of dims) {
    if (cur.n === 1) continue;
    const last = merged[merged.length - 1];
    if (last && last.a === cur.a * cur.n && last.b === cur.b * cur.n) {
      last.n *= cur.n;
      last.a = cur.a;
      last.b = cur.b;
    } else merged.push({ ...cur });
  }
  if (merged.length === 0) merged.push({ n: 1, a: 1, b: 1 });
  if (merged.length > 16) return undefined;
  const k = merged.length;
  const p = new Int32Array(1 + 3 * k);
  p[0] = k;
  merged.forEach((d, i) => {
    p[1 + i] = d.n;
    p[1 + k + i] = d.a;
    p[1 + 2 * k + i] = d.b;
  });
  return p;
}

/** Returns [outer, mid, inner] when `axes` (sorted) form one contiguous block of `shape`. */
function contiguousBlock(shape: number[], axes: number[]): [number, number, number] | undefined {
  for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1] + 1) return undefined;
  const lo = axes[0], hi = axes[axes.length - 1];
  return [size(shape.slice(0, lo)), size(shape.slice(lo, hi + 1)), size(shape.slice(hi + 1))];
}

/**
 * The shape and permutation with size-1 axes dropped and runs of input axes that stay adjacent
 * and in order merged: [O, I, kh, kw] -> [kh, kw, I, O] is a [O, I, kh*kw] -> [K, I, O] transpose,
 * and 1x1 filters a plain 2-D one.
 */
export function simplifyTranspose(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  const kept = shape.map((s, i) => (s !== 1 ? i : -1)).filter((i) => i >= 0);
  const rank = new Map(kept.map((ax, i) => [ax, i]));
  const p = perm.filter((ax) => shape[ax] !== 1).map((ax) => rank.get(ax)!);
  const groups: number[][] = [];
  for (const ax of p) {
    const g = groups[groups.length - 1];
    if (g && g[g.length - 1] === ax - 1) g.push(ax);
    else groups.push([ax]);
  }
  const order = groups.map((g, i) => i).sort((i, j) => groups[i]![0]! - groups[j]![0]!);
  const newShape = order.map((gi) => groups[gi]!.reduce((a, ax) => a * shape[kept[ax]!]!, 1));
  const pos = new Array<number>(groups.length);
  order.forEach((gi, i) => (pos[gi] = i));
  return { shape: newShape, perm: groups.map((_, gi) => pos[gi]!) };
}

/**
 * Transposes of tensors that persist (weights: the models re-lay PyTorch weights out in every
 * call) are computed once: the second time the same tensor data (dataId: a Variable keeps its
 * dataId until it is assigned) is transposed the same way, the result is kept, in an array of
 * its own that is never pooled, for as long as that data lives. Off with
 * DCD_NATIVE_WEIGHT_CACHE=0.
 */
const CACHE_ON = process.env.DCD_NATIVE_WEIGHT_CACHE !== '0';
const transposeCache = new WeakMap<object, { key: string; out?: Float32Array | Int32Array }>();
/** Arrays held by transposeCache: immutable, so conv may cache their packed (oneDNN) layout. */
const cachedArrays = new WeakSet<object>();
const packedCache = new WeakMap<object, { key: string; packed: Float32Array }>();
/** LINEAR_KERNEL's packed weights, by the weight tensor's dataId. */
const linearPacked = new WeakMap<object, { key: string; packed: Float32Array }>();

/**
 * Declares that `t` is a long-lived constant (e.g. a model's folded conv weights): on the native
 * backend its buffer is never recycled, so conv may keep that filter in oneDNN's packed layout
 * as it does for cached weight transposes. A no-op on other backends.
 */
export function markConstant(t: tf.Tensor): void {
  if (tf.getBackend() !== NATIVE_BACKEND) return;
  const v = (tf.backend() as NativeBackend).data.get(t.dataId)?.values;
  if (!(v instanceof Float32Array)) return;
  nativePool.escaped(v);
  cachedArrays.add(v);
}

function nativeTranspose(b: NativeBackend, x: TensorInfo, perm: number[]): TensorInfo {
  const a = nativeAddon();
  const src = b.data.get(x.dataId).values as Float32Array | Int32Array;
  const outShape = perm.map((p) => x.shape[p]!);
  const key = `${x.shape}|${perm}`;
  const hit = CACHE_ON ? transposeCache.get(x.dataId) : undefined;
  if (hit?.key === key && hit.out) return b.makeTensorInfo(outShape, x.dtype, hit.out);
  const keep = hit?.key === key;
  const out = x.dtype === 'int32' ? new Int32Array(src.length) : keep ? new Float32Array(src.length) : alloc(src.length);
  const s = simplifyTranspose(x.shape, perm);
  if (s.shape.length <= 1) out.set(src);
  else a.transpose(src, out, Int32Array.from([s.shape.length, ...s.shape, ...s.perm]));
  if (CACHE_ON) transposeCache.set(x.dataId, keep ? { key, out } : { key });
  if (keep) cachedArrays.add(out);
  return b.makeTensorInfo(outShape, x.dtype, out);
}

function nativeKernels(): Record<string, (a: Args) => TensorInfo | TensorInfo[]> {
  const k: Record<string, (a: Args) => TensorInfo | TensorInfo[]> = {};
  const bu = tf.backend_util;

  const conv = (name: string, fused: boolean) => {
    // CONV_ADD_KERNEL has no cpu kernel: its fallback is FusedConv2D, Add and the activation on cpu.
    const fallback = name === CONV_ADD_KERNEL ? convAddFallback : cpuKernel(name);
    k[name] = (args) => {
      const { x, filter, bias, preluActivationWeights, residual } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as {
        strides: [number, number] | number; pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
        dataFormat: 'NHWC' | 'NCHW'; dilations: [number, number] | number;
        dimRoundingMode?: 'floor' | 'round' | 'ceil'; activation?: string; leakyreluAlpha?: number;
      };
      const act = fused ? ACT[at.activation ?? 'linear'] : 0;
      if (!allF32(x, filter, bias, residual) || act === undefined || preluActivationWeights != null || at.dataFormat === 'NCHW' || (residual && act > 1))
        return fallback(args);
      const c = bu.computeConv2DInfo(
        x.shape as [number, number, number, number], filter.shape as [number, number, number, number],
        at.strides, at.dilations, at.pad, at.dimRoundingMode, false, 'channelsLast',
      );
      if ((bias != null && size(bias.shape) !== c.outChannels)) return fallback(args);
      if (residual && !tf.util.arraysEqual(residual.shape, c.outShape)) return fallback(args);
      const out = alloc(size(c.outShape));
      const w = f32(args.backend, filter);
      // the addon copies the residual into out (or, for Winograd, into its blocked output) and the
      // conv adds its result to it (oneDNN sum post-op)
      const p = convParams(c, residual ? act | 16 : act);
      const alpha = at.leakyreluAlpha ?? 0.2;
      // Constant filters (cached weight transposes): keep them in oneDNN's layout too.
      let packed: Float32Array | null = null;
      let mode: 0 | 1 | 2 = 0;
      if (cachedArrays.has(w)) {
        const key = `${p}|${alpha}|${bias != null}`;
        const hit = packedCache.get(w);
        if (hit?.key === key) [packed, mode] = [hit.packed, 1];
        else {
          const n = nativeAddon().convPackedSize(p, alpha, bias != null);
          if (n > 0) {
            [packed, mode] = [new Float32Array(n), 2];
            packedCache.set(w, { key, packed });
          }
        }
      }
      nativeAddon().conv2d(
        f32(args.backend, x), w, bias ? f32(args.backend, bias) : null, out, p, alpha, packed, mode,
        residual ? f32(args.backend, residual) : null,
      );
      return args.backend.makeTensorInfo(c.outShape, 'float32', out);
    };
  };
  conv('Conv2D', false);
  conv('FusedConv2D', true);
  const convAddFallback = (args: Args): TensorInfo => {
    nativeStats.native[CONV_ADD_KERNEL]--;
    nativeStats.fallback[CONV_ADD_KERNEL] = (nativeStats.fallback[CONV_ADD_KERNEL] ?? 0) + 1;
    const cpu = (name: string, a: Args) => (tf.getKernel(name, 'cpu')!.kernelFunc as unknown as (a: Args) => TensorInfo)(a);
    const { residual, ...rest } = args.inputs;
    const b = args.backend;
    const act = (args.attrs?.activation as string | undefined) ?? 'linear';
    if (act !== 'linear' && act !== 'relu') throw new Error(`${CONV_ADD_KERNEL}: activation ${act} is not supported (linear or relu)`);
    const y = cpu('FusedConv2D', { ...args, inputs: rest, attrs: { ...args.attrs, activation: 'linear' } });
    const sum = cpu('Add', { inputs: { a: y, b: residual }, backend: b });
    b.disposeIntermediateTensorInfo(y);
    if (act === 'linear') return sum;
    const out = cpu('Relu', { inputs: { x: sum }, backend: b });
    b.disposeIntermediateTensorInfo(sum);
    return out;
  };
  conv(CONV_ADD_KERNEL, true);

  {
    const fallback = cpuKernel('Conv2DBackpropInput');
    k.Conv2DBackpropInput = (args) => {
      const { dy, filter } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as {
        strides: [number, number] | number; pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
        dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil';
        inputShape: [number, number, number, number];
      };
      if (!allF32(dy, filter) || at.dataFormat === 'NCHW') return fallback(args);
      const c = bu.computeConv2DInfo(
        at.inputShape, filter.shape as [number, number, number, number], at.strides, 1, at.pad,
        at.dimRoundingMode, false, 'channelsLast',
      );
      const out = alloc(size(c.inShape));
      nativeAddon().conv2dBackpropInput(f32(args.backend, dy), f32(args.backend, filter), out, convParams(c));
      return args.backend.makeTensorInfo(c.inShape, 'float32', out);
    };
  }
  {
    const fallback = cpuKernel('Conv2DBackpropFilter');
    k.Conv2DBackpropFilter = (args) => {
      const { x, dy } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as {
        strides: [number, number] | number; pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
        dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil';
        filterShape: [number, number, number, number];
      };
      if (!allF32(x, dy) || at.dataFormat === 'NCHW') return fallback(args);
      const c = bu.computeConv2DInfo(
        x.shape as [number, number, number, number], at.filterShape, at.strides, 1, at.pad, at.dimRoundingMode,
        false, 'channelsLast',
      );
      const out = alloc(size(c.filterShape));
      nativeAddon().conv2dBackpropFilter(f32(args.backend, x), f32(args.backend, dy), out, convParams(c));
      return args.backend.makeTensorInfo(c.filterShape, 'float32', out);
    };
  }

  const matmul = (name: string, fused: boolean) => {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as {
        transposeA: boolean; transposeB: boolean; activation?: string; leakyreluAlpha?: number;
      };
      const act = fused ? ACT[at.activation ?? 'linear'] : 0;
      if (!allF32(a, b, bias) || act === undefined || preluActivationWeights != null) return fallback(args);
      const ra = a.shape.length, rb = b.shape.length;
      if (ra < 2 || rb < 2) return fallback(args);
      const m = at.transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
      const kk = at.transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
      const kb = at.transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
      const n = at.transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
      const batchA = size(a.shape.slice(0, -2)), batchB = size(b.shape.slice(0, -2));
      if (kk !== kb || !(batchA === batchB || batchA === 1 || batchB === 1)) return fallback(args);
      const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
      if (size(outer) !== Math.max(batchA, batchB)) return fallback(args);
      if (bias != null && !(size(bias.shape) === n && bias.shape[bias.shape.length - 1] === n)) return fallback(args);
      const outShape = [...outer, m, n];
      const out = alloc(size(outShape));
      if (out.length > 0) {
        if (kk === 0) out.fill(0);
        // x @ W with one shared W (linear layers on [B, N, D]): one 2-D [B*N, K] matmul is
        // much faster in oneDNN than a broadcast batch of small ones.
        const fold = batchB === 1 && batchA > 1 && !at.transposeA;
        nativeAddon().matmul(
          f32(args.backend, a), f32(args.backend, b), bias ? f32(args.backend, bias) : null, out,
          Int32Array.from([
            fold ? 1 : batchA, batchB, fold ? batchA * m : m, kk, n, at.transposeA ? 1 : 0, at.transposeB ? 1 : 0, act,
          ]),
          at.leakyreluAlpha ?? 0.2,
        );
      }
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  };
  matmul('BatchMatMul', false);
  matmul('_FusedMatMul', true);

  type PoolAttrs = {
    filterSize: [number, number] | number; strides: [number, number] | number;
    pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding; dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const pool = (name: string, max: boolean) => {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as PoolAttrs;
      if (!allF32(x) || x.shape.length !== 4) return fallback(args);
      const c = bu.computePool2DInfo(
        x.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode,
      );
      const out = alloc(size(c.outShape));
      if (out.length > 0) nativeAddon().pool(f32(args.backend, x), out, poolParams(c, max));
      return args.backend.makeTensorInfo(c.outShape, 'float32', out);
    };
  };
  pool('MaxPool', true);
  pool('AvgPool', false);
  {
    const fallback = cpuKernel('MaxPoolGrad');
    k.MaxPoolGrad = (args) => {
      const { dy, input } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as PoolAttrs;
      if (!allF32(dy, input)) return fallback(args);
      const c = bu.computePool2DInfo(
        input.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode,
      );
      const out = alloc(size(input.shape));
      nativeAddon().poolBackward(f32(args.backend, input), f32(args.backend, dy), out, poolParams(c, true));
      return args.backend.makeTensorInfo(input.shape, 'float32', out);
    };
  }
  {
    // Unlike tfjs's cpu AvgPoolGrad (which always divides by the full window), this is the exact
    // gradient of AvgPool, whose windows exclude padding (as TensorFlow's AvgPoolGrad).
    const fallback = cpuKernel('AvgPoolGrad');
    k.AvgPoolGrad = (args) => {
      const { dy, input } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as PoolAttrs;
      if (!allF32(dy, input)) return fallback(args);
      const c = bu.computePool2DInfo(
        input.shape as [number, number, number, number], at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode,
      );
      const out = alloc(size(input.shape));
      nativeAddon().poolBackward(null, f32(args.backend, dy), out, poolParams(c, false));
      return args.backend.makeTensorInfo(input.shape, 'float32', out);
    };
  }

  {
    const fallback = cpuKernel('FusedBatchNorm');
    k.FusedBatchNorm = (args) => {
      const { x, mean, variance, offset, scale } = args.inputs as Record<string, TensorInfo | undefined>;
      if (!x || !mean || !variance || !allF32(x, mean, variance, offset, scale)) return fallback(args);
      const b = args.backend;
      const out = alloc(size(x.shape));
      nativeAddon().batchNorm(
        f32(b, x), f32(b, mean), f32(b, variance), offset ? f32(b, offset) : null, scale ? f32(b, scale) : null,
        out, (args.attrs?.varianceEpsilon as number | undefined) ?? 0.001,
      );
      return b.makeTensorInfo(x.shape, 'float32', out);
    };
  }

  for (const [name, op] of Object.entries(BIN)) {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { a, b } = args.inputs as Record<string, TensorInfo>;
      if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
      const lay = broadcastLayout(a.shape, b.shape);
      if (!lay) return fallback(args);
      const out = alloc(size(lay.out));
      if (out.length > 0) nativeAddon().binary(op, f32(args.backend, a), f32(args.backend, b), out, lay.p);
      return args.backend.makeTensorInfo(lay.out, 'float32', out);
    };
  }
  for (const [name, op] of Object.entries(UN)) {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      if (x.dtype !== 'float32') return fallback(args);
      const out = alloc(size(x.shape));
      nativeAddon().unary(op, f32(args.backend, x), out, (args.attrs?.alpha as number | undefined) ?? 0);
      return args.backend.makeTensorInfo(x.shape, 'float32', out);
    };
  }

  {
    const fallback = cpuKernel('Softmax');
    k.Softmax = (args) => {
      const { logits } = args.inputs as Record<string, TensorInfo>;
      const r = logits.shape.length;
      const dim = args.attrs?.dim as number;
      if (logits.dtype !== 'float32' || r === 0 || (dim !== -1 && dim !== r - 1)) return fallback(args);
      const cols = logits.shape[r - 1];
      const out = alloc(size(logits.shape));
      if (out.length > 0) nativeAddon().softmax(f32(args.backend, logits), out, out.length / cols, cols);
      return args.backend.makeTensorInfo(logits.shape, 'float32', out);
    };
  }

  const REDUCE: Record<string, number> = { Sum: 0, Mean: 1, Max: 2, Min: 3 };
  for (const [name, op] of Object.entries(REDUCE)) {
    const fallback = cpuKernel(name);
    k[name] = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const at = args.attrs as unknown as { axis: number | number[]; keepDims: boolean; reductionIndices?: number[] };
      if (x.dtype !== 'float32' || size(x.shape) === 0) return fallback(args);
      const axes = tf.util.parseAxisParam(at.axis ?? at.reductionIndices, x.shape).sort((p, q) => p - q);
      if (axes.length === 0) return fallback(args);
      const [outShape] = bu.computeOutAndReduceShapes(x.shape, axes);
      const finalShape = at.keepDims ? bu.expandShapeToKeepDim(outShape, axes) : outShape;
      const b = args.backend;
      let src = x;
      let block = contiguousBlock(x.shape, axes);
      let tmp: TensorInfo | undefined;
      if (!block) {
        const perm = bu.getAxesPermutation(axes, x.shape.length) as number[];
        tmp = nativeTranspose(b, x, perm);
        src = tmp;
        block = [size(outShape), size(x.shape) / size(outShape), 1];
      }
      const out = alloc(size(outShape));
      nativeAddon().reduce(op, f32(b, src), out, block[0], block[1], block[2]);
      if (tmp) b.disposeIntermediateTensorInfo(tmp);
      return b.makeTensorInfo(finalShape, 'float32', out);
    };
  }

  {
    const fallback = cpuKernel('Transpose');
    k.Transpose = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const perm = args.attrs?.perm as number[];
      if ((x.dtype !== 'float32' && x.dtype !== 'int32') || x.shape.length > 8 || x.shape.length === 0)
        return fallback(args);
      return nativeTranspose(args.backend, x, perm);
    };
  }

  {
    // Tile = a broadcast copy: the output, viewed as [r0, d0, r1, d1, ...], reads x with
    // stride 0 along every repetition axis.
    const fallback = cpuKernel('Tile');
    const zero = new Float32Array(1);
    k.Tile = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const reps = args.attrs?.reps as number[];
      if (x.dtype !== 'float32' || reps.length !== x.shape.length || x.shape.length > 8) return fallback(args);
      const outShape = x.shape.map((s, i) => s * reps[i]);
      const dims: { n: number; a: number; b: number }[] = [];
      let stride = size(x.shape);
      x.shape.forEach((s, i) => {
        stride /= s;
        dims.push({ n: reps[i], a: 0, b: 0 }, { n: s, a: stride, b: 0 });
      });
      const p = packLayout(dims);
      const out = alloc(size(outShape));
      if (!p) return fallback(args);
      if (out.length > 0) nativeAddon().binary(7, f32(args.backend, x), zero, out, p);
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  }
  {
    // Slice = a strided copy starting at the begin offset.
    const fallback = cpuKernel('Slice');
    const zero = new Float32Array(1);
    k.Slice = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      if (x.dtype !== 'float32' || x.shape.length === 0 || x.shape.length > 16) return fallback(args);
      const [begin, sz] = tf.slice_util.parseSliceParams(
        x as unknown as tf.Tensor, args.attrs?.begin as number[], args.attrs?.size as number[],
      );
      const dims: { n: number; a: number; b: number }[] = [];
      let stride = size(x.shape), offset = 0;
      x.shape.forEach((s, i) => {
        stride /= s;
        offset += begin[i] * stride;
        dims.push({ n: sz[i], a: stride, b: 0 });
      });
      const p = packLayout(dims);
      if (!p) return fallback(args);
      const out = alloc(size(sz));
      if (out.length > 0) nativeAddon().binary(7, f32(args.backend, x).subarray(offset), zero, out, p);
      return args.backend.makeTensorInfo(sz, 'float32', out);
    };
  }
  {
    // SplitV (the gradient of Concat) = one native Slice per output; the cpu kernel's
    // generic strided slice took 390 ms of a 690 ms small-CNN train step here.
    const fallback = cpuKernel('SplitV');
    const slice = k.Slice!;
    k.SplitV = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      if (x.dtype !== 'float32' || x.shape.length === 0) return fallback(args);
      const axis = tf.util.parseAxisParam(args.attrs?.axis as number, x.shape)[0]!;
      const splits = bu.prepareSplitSize(x as unknown as tf.Tensor, args.attrs?.numOrSizeSplits as number | number[], axis);
      const begin = new Array<number>(x.shape.length).fill(0);
      return splits.map((s) => {
        const sz = x.shape.slice();
        sz[axis] = s;
        const out = slice({ inputs: { x }, backend: args.backend, attrs: { begin: begin.slice(), size: sz } }) as TensorInfo;
        nativeStats.native.Slice = (nativeStats.native.Slice ?? 0) + 1;
        begin[axis] += s;
        return out;
      });
    };
  }
  {
    // Concat = each input's rows copied into its column range of the output rows (the cpu
    // kernel took 38 ms to join ViT-S's class token to batch 8's patch tokens).
    const fallback = cpuKernel('Concat');
    k.Concat = (args) => {
      const xs = Object.values(args.inputs).filter((t): t is TensorInfo => t != null);
      if (xs.length === 0 || xs.some((t) => t.dtype !== 'float32') || xs[0]!.shape.length === 0) return fallback(args);
      const axis = tf.util.parseAxisParam(args.attrs?.axis as number, xs[0]!.shape)[0]!;
      const outShape = bu.computeOutShape(xs.map((t) => t.shape), axis);
      const out = alloc(size(outShape));
      const rows = size(outShape.slice(0, axis));
      const width = size(outShape.slice(axis));
      let col = 0;
      for (const t of xs) {
        const cols = size(t.shape.slice(axis));
        if (cols > 0 && rows > 0)
          nativeAddon().copyRows(f32(args.backend, t), out.subarray(col), rows, cols, cols, width);
        col += cols;
      }
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  }
  {
    // PadV2 = fill, then copy x's rows into the padded frame. The innermost dims without
    // padding form one contiguous run per copy.
    const fallback = cpuKernel('PadV2');
    k.PadV2 = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const pads = args.attrs?.paddings as [number, number][];
      const cv = (args.attrs?.constantValue as number | undefined) ?? 0;
      if (x.dtype !== 'float32' || x.shape.length === 0 || pads.some(([a, b]) => a < 0 || b < 0)) return fallback(args);
      const r = x.shape.length;
      const outShape = x.shape.map((s, i) => s + pads[i]![0] + pads[i]![1]);
      const out = alloc(size(outShape));
      out.fill(cv);
      const src = f32(args.backend, x);
      if (src.length === 0) return args.backend.makeTensorInfo(outShape, 'float32', out);
      // innermost run: trailing dims with no padding, plus the first padded dim from the inside
      let d = r - 1;
      let run = 1;
      while (d > 0 && pads[d]![0] === 0 && pads[d]![1] === 0) run *= x.shape[d--]!;
      run *= x.shape[d]!;
      const outStrides = new Array<number>(r).fill(1);
      for (let i = r - 2; i >= 0; i--) outStrides[i] = outStrides[i + 1]! * outShape[i + 1]!;
      let base = 0;
      for (let i = 0; i < r; i++) base += pads[i]![0] * outStrides[i]!;
      const outer = x.shape.slice(0, d);
      const rows = size(outer);
      const idx = new Array<number>(d).fill(0);
      for (let row = 0; row < rows; row++) {
        let o = base;
        for (let i = 0; i < d; i++) o += idx[i]! * outStrides[i]!;
        out.set(src.subarray(row * run, row * run + run), o);
        for (let i = d - 1; i >= 0; i--) {
          if (++idx[i]! < outer[i]!) break;
          idx[i] = 0;
        }
      }
      return args.backend.makeTensorInfo(outShape, 'float32', out);
    };
  }
  // LayerNorm over the last axis and exact GELU, each one kernel (the models call them on this
  // backend outside gradient tapes: src/models/ops.ts).
  k[LAYER_NORM_KERNEL] = (args) => {
    const { x, weight, bias } = args.inputs as Record<string, TensorInfo>;
    const cols = x.shape[x.shape.length - 1]!;
    const out = alloc(size(x.shape));
    if (out.length > 0) nativeAddon().layerNorm(f32(args.backend, x), f32(args.backend, weight), f32(args.backend, bias), out, cols, args.attrs?.eps as number);
    return args.backend.makeTensorInfo(x.shape, 'float32', out);
  };
  k[GELU_KERNEL] = (args) => {
    const { x } = args.inputs as Record<string, TensorInfo>;
    const out = alloc(size(x.shape));
    if (out.length > 0) nativeAddon().gelu(f32(args.backend, x), out);
    return args.backend.makeTensorInfo(x.shape, 'float32', out);
  };
  k[RELU_GRAD_KERNEL] = (args) => {
    const { dy, x } = args.inputs as Record<string, TensorInfo>;
    const out = alloc(size(x.shape));
    if (out.length > 0) nativeAddon().reluGrad(f32(args.backend, dy), f32(args.backend, x), out);
    return args.backend.makeTensorInfo(x.shape, 'float32', out);
  };
  k[LINEAR_KERNEL] = (args) => {
    const { x, weight, bias, residual } = args.inputs as Record<string, TensorInfo | undefined>;
    const act = (args.attrs?.activation as string | undefined) ?? 'linear';
    const [M, K] = x!.shape as [number, number];
    const N = weight!.shape[0]!;
    if (x!.shape.length !== 2 || weight!.shape.length !== 2 || weight!.shape[1] !== K || (bias && size(bias.shape) !== N)
        || (residual && !tf.util.arraysEqual(residual.shape, [M, N])))
      throw new Error(`${LINEAR_KERNEL}: x [${x!.shape}], weight [${weight!.shape}]${bias ? `, bias [${bias.shape}]` : ''}${residual ? `, residual [${residual.shape}]` : ''} do not fit x·weightᵀ`);
    if (act !== 'linear' && act !== 'gelu') throw new Error(`${LINEAR_KERNEL}: activation ${act} is not supported (linear or gelu)`);
    if (!allF32(x!, weight!, bias, residual)) throw new Error(`${LINEAR_KERNEL}: inputs must be float32`);
    const out = alloc(M * N);
    if (out.length === 0) return args.backend.makeTensorInfo([M, N], 'float32', out);
    const p = Int32Array.from([M, K, N, (act === 'gelu' ? 6 : 0) | (residual ? 16 : 0)]);
    // The weights in the primitive's layout, packed once per (weight data, shape): the weight
    // tensor's dataId is new whenever its values change (tfjs never writes a tensor in place).
    const key = `${p}|${bias != null}`;
    let hit = linearPacked.get(weight!.dataId);
    const repack = hit?.key !== key;
    if (repack) {
      hit = { key, packed: new Float32Array(nativeAddon().linearPackedSize(p, bias != null)) };
      linearPacked.set(weight!.dataId, hit);
    }
    // with a residual, the addon copies it into out and the matmul adds its result (sum post-op)
    nativeAddon().linear(
      f32(args.backend, x!), f32(args.backend, weight!), bias ? f32(args.backend, bias) : null, out, p, hit!.packed, repack,
      residual ? f32(args.backend, residual) : null,
    );
    return args.backend.makeTensorInfo([M, N], 'float32', out);
  };
  k[ATTENTION_KERNEL] = (args) => {
    const { qkv } = args.inputs as Record<string, TensorInfo>;
    const at = args.attrs as { batch: number; tokens: number; heads: number; scale: number };
    const [rows, cols] = qkv.shape as [number, number];
    if (qkv.shape.length !== 2 || rows !== at.batch * at.tokens || cols % 3 !== 0 || (cols / 3) % at.heads !== 0)
      throw new Error(`${ATTENTION_KERNEL}: qkv [${qkv.shape}] is not [batch·tokens = ${at.batch}·${at.tokens}, 3·D] with D a multiple of ${at.heads} heads`);
    const out = alloc(rows * (cols / 3));
    if (out.length > 0) nativeAddon().attention(f32(args.backend, qkv), out, at.batch, at.tokens, at.heads, at.scale);
    return args.backend.makeTensorInfo([rows, cols / 3], 'float32', out);
  };
  k[SGD_KERNEL] = (args) => {
    const { param, grad, buf } = args.inputs as Record<string, TensorInfo> & { buf?: TensorInfo };
    const b = args.backend;
    const n = size(param.shape);
    if (size(grad.shape) !== n || (buf && size(buf.shape) !== n))
      throw new Error(`${SGD_KERNEL}: param [${param.shape}], grad [${grad.shape}]${buf ? `, buf [${buf.shape}]` : ''} must have the same size`);
    const pOut = alloc(n), bOut = alloc(n);
    const at = args.attrs as { lr: number; momentum: number; weightDecay: number; nesterov: boolean };
    nativeAddon().sgdStep(f32(b, param), f32(b, grad), buf ? f32(b, buf) : null, pOut, bOut, at.lr, at.momentum, at.weightDecay, at.nesterov);
    return [b.makeTensorInfo(param.shape, 'float32', pOut), b.makeTensorInfo(param.shape, 'float32', bOut)];
  };
  k[BN_TRAIN_KERNEL] = (args) => {
    const { x, scale, offset, residual } = args.inputs as Record<string, TensorInfo> & { residual?: TensorInfo };
    const b = args.backend;
    const C = x.shape[x.shape.length - 1]!;
    if (residual && !tf.util.arraysEqual(residual.shape, x.shape))
      throw new Error(`${BN_TRAIN_KERNEL}: residual shape [${residual.shape}] must equal x's [${x.shape}]`);
    const y = alloc(size(x.shape));
    const mean = new Float32Array(C), variance = new Float32Array(C);
    nativeAddon().batchNormTrain(
      f32(b, x), scale ? f32(b, scale) : null, offset ? f32(b, offset) : null, y, mean, variance, args.attrs?.eps as number,
      residual ? f32(b, residual) : null, args.attrs?.activation === 'relu',
    );
    return [b.makeTensorInfo(x.shape, 'float32', y), b.makeTensorInfo([C], 'float32', mean), b.makeTensorInfo([C], 'float32', variance)];
  };
  k[BN_TRAIN_GRAD_KERNEL] = (args) => {
    const { x, dy, mean, variance, scale, y } = args.inputs as Record<string, TensorInfo> & { y?: TensorInfo };
    const b = args.backend;
    const C = size(mean.shape);
    const dx = alloc(size(x.shape));
    const dscale = new Float32Array(C), doffset = new Float32Array(C);
    // the residual's gradient is ReLU's masked dy; without ReLU it is dy itself (left to the caller)
    const dres = args.attrs?.residual === true && y ? alloc(size(x.shape)) : null;
    nativeAddon().batchNormTrainGrad(
      f32(b, x), f32(b, dy), f32(b, mean), f32(b, variance), scale ? f32(b, scale) : null, dx, dscale, doffset, args.attrs?.eps as number,
      y ? f32(b, y) : null, dres,
    );
    const out = [b.makeTensorInfo(x.shape, 'float32', dx), b.makeTensorInfo([C], 'float32', dscale), b.makeTensorInfo([C], 'float32', doffset)];
    if (dres) out.push(b.makeTensorInfo(x.shape, 'float32', dres));
    return out;
  };
  k[BN_GRAD_KERNEL] = (args) => {
    const { x, dy, mean, variance, scale } = args.inputs as Record<string, TensorInfo>;
    const b = args.backend;
    const C = size(mean.shape);
    const dx = alloc(size(x.shape));
    const g = [new Float32Array(C), new Float32Array(C), new Float32Array(C), new Float32Array(C)] as const;
    nativeAddon().batchNormGrad(
      f32(b, x), f32(b, dy), f32(b, mean), f32(b, variance), scale ? f32(b, scale) : null, dx, ...g,
      (args.attrs?.varianceEpsilon as number | undefined) ?? 0.001,
    );
    return [
      b.makeTensorInfo(x.shape, 'float32', dx),
      ...g.map((v) => b.makeTensorInfo([C], 'float32', v)),
    ];
  };
  {
    const fallback = cpuKernel('TopK');
    k.TopK = (args) => {
      const { x } = args.inputs as Record<string, TensorInfo>;
      const kk = args.attrs?.k as number;
      const r = x.shape.length;
      if (x.dtype !== 'float32' || r === 0 || kk > x.shape[r - 1]) return fallback(args);
      const cols = x.shape[r - 1];
      const rows = cols === 0 ? 0 : size(x.shape) / cols;
      const outShape = [...x.shape.slice(0, -1), kk];
      const vals = alloc(rows * kk), idx = new Int32Array(rows * kk);
      if (rows * kk > 0) nativeAddon().topk(f32(args.backend, x), vals, idx, rows, cols, kk);
      return [args.backend.makeTensorInfo(outShape, 'float32', vals), args.backend.makeTensorInfo(outShape, 'int32', idx)];
    };
  }
  return k;
}
