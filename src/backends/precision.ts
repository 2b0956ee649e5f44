import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../core/errors.js';
import type { NativeAddon } from './addon.js';
import { NATIVE_BACKEND, nativeAddon, registerNativeBackend } from './native.js';

/**
 * Compute precision of the native backend's convolutions, matmuls and linear layers.
 * `bf16`: inputs and weights rounded to bfloat16 (round to nearest even) on the way into oneDNN's
 * bf16 primitives, accumulation and outputs fp32; everything else (BatchNorm, softmax, the
 * attention kernel, element-wise ops, optimizer state, master weights) stays fp32.
 */
export type Precision = 'fp32' | 'bf16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'bf16'];

/** The addon's bf16 exports (native/src/bf16.cc's RegisterBf16), typed in {@link NativeAddon}. */
export const BF16_EXPORTS = ['setPrecision', 'getPrecision', 'bf16Available', 'toBf16', 'prepareRows', 'nearestRows', 'knnRows'] as const;
export type Bf16Addon = Pick<NativeAddon, (typeof BF16_EXPORTS)[number]>;

/** The loaded addon's bf16 entry points, or null when the native addon is not loaded or was built before them. */
export function bf16Addon(): Bf16Addon | null {
  if (!registerNativeBackend().ok) return null;
  const a: Partial<NativeAddon> = nativeAddon();
  // an addon built from an older checkout lacks them (the typings describe the current source)
  return BF16_EXPORTS.every((f) => typeof a[f] === 'function') ? (a as Bf16Addon) : null;
}

/** Checks a precision value from a config file or flag. */
export function parsePrecision(v: unknown, where: string): Precision {
  if (v === 'fp32' || v === 'bf16') return v;
  throw new ConfigError(`${where}: expected fp32 or bf16, received ${JSON.stringify(v)}`);
}

/**
 * Where bf16 can run: on the `native` backend, on a CPU whose oneDNN ISA has bf16 dot products
 * (avx512_core_bf16 or AMX; `ONEDNN_MAX_CPU_ISA` can hide them). Returns why not otherwise.
 */
export function bf16Support(backend: string = tf.getBackend()): { ok: true; isa: string } | { ok: false; why: string } {
  if (backend !== NATIVE_BACKEND) return { ok: false, why: `backend ${backend} computes in fp32 only (bf16 needs the native backend)` };
  const a = bf16Addon();
  if (!a) return { ok: false, why: 'the native addon has no bf16 kernels (rebuild it: node scripts/build-native.mjs)' };
  const s = a.bf16Available();
  return s.available ? { ok: true, isa: s.isa } : { ok: false, why: `this CPU has no bf16 dot-product units for oneDNN (ISA ${s.isa}; needs avx512_core_bf16 or AMX)` };
}

/**
 * Sets the native backend's compute precision for the models' forward and backward passes.
 * Asking for bf16 where it cannot run falls back to fp32 and returns a one-line notice.
 * Models keep convolution and linear weights packed in the precision they first ran in: set the
 * precision before a model's first forward pass (or create the model afterwards).
 */
export function setComputePrecision(want: Precision, backend: string = tf.getBackend()): { precision: Precision; notice?: string } {
  const a = backend === NATIVE_BACKEND ? bf16Addon() : null;
  if (want === 'fp32') {
    a?.setPrecision(0);
    return { precision: 'fp32' };
  }
  const s = bf16Support(backend);
  if (!s.ok) {
    a?.setPrecision(0);
    return { precision: 'fp32', notice: `precision fp32 (bf16 asked for, unavailable: ${s.why})` };
  }
  return { precision: a!.setPrecision(1) === 1 ? 'bf16' : 'fp32' };
}

/** The native backend's compute precision now (fp32 on every other backend). */
export function computePrecision(backend: string = tf.getBackend()): Precision {
  if (backend !== NATIVE_BACKEND) return 'fp32';
  return bf16Addon()?.getPrecision() === 1 ? 'bf16' : 'fp32';
}

/**
 * The precision `want` computes in on `backend`: `bf16` where {@link bf16Support} allows it, else
 * fp32 with the notice to print. A stage's cache key names this precision, not the one asked for,
 * so that fp32 results computed where bf16 falls back share fp32's key (and never sit under a bf16
 * key another machine would trust). Retrieval answers are exact either way (see
 * src/retrieval/certified.ts); there the precision only changes the speed.
 */
export function resolvePrecision(want: Precision, backend: string = tf.getBackend()): { precision: Precision; notice?: string } {
  if (want === 'fp32') return { precision: 'fp32' };
  const s = bf16Support(backend);
  return s.ok ? { precision: 'bf16' } : { precision: 'fp32', notice: `precision fp32 (bf16 asked for, unavailable: ${s.why})` };
}

/**
 * Checks that `want` can compute here, for work whose result is recorded as computed in `want` (a
 * stage keyed by its precision): throws where {@link setComputePrecision} would fall back.
 * @param where names the work in the error (e.g. the stage)
 */
export function requirePrecision(want: Precision, where: string, backend: string = tf.getBackend()): void {
  const r = resolvePrecision(want, backend);
  if (r.notice)
    throw new ConfigError(`${where}: planned in bf16, but here ${r.notice}; run it where bf16 is available (a Slurm job: a node with avx512_bf16 or AMX) or set compute.precision / train.precision to fp32`);
}
