/** PIL's bilinear resampling of 8-bit images in plain JS (the decoder's path where sharp's kernel differs from PIL's). */

/**
 * Per-output-pixel taps of PIL's bilinear resampling (`Image.resize(..., BILINEAR)`):
 * a triangle filter widened by the scale when shrinking, so it antialiases like PIL.
 */
function bilinearTaps(inSize: number, outSize: number): { start: Int32Array; count: Int32Array; weights: Float64Array; kmax: number } {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // bilinear support 1.0 × filterScale
  const kmax = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * kmax);
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
    const hi = Math.min(Math.trunc(centre + support + 0.5), inSize);
    let sum = 0;
    for (let k = 0; k < hi - lo; k++) {
      const x = Math.abs((k + lo - centre + 0.5) / filterScale);
      const w = x < 1 ? 1 - x : 0;
      weights[o * kmax + k] = w;
      sum += w;
    }
    if (sum > 0) for (let k = 0; k < hi - lo; k++) weights[o * kmax + k]! /= sum;
    start[o] = lo;
    count[o] = hi - lo;
  }
  return { start, count, weights, kmax };
}

const clamp8 = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/**
 * Resizes the `box` region of an 8-bit image to ow × oh with PIL's bilinear filter
 * (horizontal pass, 8-bit intermediate, vertical pass, as PIL does).
 */
export function resizeBilinearU8(
  src: Uint8Array,
  width: number,
  channels: number,
  box: { left: number; top: number; width: number; height: number },
  ow: number,
  oh: number,
): Uint8Array {
  const c = channels;
  const bw = box.width;
  const bh = box.height;
  // horizontal pass over the rows of the box
  let horiz: Uint8Array;
  if (ow === bw) {
    horiz = new Uint8Array(bw * bh * c);
    for (let y = 0; y < bh; y++) horiz.set(src.subarray(((box.top + y) * width + box.left) * c, ((box.top + y) * width + box.left + bw) * c), y * bw * c);
  } else {
    const tx = bilinearTaps(bw, ow);
    horiz = new Uint8Array(ow * bh * c);
    for (let y = 0; y < bh; y++) {
      const row = ((box.top + y) * width + box.left) * c;
      for (let x = 0; x < ow; x++) {
        const s0 = tx.start[x]!;
        const n = tx.count[x]!;
        const wo = x * tx.kmax;
        for (let ch = 0; ch < c; ch++) {
          let acc = 0;
          for (let k = 0; k < n; k++) acc += src[row + (s0 + k) * c + ch]! * tx.weights[wo + k]!;
          horiz[(y * ow + x) * c + ch] = clamp8(acc);
        }
      }
    }
  }
  if (oh === bh) return horiz;
  const ty = bilinearTaps(bh, oh);
  const out = new Uint8Array(ow * oh * c);
  const stride = ow * c;
  for (let y = 0; y < oh; y++) {
    const s0 = ty.start[y]!;
    const n = ty.count[y]!;
    const wo = y * ty.kmax;
    for (let i = 0; i < stride; i++) {
      let acc = 0;
      for (let k = 0; k < n; k++) acc += horiz[(s0 + k) * stride + i]! * ty.weights[wo + k]!;
      out[y * stride + i] = clamp8(acc);
    }
  }
  return out;
}
