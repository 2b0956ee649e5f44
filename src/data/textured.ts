/**
 * The textured variant of the synthetic benchmark (`data.synthetic.variant: textured`).
 *
 * In the flat variant every context has its own base colour, so the mean colour of an
 * image already says where it is, and any convolutional net — trained or not — finds
 * "same context" neighbours. Here a context is a procedural *texture* (its spatial
 * structure), painted with two colours that every context draws from the same
 * distribution; objects take colours from that distribution too. Colour statistics
 * therefore overlap across contexts, and telling contexts apart needs features that
 * respond to structure (orientation, frequency, blob shape) rather than colour: what a
 * backbone must learn.
 *
 * Pure functions of an image's own RNG (`rand`), called by `render` in synthetic.ts.
 */
import { hsv } from './synthetic-contexts.js';

/** Context names of the textured variant, in context-index order. */
export const TEXTURES = ['stripes', 'waves', 'tiles', 'dots', 'rings', 'blobs'] as const;
export type TextureName = (typeof TEXTURES)[number];


/** The shared colour distribution of backgrounds and objects: any hue, moderate saturation and value. */
export function drawColour(rand: () => number): [number, number, number] {
  return hsv(rand(), 0.25 + 0.55 * rand(), 0.3 + 0.6 * rand());
}

/** Luma (Rec. 601) of an RGB colour in [0,1]. */
export function luma(c: readonly number[]): number {
  return 0.299 * c[0]! + 0.587 * c[1]! + 0.114 * c[2]!;
}

/**
 * Pattern value in [0,1] at every pixel for texture `t`: 0 shows the first colour, 1 the
 * second. Orientation, frequency and phase vary per image within each texture's range, so
 * no single pixel or colour statistic identifies the texture.
 */
export function texturePattern(t: TextureName, size: number, rand: () => number): Float32Array {
  const out = new Float32Array(size * size);
  const s = size / 32; // ranges below are for 32 px and scale with the image
  switch (t) {
    case 'stripes': {
      // thin near-vertical stripes (blades of grass), period 3–5 px
      const period = (3 + 2 * rand()) * s;
      const ang = (rand() - 0.5) * 0.5;
      const ph = rand() * period;
      const c = Math.cos(ang);
      const sn = Math.sin(ang);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const u = c * x + sn * y + ph;
          out[y * size + x] = ((u % period) + period) % period < period * 0.45 ? 1 : 0;
        }
      break;
    }
    case 'waves': {
      // wide wavy horizontal bands, smooth edges
      const period = (7 + 4 * rand()) * s;
      const amp = (1 + 2 * rand()) * s;
      const wl = (10 + 8 * rand()) * s;
      const ph = rand() * 2 * Math.PI;
      const ph2 = rand() * 2 * Math.PI;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const v = Math.sin((2 * Math.PI * (y + amp * Math.sin((2 * Math.PI * x) / wl + ph2))) / period + ph);
          out[y * size + x] = 0.5 + 0.5 * v;
        }
      break;
    }
    case 'tiles': {
      // checkerboard of 4–7 px cells, slightly rotated
      const cell = (4 + 3 * rand()) * s;
      const ang = (rand() - 0.5) * 0.4;
      const ox = rand() * cell;
      const oy = rand() * cell;
      const c = Math.cos(ang);
      const sn = Math.sin(ang);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const u = Math.floor((c * x + sn * y + ox) / cell);
          const v = Math.floor((-sn * x + c * y + oy) / cell);
          out[y * size + x] = (u + v) & 1 ? 1 : 0;
        }
      break;
    }
    case 'dots': {
      // round dots on a jittered grid, spacing 6–8 px
      const sp = (6 + 2 * rand()) * s;
      const r = sp * (0.28 + 0.1 * rand());
      const ox = rand() * sp;
      const oy = rand() * sp;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const dx = ((x + ox) % sp) - sp / 2;
          const dy = ((y + oy) % sp) - sp / 2;
          out[y * size + x] = Math.min(1, Math.max(0, r + 0.5 - Math.sqrt(dx * dx + dy * dy)));
        }
      break;
    }
    case 'rings': {
      // concentric rings around a point that may lie outside the image
      const period = (4 + 3 * rand()) * s;
      const cx = (rand() * 1.6 - 0.3) * size;
      const cy = (rand() * 1.6 - 0.3) * size;
      const ph = rand() * period;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const d = Math.hypot(x - cx, y - cy) + ph;
          out[y * size + x] = (d % period) < period / 2 ? 1 : 0;
        }
      break;
    }
    case 'blobs': {
      // smooth value noise: a coarse random grid, bicubic-smoothed, thresholded softly
      const g = 5;
      const grid = new Float32Array((g + 1) * (g + 1));
      for (let i = 0; i < grid.length; i++) grid[i] = rand();
      const smooth = (a: number) => a * a * (3 - 2 * a);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const gx = (x / size) * (g - 1);
          const gy = (y / size) * (g - 1);
          const ix = Math.floor(gx);
          const iy = Math.floor(gy);
          const fx = smooth(gx - ix);
          const fy = smooth(gy - iy);
          const at = (a: number, b: number) => grid[(iy + b) * (g + 1) + ix + a]!;
          const v = (1 - fy) * ((1 - fx) * at(0, 0) + fx * at(1, 0)) + fy * ((1 - fx) * at(0, 1) + fx * at(1, 1));
          out[y * size + x] = Math.min(1, Math.max(0, (v - 0.5) * 4 + 0.5));
        }
      break;
    }
  }
  return out;
}

/**
 * Paints context `context` (an index into {@link TEXTURES}) into `out` (HWC float RGB,
 * [size, size, 3]) with two colours from the shared distribution.
 * @returns the background's mean colour (for picking a contrasting object colour)
 */
export function paintTexture(context: number, out: Float32Array, size: number, rand: () => number): [number, number, number] {
  const t = TEXTURES[context % TEXTURES.length]!;
  const a = drawColour(rand);
  let b = drawColour(rand);
  // the two colours differ in brightness, or the texture would vanish
  for (let k = 0; k < 10 && Math.abs(luma(a) - luma(b)) < 0.15; k++) b = drawColour(rand);
  const p = texturePattern(t, size, rand);
  const mean: [number, number, number] = [0, 0, 0];
  for (let i = 0; i < size * size; i++)
    for (let ch = 0; ch < 3; ch++) {
      const v = (1 - p[i]!) * a[ch]! + p[i]! * b[ch]!;
      out[i * 3 + ch] = v;
      mean[ch] += v / (size * size);
    }
  return mean;
}

/** An object colour from the shared distribution whose luma differs from `bg`'s by at least `contrast` (best of 20 draws). */
export function objectColour(bg: readonly number[], contrast: number, rand: () => number): [number, number, number] {
  let best = drawColour(rand);
  for (let k = 0; k < 20 && Math.abs(luma(best) - luma(bg)) <= contrast; k++) {
    const c = hsv(rand(), 0.4 + 0.6 * rand(), rand() < 0.5 ? 0.05 + 0.25 * rand() : 0.75 + 0.25 * rand());
    if (Math.abs(luma(c) - luma(bg)) > Math.abs(luma(best) - luma(bg))) best = c;
  }
  return best;
}
