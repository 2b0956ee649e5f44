/**
 * Figure-7-style plot: class retention (y) against context retention (x), one line per
 * backbone, one labelled point per k. Written as SVG, and as PNG through sharp's SVG
 * renderer.
 */
import sharp from 'sharp';

/** One point of Figure 7: a backbone at one k. Percentages in [0, 100]. */
export interface RetentionPoint {
  backbone: string;
  k: number;
  classRetention: number;
  contextRetention: number;
  /** Images with a known class (queries for class retention). */
  classQueries: number;
  /** Images with an annotated context (queries for context retention). */
  contextQueries: number;
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Rounds an axis range outward to multiples of `step`. */
function niceRange(lo: number, hi: number): [number, number, number] {
  const span = Math.max(hi - lo, 1);
  const step = span > 40 ? 10 : span > 15 ? 5 : span > 6 ? 2 : 1;
  const a = Math.max(0, Math.floor((lo - span * 0.08) / step) * step);
  const b = Math.min(100, Math.ceil((hi + span * 0.08) / step) * step);
  return [a, b === a ? a + step : b, step];
}

/** The plot as an SVG document. `title` goes above the axes. */
export function retentionSvg(rows: readonly RetentionPoint[], title = 'Class vs context retention of k nearest neighbours'): string {
  const W = 720;
  const H = 520;
  const m = { l: 70, r: 180, t: 50, b: 60 };
  const pts = rows.filter((r) => Number.isFinite(r.classRetention) && Number.isFinite(r.contextRetention));
  const xs = pts.map((r) => r.contextRetention);
  const ys = pts.map((r) => r.classRetention);
  const [x0, x1, xs_] = niceRange(xs.length ? Math.min(...xs) : 0, xs.length ? Math.max(...xs) : 100);
  const [y0, y1, ys_] = niceRange(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 100);
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="${(m.l + W - m.r) / 2}" y="28" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  for (let x = x0; x <= x1 + 1e-9; x += xs_) {
    o.push(`<line x1="${px(x)}" y1="${m.t}" x2="${px(x)}" y2="${H - m.b}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${px(x)}" y="${H - m.b + 18}" text-anchor="middle">${x}</text>`);
  }
  for (let y = y0; y <= y1 + 1e-9; y += ys_) {
    o.push(`<line x1="${m.l}" y1="${py(y)}" x2="${W - m.r}" y2="${py(y)}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${m.l - 8}" y="${py(y) + 4}" text-anchor="end">${y}</text>`);
  }
  o.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#333"/>`);
  o.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 18}" text-anchor="middle">context retention (%)</text>`);
  o.push(`<text transform="translate(20 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">class retention (%)</text>`);
  const backbones = [...new Set(pts.map((r) => r.backbone))];
  backbones.forEach((b, bi) => {
    const c = COLOURS[bi % COLOURS.length]!;
    const line = pts.filter((r) => r.backbone === b).sort((p, q) => p.k - q.k);
    o.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${line.map((r) => `${px(r.contextRetention).toFixed(1)},${py(r.classRetention).toFixed(1)}`).join(' ')}"/>`);
    for (const r of line) {
      o.push(`<circle cx="${px(r.contextRetention).toFixed(1)}" cy="${py(r.classRetention).toFixed(1)}" r="4.5" fill="${c}"/>`);
      o.push(`<text x="${(px(r.contextRetention) + 7).toFixed(1)}" y="${(py(r.classRetention) - 6).toFixed(1)}" fill="${c}" font-size="11">k=${r.k}</text>`);
    }
    const ly = m.t + 10 + bi * 22;
    o.push(`<line x1="${W - m.r + 16}" y1="${ly}" x2="${W - m.r + 40}" y2="${ly}" stroke="${c}" stroke-width="2"/>`);
    o.push(`<circle cx="${W - m.r + 28}" cy="${ly}" r="4.5" fill="${c}"/>`);
    o.push(`<text x="${W - m.r + 46}" y="${ly + 4}">${esc(b)}</text>`);
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}

/** Renders an SVG document to PNG bytes with sharp (librsvg). */
export async function svgToPng(svg: string, density = 144): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density }).png().toBuffer();
}
