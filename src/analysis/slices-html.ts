/**
 * HTML fragments the report can include: the map of a feature space (inline SVG, points
 * coloured by set, each pick linked to its seed image on hover — CSS only, no script) and
 * the failure-slice gallery (per slice: size, class mix, context, per-method accuracy and
 * its most central images). Both are self-contained: their styles travel with them, scoped
 * by a class, and images are whatever `src` the caller's thumbnail function returns.
 */
import type { MapData, MapPoint, MapSet } from './projection.js';
import type { FailureSlices, SliceAccuracy } from './slices.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Colour and radius of each set on the map. */
export const MAP_STYLE: Record<MapSet, { color: string; r: number; name: string }> = {
  train: { color: '#c7c7c7', r: 2, name: 'train (sample)' },
  pool: { color: '#9ecae1', r: 2, name: 'pool (sample)' },
  heldout: { color: '#ff7f0e', r: 3, name: 'debug-heldout' },
  pick: { color: '#2ca02c', r: 3, name: 'picks' },
  seed: { color: '#d62728', r: 4, name: 'debug-seed' },
};

const MAP_CSS = `.dcd-map svg{background:#fff;border:1px solid #ddd}.dcd-map .link{stroke:#333;stroke-width:1;opacity:.6;visibility:hidden}.dcd-map g.hov:hover .link{visibility:visible}.dcd-map g.hov:hover circle{stroke:#000;stroke-width:1.5}.dcd-map .legend{font:12px sans-serif}`;

/**
 * The map as an HTML fragment (`<figure class="dcd-map">` with an inline SVG).
 * Hovering a pick shows the line to its seed; hovering a seed shows the lines to all its picks.
 */
export function mapFragment(map: MapData, opts: { title?: string; classNames?: readonly string[]; width?: number; height?: number } = {}): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 540;
  const pad = 24;
  const legendH = 22;
  const pts = map.points;
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * pad);
  const sy = (y: number) => legendH + pad + (1 - (y - y0) / (y1 - y0 || 1)) * (H - legendH - 2 * pad);
  const f = (v: number) => v.toFixed(1);
  const cls = (y: number | undefined) => (y === undefined ? '' : ` · ${y >= 0 ? (opts.classNames?.[y] ?? `class ${y}`) : 'none'}`);
  const circle = (p: MapPoint) => {
    const st = MAP_STYLE[p.set];
    return `<circle cx="${f(sx(p.x))}" cy="${f(sy(p.y))}" r="${st.r}" fill="${st.color}"><title>${esc(`${st.name}: ${p.id}${cls(p.label)}${p.seedId ? ` → seed ${p.seedId}` : ''}`)}</title></circle>`;
  };
  const seedAt = new Map(pts.filter((p) => p.set === 'seed').map((p) => [p.id, p]));
  const line = (a: MapPoint, b: MapPoint) => `<line class="link" x1="${f(sx(a.x))}" y1="${f(sy(a.y))}" x2="${f(sx(b.x))}" y2="${f(sy(b.y))}"/>`;
  const picksOf = new Map<string, MapPoint[]>();
  for (const p of pts) {
    if (p.set !== 'pick' || !p.seedId || !seedAt.has(p.seedId)) continue;
    if (!picksOf.has(p.seedId)) picksOf.set(p.seedId, []);
    picksOf.get(p.seedId)!.push(p);
  }
  const body: string[] = [];
  for (const set of ['train', 'pool', 'heldout'] as const) for (const p of pts) if (p.set === set) body.push(circle(p));
  for (const p of pts)
    if (p.set === 'pick') {
      const s = p.seedId ? seedAt.get(p.seedId) : undefined;
      body.push(s ? `<g class="hov">${line(p, s)}${circle(p)}</g>` : circle(p));
    }
  for (const p of pts) if (p.set === 'seed') body.push(`<g class="hov">${(picksOf.get(p.id) ?? []).map((q) => line(p, q)).join('')}${circle(p)}</g>`);
  const present = (Object.keys(MAP_STYLE) as MapSet[]).filter((s) => map.counts[s]);
  // entries side by side, each as wide as its text (≈ 7 px a character at 12 px sans-serif)
  let lx = pad;
  const legend = present
    .map((s) => {
      const c = map.counts[s]!;
      const text = `${MAP_STYLE[s].name} (${c.shown === c.total ? `${c.total}` : `${c.shown} of ${c.total}`})`;
      const g = `<g transform="translate(${lx},14)"><circle r="4" fill="${MAP_STYLE[s].color}"/><text x="8" y="4">${esc(text)}</text></g>`;
      lx += 8 + 7 * text.length + 16;
      return g;
    })
    .join('');
  const caption = `${opts.title ? esc(opts.title) + ': ' : ''}first two principal components (${(100 * map.explained[0]).toFixed(1)}% and ${(100 * map.explained[1]).toFixed(1)}% of the variance). Hover a pick or a seed image to see which seed each pick went to.`;
  return `<figure class="dcd-map"><style>${MAP_CSS}</style><svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><g class="legend">${legend}</g>${body.join('')}</svg><figcaption>${caption}</figcaption></figure>`;
}

