/**
 * Host-side tensors as read from or written to checkpoint files: a dtype, a shape
 * (PyTorch order) and a flat, C-contiguous typed array. No tfjs here.
 */

/** Element types dcd keeps after reading; floats of every width become F32. */
export type HostDType = 'F32' | 'I64' | 'I32';

/** One tensor held in host memory, C-contiguous. */
export interface HostTensor {
  dtype: HostDType;
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array;
}

/** A flat state dict: PyTorch key → tensor. */
export type StateDict = Map<string, HostTensor>;

/** Product of a shape's dimensions (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `[a, b, c]` as written in messages. */
export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Converts IEEE half floats (as uint16) to float32. */
export function halfToFloat32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const v = h[i]!;
    const s = v & 0x8000 ? -1 : 1;
    const e = (v >> 10) & 0x1f;
    const f = v & 0x3ff;
    if (e === 0) out[i] = s * f * 2 ** -24;
    else if (e === 31) out[i] = f ? NaN : s * Infinity;
    else out[i] = s * (1 + f / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** Converts bfloat16 (as uint16) to float32. */
export function bf16ToFloat32(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i]! << 16;
  return new Float32Array(u.buffer);
}

/** Copies `len` bytes at `offset` of `buf` into a fresh, aligned ArrayBuffer. */
export function copyBytes(buf: Uint8Array, offset: number, len: number): ArrayBuffer {
  const out = new ArrayBuffer(len);
  new Uint8Array(out).set(buf.subarray(offset, offset + len));
  return out;
}

/**
 * Gathers a strided view (element offset, shape, strides in elements, as in PyTorch)
 * of `src` into a C-contiguous array of the same kind.
 */
export function stridedCopy<T extends Float32Array | Int32Array | BigInt64Array>(
  src: T,
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
): T {
  const n = numel(shape);
  const Ctor = src.constructor as new (n: number) => T;
  const out = new Ctor(n);
  // Fast path: contiguous.
  let contiguous = true;
  let expect = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expect) contiguous = false;
    expect *= shape[d]!;
  }
  if (contiguous) {
    (out as unknown as { set(a: ArrayLike<unknown>): void }).set(src.subarray(offset, offset + n) as ArrayLike<unknown>);
    return out;
  }
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let o = offset;
    for (let d = 0; d < shape.length; d++) o += idx[d]! * stride[d]!;
    (out as unknown as unknown[])[i] = (src as unknown as unknown[])[o];
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}
