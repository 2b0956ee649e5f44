/** The synthetic benchmark's contexts: backgrounds of a base colour and a texture, with their noise. */

/** A standard normal draw (Box–Muller). */
export function gauss(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** A context: its name, base colour and texture. */
export interface ContextStyle {
  name: string;
  rgb: [number, number, number];
  texture: 'speckle' | 'vstripes' | 'hstripes' | 'dots' | 'gradient' | 'checker';
}

export const NAMED_CONTEXTS: ContextStyle[] = [
  { name: 'grass', rgb: [0.25, 0.55, 0.2], texture: 'vstripes' },
  { name: 'sky', rgb: [0.4, 0.6, 0.92], texture: 'gradient' },
  { name: 'sand', rgb: [0.86, 0.76, 0.48], texture: 'dots' },
  { name: 'snow', rgb: [0.88, 0.9, 0.94], texture: 'speckle' },
  { name: 'brick', rgb: [0.62, 0.24, 0.18], texture: 'hstripes' },
  { name: 'night', rgb: [0.1, 0.1, 0.25], texture: 'checker' },
];

/** A colour in [0,1]³ from hue, saturation, value. */
export function hsv(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const m: [number, number, number][] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]];
  return m[((i % 6) + 6) % 6]!;
}

export function contextStyles(n: number): ContextStyle[] {
  const textures: ContextStyle['texture'][] = ['speckle', 'vstripes', 'hstripes', 'dots', 'gradient', 'checker'];
  const out = NAMED_CONTEXTS.slice(0, n);
  for (let i = out.length; i < n; i++)
    out.push({ name: `context${i}`, rgb: hsv((i * 0.618) % 1, 0.55, 0.45 + 0.4 * ((i * 0.37) % 1)), texture: textures[i % textures.length]! });
  return out;
}

export function paintBackground(st: ContextStyle, out: Float32Array, size: number, rand: () => number): void {
  const j = st.rgb.map((v) => v + (rand() - 0.5) * 0.12);
  const phase = Math.floor(rand() * 4);
  const period = 4;
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      let k = 1;
      switch (st.texture) {
        case 'speckle':
          k = rand() < 0.15 ? 0.88 : 1;
          break;
        case 'vstripes':
          k = (x + phase) % period < 2 ? 0.9 : 1.05;
          break;
        case 'hstripes':
          k = (y + phase) % period === 0 ? 1.2 : 1;
          break;
        case 'dots':
          k = (x + phase) % 4 === 0 && (y + phase) % 4 === 0 ? 0.82 : 1;
          break;
        case 'gradient':
          k = 1.15 - (0.35 * y) / size;
          break;
        case 'checker':
          k = ((x + phase) >> 1) % 2 === ((y >> 1) % 2) ? 1.4 : 1;
          break;
      }
      const o = (y * size + x) * 3;
      for (let ch = 0; ch < 3; ch++) out[o + ch] = j[ch]! * k;
    }
}
