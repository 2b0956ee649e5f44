/** The buffer pool behind the native kernels' float32 outputs. */
import { totalmem } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { NATIVE_BACKEND } from './kernel-names.js';

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