const GALLERY_CSS = `.dcd-slices .slice{margin:1em 0;border-top:1px solid #ddd}.dcd-slices .row{display:flex;flex-wrap:wrap;gap:4px}.dcd-slices figure{margin:0;font:11px sans-serif;text-align:center}.dcd-slices table{border-collapse:collapse;font-size:13px}.dcd-slices td,.dcd-slices th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}`;

/** What {@link sliceGalleryFragment} shows beside the slices. */
export interface SliceGalleryInput {
  slices: FailureSlices;
  /** Seed ids, in the order the slices index them. */
  seedIds: readonly string[];
  /** Class of each seed image (shown under its thumbnail), optional. */
  seedLabels?: ArrayLike<number>;
  classNames?: readonly string[];
  /** Per method: heldout accuracy per slice (from `sliceAccuracy`). */
  accuracy?: { method: string; rows: SliceAccuracy[] }[];
  /** Heldout images per slice. */
  heldoutCounts?: ArrayLike<number>;
  /** Thumbnail `src` of a seed image ('' = unreadable). */
  thumb: (seedIndex: number) => Promise<string>;
  thumbSize?: number;
}

/** The slice gallery as an HTML fragment (`<section class="dcd-slices">`). */
export async function sliceGalleryFragment(g: SliceGalleryInput): Promise<string> {
  const size = g.thumbSize ?? 96;
  const name = (y: number) => (y >= 0 ? (g.classNames?.[y] ?? `class ${y}`) : 'none');
  const pct = (x: number | null) => (x === null ? '—' : `${(100 * x).toFixed(1)}%`);
  const parts: string[] = [];
  const crit = g.slices.criterion;
  const how =
    crit.kind === 'silhouette'
      ? `the number of slices (${g.slices.slices.length}) has the highest mean silhouette over ${crit.scores!.map((s) => `k=${s.k}: ${s.silhouette.toFixed(3)}`).join(', ')}`
      : `the number of slices (${g.slices.slices.length}) was set in the config`;
  parts.push(`<p>Debug-seed failures clustered by seeded k-means over ${g.slices.normalize ? 'L2-normalised' : 'raw'} features (seed ${g.slices.seed}); ${esc(how)}. Each heldout image counts in its nearest slice.</p>`);
  for (const s of g.slices.slices) {
    const mix = s.classMix.map((c) => `${esc(name(c.value))} ${c.count}`).join(', ');
    const ctx = s.context ? `; context ${esc(s.context.value)} (${(100 * s.context.share).toFixed(0)}%)` : '';
    const held = g.heldoutCounts ? `; ${g.heldoutCounts[s.index]} heldout image(s)` : '';
    const figs: string[] = [];
    for (const i of s.central) {
      const src = await g.thumb(i);
      const label = esc(g.seedLabels ? `${g.seedIds[i]} · ${name(g.seedLabels[i]!)}` : g.seedIds[i]!);
      figs.push(src ? `<figure><img src="${esc(src)}" width="${size}" height="${size}" alt="${label}"><figcaption>${label}</figcaption></figure>` : `<figure class="missing"><div>unreadable</div><figcaption>${label}</figcaption></figure>`);
    }
    const acc = g.accuracy?.length
      ? `<table><tr><th>method</th><th>heldout accuracy</th><th>images</th></tr>${g.accuracy
          .map((a) => {
            const r = a.rows[s.index];
            return `<tr><td>${esc(a.method)}</td><td>${pct(r?.accuracy ?? null)}</td><td>${r?.n ?? 0}</td></tr>`;
          })
          .join('')}</table>`
      : '';
    parts.push(`<div class="slice"><h3>Slice ${s.index + 1}: ${s.members.length} seed image(s)</h3><p>${mix}${ctx}${held}</p>${acc}<div class="row">${figs.join('')}</div></div>`);
  }
  return `<section class="dcd-slices"><style>${GALLERY_CSS}</style>${parts.join('')}</section>`;
}
