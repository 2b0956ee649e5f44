/**
 * Seeded random initialisation, following torchvision / timm init schemes. The RNG is
 * mulberry32 (32-bit state) with Box–Muller normals: reproducible across platforms.
 */

import { mulberry32 } from '../core/rng.js';

/** Draws from a seeded RNG. */
export class Rng {
  private readonly u: () => number;
  constructor(seed: number) {
    this.u = mulberry32(seed);
  }
  /** `n` values from N(0, std²). */
  normal(n: number, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u1 = Math.max(this.u(), 1e-12);
      const u2 = this.u();
      const r = Math.sqrt(-2 * Math.log(u1)) * std;
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }
  /** `n` values from N(0, std²) truncated to [-2, 2] (absolute, like timm's trunc_normal_ with std 0.02). */
  truncNormal(n: number, std: number, lo = -2, hi = 2): Float32Array {
    const out = this.normal(n, std);
    for (let i = 0; i < n; i++) {
      while (out[i]! < lo || out[i]! > hi) out[i] = this.normal(1, std)[0]!;
    }
    return out;
  }
  /** `n` values from U(lo, hi). */
  uniform(n: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.u();
    return out;
  }
}
