/**
 * The report of a run: the result table (src/eval/table.ts, computed once) written once each
 * to report.md (with the paired table and the run's sections: selection quality, the
 * backbones' retention, self-supervised pretraining), report.csv, report.json, and a static
 * offline HTML page with the same table, the Figure-10 plots (SVG + PNG), the retention table
 * and plot (Figure 7), the retrieved neighbours of each seed image per backbone, and each DCD
 * row's wrongly labelled picks.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { z } from 'zod';
import path from 'node:path';
import sharp from 'sharp';
import { ConfigError, DataError } from '../core/errors.js';
import { atomicWriteFile, atomicWriteJson } from '../core/fsutil.js';
import { selectionQualityMarkdown, type SelectionQuality } from './selection-quality.js';
import { aggregate, COLUMNS, csvTable, formatCell, HEADERS, markdownTable, meanStd, pairedGaps, pairedTable, pairedTableMarkdown, rowNames, sliceTableMarkdown, type RowResult, type SliceTable } from './table.js';
import { mapFragment, sliceGalleryFragment, type SliceGalleryInput } from '../analysis/slices-html.js';
import type { MapData } from '../analysis/projection.js';

/** Per-class result of one run (Figure 10): accuracy (fraction) on the class's evaluation images, images selected for it. */
export type ClassResult = z.infer<typeof ClassResultSchema>;

/** A run's per-class results under its row name (what the Figure-10 plots read). */
export type PerClassRun = { method: string; perClass?: ClassResult[] };

/** One retrieved image; `path` is copied as a thumbnail into the report's images folder. */
export type RetrievedImage = z.infer<typeof Img>;

/**
 * The wrongly labelled picks of one DCD row (weak label ≠ the true class the pool records): `checked`
 * picks have a known true class, `wrong` of them a wrong weak label (may exceed `images`, a sample of
 * them labelled "weak → true"); `title` heads the list (default: the method).
 */
export type WrongPicks = z.infer<typeof WrongPicksSchema>;

/** Retrieval examples for the HTML report: per seed image its neighbours per backbone, nearest first; per DCD row its wrong picks. */
export type RetrievalExamples = z.infer<typeof RetrievalSchema>;

/**
 * One row of the backbones' retention table (paper Fig. 7): retentions in percent (null where
 * undefined), over the images with a known class / an annotated context (the queries).
 */
export type RetentionRow = z.infer<typeof RetentionRowSchema>;

/**
 * The report's retention section: class and context retention of each backbone's k nearest neighbours
 * in image set `set` under context rule `rule`, the plot's PNG `plot` (copied into the report's images/
 * folder) and how report.md names it (`plotRef`, e.g. a path relative to the run folder; none: not named).
 */
export type RetentionSection = z.infer<typeof RetentionSchema> & { plotRef?: string };

/** One self-supervised pretraining run of a backbone (the report's pretraining table). */
export interface PretrainingRow {
  backbone: string;
  method: string;
  data: string;
  images: number;
  steps: number;
  /** Mean loss over the first and the last 10% of the steps (null: not finite, as JSON keeps NaN). */
  lossFirst: number | null;
  lossLast: number | null;
  /** DINO only: the teacher's entropy at the last step. */
  teacherEntropy?: number | null;
  resumedFrom: number;
}

/** Everything the report shows. */
export interface ReportInput {
  title?: string;
  /** One evaluated model per entry: a method and a seed (accuracies in percent). */
  results: RowResult[];
  /** What the seeds vary (one sentence, shown under the table's caption), e.g. only training over one fixed world. */
  seedNote?: string;
  retrieval?: RetrievalExamples;
  retention?: RetentionSection;
  /** Noise rate and context of the selections; `scope` ends the heading (e.g. `seed 0`). */
  quality?: { scope: string; rows: SelectionQuality[] };
  /** The ssl backbones' pretraining runs; `plots` are how report.md names their loss curves. */
  pretraining?: { rows: PretrainingRow[]; plots: string[] };
  /**
   * Failure slices (slices.enabled): heldout accuracy per slice for every method; in the HTML
   * page also the slice gallery (`images`: central seed images' paths by seed index) and the map.
   */
  slices?: { table: SliceTable; gallery?: Omit<SliceGalleryInput, 'thumb' | 'thumbSize'> & { images: Record<string, string> }; map?: MapData; mapTitle?: string };
}

// ---------------------------------------------------------------- plots (SVG)

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2'];

interface Axes {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}
const W = 480;
const H = 400;
const M = { l: 60, r: 20, t: 36, b: 50 };
const sx = (a: Axes, x: number) => M.l + ((x - a.x0) / (a.x1 - a.x0 || 1)) * (W - M.l - M.r);
const sy = (a: Axes, y: number) => H - M.b - ((y - a.y0) / (a.y1 - a.y0 || 1)) * (H - M.t - M.b);
const f = (v: number) => v.toFixed(1);

function frame(a: Axes, title: string, xl: string, yl: string, xTicks: number[], yTicks: number[]): string {
  const parts = [
    `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-family="sans-serif" font-size="15">${esc(title)}</text>`,
    `<rect x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" fill="none" stroke="#333"/>`,
  ];
  for (const t of xTicks)
    parts.push(`<line x1="${f(sx(a, t))}" y1="${H - M.b}" x2="${f(sx(a, t))}" y2="${H - M.b + 5}" stroke="#333"/><text x="${f(sx(a, t))}" y="${H - M.b + 18}" text-anchor="middle" font-family="sans-serif" font-size="11">${+t.toFixed(2)}</text>`);
  for (const t of yTicks)
    parts.push(`<line x1="${M.l - 5}" y1="${f(sy(a, t))}" x2="${M.l}" y2="${f(sy(a, t))}" stroke="#333"/><text x="${M.l - 8}" y="${f(sy(a, t) + 4)}" text-anchor="end" font-family="sans-serif" font-size="11">${+t.toFixed(2)}</text>`);
  parts.push(`<text x="${(M.l + W - M.r) / 2}" y="${H - 12}" text-anchor="middle" font-family="sans-serif" font-size="13">${esc(xl)}</text>`);
  parts.push(`<text transform="translate(16 ${(M.t + H - M.b) / 2}) rotate(-90)" text-anchor="middle" font-family="sans-serif" font-size="13">${esc(yl)}</text>`);
  return parts.join('\n');
}

const svgDoc = (body: string) => `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">\n${body}\n</svg>\n`;

/** Ticks at a "nice" step (1, 2 or 5 × 10^k) covering [lo, hi]. */
function ticks(lo: number, hi: number, n = 5): number[] {
  const raw = (hi - lo) / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

/** Mean per class of `perClass` over the runs of `method`. */
export function perClassMean(runs: readonly PerClassRun[], method: string): Map<number, { acc: number; selected: number; name?: string }> {
  const acc = new Map<number, { acc: number[]; sel: number[]; name?: string }>();
  for (const r of runs)
    if (r.method === method)
      for (const c of r.perClass ?? []) {
        const e = acc.get(c.label) ?? { acc: [], sel: [], ...(c.name ? { name: c.name } : {}) };
        e.acc.push(c.acc);
        e.sel.push(c.selected);
        acc.set(c.label, e);
      }
  return new Map([...acc].map(([k, v]) => [k, { acc: meanStd(v.acc).mean, selected: meanStd(v.sel).mean, ...(v.name ? { name: v.name } : {}) }]));
}

/** Least-squares line y = a + b·x. */
export function linearFit(xs: readonly number[], ys: readonly number[]): { a: number; b: number } {
  const n = xs.length;
  const mx = xs.reduce((s, v) => s + v, 0) / n;
  const my = ys.reduce((s, v) => s + v, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const b = sxx > 0 ? sxy / sxx : 0;
  return { a: my - b * mx, b };
}

/**
 * Figure 10 (left): per-class accuracy of `dcd` (y) against `random` (x), the y = x
 * line, marker area proportional to the class's selected count under `dcd`.
 */
export function plotDcdVsRandom(runs: readonly PerClassRun[], dcd: string, random = 'random'): string | undefined {
  const a = perClassMean(runs, dcd);
  const b = perClassMean(runs, random);
  const labels = [...a.keys()].filter((k) => b.has(k)).sort((x, y) => x - y);
  if (!labels.length) return undefined;
  const ax: Axes = { x0: 0, x1: 1, y0: 0, y1: 1 };
  const maxSel = Math.max(1, ...labels.map((k) => a.get(k)!.selected));
  const pts = labels.map((k) => {
    const r = 3 + 9 * Math.sqrt(a.get(k)!.selected / maxSel);
    const name = a.get(k)!.name ?? String(k);
    return `<circle cx="${f(sx(ax, b.get(k)!.acc))}" cy="${f(sy(ax, a.get(k)!.acc))}" r="${f(r)}" fill="${COLORS[0]}" fill-opacity="0.55" stroke="${COLORS[0]}"><title>${esc(name)}: ${random} ${(100 * b.get(k)!.acc).toFixed(1)}%, ${dcd} ${(100 * a.get(k)!.acc).toFixed(1)}%, selected ${a.get(k)!.selected}</title></circle>`;
  });
  const diag = `<line x1="${f(sx(ax, 0))}" y1="${f(sy(ax, 0))}" x2="${f(sx(ax, 1))}" y2="${f(sy(ax, 1))}" stroke="#888" stroke-dasharray="5 4"/>`;
  const above = labels.filter((k) => a.get(k)!.acc > b.get(k)!.acc).length;
  const note = `<text x="${M.l + 8}" y="${M.t + 16}" font-family="sans-serif" font-size="11">${above}/${labels.length} classes above y = x; marker area ∝ selected</text>`;
  return svgDoc([frame(ax, `Per-class accuracy: ${dcd} vs ${random}`, `${random} accuracy`, `${dcd} accuracy`, ticks(0, 1), ticks(0, 1)), diag, ...pts, note].join('\n'));
}

/**
 * The part of the line y = a + b·x over [x0, x1] that lies inside y ∈ [0, 1]
 * (undefined when none does): a fit is drawn only where it is defined and visible.
 */
export function clipFit(a: number, b: number, x0: number, x1: number): { x0: number; y0: number; x1: number; y1: number } | undefined {
  let lo = x0;
  let hi = x1;
  if (b !== 0) {
    // x where the line crosses y = 0 and y = 1
    const [c0, c1] = [(0 - a) / b, (1 - a) / b].sort((p, q) => p - q) as [number, number];
    lo = Math.max(lo, c0);
    hi = Math.min(hi, c1);
  } else if (a < 0 || a > 1) return undefined;
  if (!(hi > lo)) return undefined;
  return { x0: lo, y0: a + b * lo, x1: hi, y1: a + b * hi };
}

/**
 * Figure 10 (right): per-class accuracy against selected count, one colour per method, with
 * each method's least-squares line drawn over that method's own range of x only. A method
 * whose points share one x (Complete adds the same pool to every class) has no slope to fit:
 * its line is left out and its legend entry says so.
 */
export function plotAccVsSelected(runs: readonly PerClassRun[], methods: readonly string[]): string | undefined {
  const series = methods.map((m) => ({ m, pts: [...perClassMean(runs, m).values()] })).filter((s) => s.pts.length > 0);
  if (!series.length) return undefined;
  const maxSel = Math.max(1, ...series.flatMap((s) => s.pts.map((p) => p.selected)));
  const ax: Axes = { x0: 0, x1: maxSel * 1.05, y0: 0, y1: 1 };
  const body: string[] = [frame(ax, 'Per-class accuracy vs selected images', 'selected images per class', 'accuracy', ticks(0, maxSel * 1.05), ticks(0, 1))];
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    for (const p of s.pts) body.push(`<circle cx="${f(sx(ax, p.selected))}" cy="${f(sy(ax, p.acc))}" r="4" fill="${c}" fill-opacity="0.6"/>`);
    const xs = s.pts.map((p) => p.selected);
    const [lo, hi] = [Math.min(...xs), Math.max(...xs)];
    // no x spread (within rounding of a mean over seeds): no line to fit
    const spread = hi - lo > 1e-9 * Math.max(1, hi);
    const fit = spread ? linearFit(xs, s.pts.map((p) => p.acc)) : undefined;
    const seg = fit && clipFit(fit.a, fit.b, lo, hi);
    if (seg)
      body.push(`<line class="fit" data-method="${esc(s.m)}" x1="${f(sx(ax, seg.x0))}" y1="${f(sy(ax, seg.y0))}" x2="${f(sx(ax, seg.x1))}" y2="${f(sy(ax, seg.y1))}" stroke="${c}" stroke-width="2"/>`);
    const legend = spread ? s.m : `${s.m} (one x: no fit)`;
    body.push(`<rect x="${W - M.r - 170}" y="${M.t + 8 + i * 18}" width="10" height="10" fill="${c}"/><text x="${W - M.r - 155}" y="${M.t + 17 + i * 18}" font-family="sans-serif" font-size="12">${esc(legend)}</text>`);
  });
  return svgDoc(body.join('\n'));
}

// ---------------------------------------------------------------- writing

/** A percentage of the retention table: `58.00`, or `n/a` where undefined. */
const pctCell = (v: number | null) => (v === null ? 'n/a' : v.toFixed(2));

/** Heading of the retention section. */
function retentionHeading(r: RetentionSection): string {
  return `Backbones: class and context retention of k nearest neighbours${r.set ? ` (${r.set} set, paper Fig. 7)` : ' (paper Fig. 7)'}`;
}

/** The retention table as Markdown (one row per backbone and k). */
export function retentionTableMarkdown(r: RetentionSection): string {
  return [
    `| backbone | k | class retention (%) | context retention (%${r.rule ? `, ${r.rule}` : ''}) | images with class | images with context |`,
    '|---|---:|---:|---:|---:|---:|',
    ...r.rows.map((x) => `| ${x.backbone} | ${x.k} | ${pctCell(x.classRetention)} | ${pctCell(x.contextRetention)} | ${x.classQueries} | ${x.contextQueries} |`),
  ].join('\n') + '\n';
}

/** "130 wrongly labelled of 1104 picks (11.8%); 12 shown", as far as the counts are known. */
function wrongCount(w: WrongPicks): string {
  const n = w.wrong ?? w.images.length;
  const of = w.checked !== undefined ? ` of ${w.checked} picks${w.checked > 0 ? ` (${((100 * n) / w.checked).toFixed(1)}%)` : ''}` : '';
  const shown = n > w.images.length ? `; ${w.images.length} shown` : '';
  return `${n} wrongly labelled${of}${shown}`;
}

/** Files written by {@link writeReport}, relative to its `outDir`. */
export interface ReportFiles {
  markdown: string;
  json: string;
  csv?: string;
  html?: string;
  /** The plots in the HTML page's images/ folder (Figure 10 as SVG + PNG, the retention plot). */
  plots: string[];
}

/** A thumbnail of `src` at `dst`, written atomically; false when `src` does not decode (a disk error throws). */
async function thumbnail(src: string, dst: string, size: number): Promise<boolean> {
  let png: Buffer;
  try {
    png = await sharp(src).resize(size, size, { fit: 'cover' }).png().toBuffer();
  } catch {
    return false;
  }
  await atomicWriteFile(dst, png);
  return true;
}

/** `### heading` and its text, after what comes before (one blank line between). */
const section = (before: string, heading: string, body: string) => `${before.trimEnd()}\n\n### ${heading}\n\n${body}`;

/** report.md: the result table, the paired table, then the run's sections. */
export function reportMarkdown(input: ReportInput, rows: ReturnType<typeof aggregate>, paired: ReturnType<typeof pairedTable>): string {
  let md = markdownTable(rows, input.title, input.seedNote) + (paired ? `\n${pairedTableMarkdown(paired)}` : '');
  if (input.quality)
    md = section(md, `Selections: noise rate and context of the debug-train picks (${input.quality.scope}; from the pool's true_label and context)`, `${selectionQualityMarkdown(input.quality.rows)}\n`);
  if (input.slices) md = `${md}\n${sliceTableMarkdown(input.slices.table)}`;
  const ret = input.retention;
  if (ret) md = section(md, retentionHeading(ret), `${retentionTableMarkdown(ret)}${ret.plotRef ? `\nPlot: \`${ret.plotRef}\` (in the run folder).\n` : ''}`);
  const pre = input.pretraining;
  if (pre?.rows.length)
    md = section(
      md,
      'Self-supervised pretraining of the ssl backbones (loss per step: loss.jsonl beside each plot)',
      `${pretrainingMarkdown(pre.rows)}\n${pre.plots.length ? `\nLoss curves: ${pre.plots.map((p) => `\`${p}\``).join(', ')} (in the run folder).\n` : ''}`,
    );
  return md;
}

/** The pretraining table as Markdown (one row per ssl backbone). */
export function pretrainingMarkdown(rows: readonly PretrainingRow[]): string {
  // a loss that was not finite reads back from JSON as null
  const f3 = (x: number | null) => (x === null ? 'NaN' : x.toFixed(3));
  return [
    '| backbone | method | data | images | steps | loss, first 10% | loss, last 10% | teacher entropy at end | resumed from step |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.backbone} | ${r.method} | ${r.data} | ${r.images} | ${r.steps} | ${f3(r.lossFirst)} | ${f3(r.lossLast)} | ${r.teacherEntropy === undefined ? '–' : f3(r.teacherEntropy)} | ${r.resumedFrom} |`,
    ),
  ].join('\n');
}

/**
 * Writes the report into `outDir`, each file once: `report.md` and `report.json` always,
 * `report.csv` and the HTML page (`report.html` and `images/`: plots as SVG + PNG,
 * thumbnails; in `htmlDir`, default `outDir`) where `formats` asks for them. The HTML refers
 * only to files in `images/`, so its folder can be copied and viewed offline.
 */
export async function writeReport(input: ReportInput, outDir: string, opts: { formats?: readonly string[]; htmlDir?: string; thumbSize?: number } = {}): Promise<ReportFiles> {
  if (input.results.length === 0) throw new ConfigError('report: no results given');
  const formats = opts.formats ?? ['md', 'csv', 'json', 'html'];
  const rows = aggregate(input.results);
  const gaps = pairedGaps(input.results, rows);
  const paired = pairedTable(gaps);
  await mkdir(outDir, { recursive: true });
  const files: ReportFiles = { markdown: 'report.md', json: 'report.json', plots: [] };
  await atomicWriteFile(path.join(outDir, files.markdown), reportMarkdown(input, rows, paired));
  if (formats.includes('csv')) {
    files.csv = 'report.csv';
    // per-slice rows follow in the same format, their column slice_<i>
    const st = input.slices?.table;
    await atomicWriteFile(path.join(outDir, files.csv), csvTable(rows) + (st ? csvTable(st.rows, st.columns.map((c) => c.key), false) : ''));
  }
  await atomicWriteJson(path.join(outDir, files.json), {
    title: input.title,
    ...(input.seedNote ? { seedNote: input.seedNote } : {}),
    columns: COLUMNS,
    rows,
    paired: gaps,
    results: input.results,
    ...(input.slices ? { slices: input.slices.table } : {}),
  });
  if (!formats.includes('html')) return files;

  const htmlDir = opts.htmlDir ?? outDir;
  const title = input.title ?? 'dcd report';
  const imgDir = path.join(htmlDir, 'images');
  await mkdir(imgDir, { recursive: true });
  const ret = input.retention?.rows.length ? input.retention : undefined;
  const names = rowNames(input.results);
  const runs: PerClassRun[] = input.results.flatMap((r, i) => (names[i] === null ? [] : [{ method: names[i]!, ...(r.perClass?.length ? { perClass: r.perClass } : {}) }]));
  const methods = rows.map((r) => r.name);
  const dcds = methods.filter((m) => m.startsWith('dcd-'));
  const plots: { name: string; svg: string; caption: string }[] = [];
  for (const d of dcds) {
    const svg = plotDcdVsRandom(runs, d);
    if (svg) plots.push({ name: `fig10-${d}-vs-random`, svg, caption: `Per-class accuracy, ${d} against random; marker area ∝ images selected for the class.` });
  }
  const sel = plotAccVsSelected(runs, methods.filter((m) => m !== 'original'));
  if (sel) plots.push({ name: 'fig10-acc-vs-selected', svg: sel, caption: 'Per-class accuracy against the number of selected images, with a least-squares line per method.' });
  for (const p of plots) {
    const svgFile = path.join(imgDir, `${p.name}.svg`);
    await atomicWriteFile(svgFile, p.svg);
    await atomicWriteFile(path.join(imgDir, `${p.name}.png`), await sharp(Buffer.from(p.svg)).png().toBuffer());
    files.plots.push(path.relative(outDir, svgFile), path.relative(outDir, path.join(imgDir, `${p.name}.png`)));
  }

  // thumbnails
  const size = opts.thumbSize ?? 96;
  let k = 0;
  const thumb = async (im: RetrievedImage): Promise<string> => {
    const name = `t${String(k++).padStart(5, '0')}.png`;
    const ok = await thumbnail(im.path, path.join(imgDir, name), size);
    return ok ? `images/${name}` : '';
  };
  const fig = (src: string, cap: string) =>
    src ? `<figure><img src="${esc(src)}" width="${size}" height="${size}" alt="${esc(cap)}"><figcaption>${esc(cap)}</figcaption></figure>` : `<figure class="missing"><div>unreadable</div><figcaption>${esc(cap)}</figcaption></figure>`;
  const retrievalHtml: string[] = [];
  if (input.retrieval?.seeds.length) {
    const backbones = [...new Set(input.retrieval.seeds.flatMap((s) => Object.keys(s.neighbours)))];
    retrievalHtml.push(`<h2>Retrieved neighbours per seed image</h2><table class="nn"><tr><th>seed</th>${backbones.map((b) => `<th>${esc(b)}</th>`).join('')}</tr>`);
    for (const s of input.retrieval.seeds) {
      const cells: string[] = [];
      for (const b of backbones) {
        const figs: string[] = [];
        for (const n of s.neighbours[b] ?? []) figs.push(fig(await thumb(n), `${n.label ? n.label + ' · ' : ''}d=${n.distance !== undefined ? n.distance.toFixed(3) : '?'}`));
        cells.push(`<td><div class="row">${figs.join('')}</div></td>`);
      }
      retrievalHtml.push(`<tr><td>${fig(await thumb(s.image), `${s.image.id}${s.image.label ? ' · ' + s.image.label : ''}`)}</td>${cells.join('')}</tr>`);
    }
    retrievalHtml.push('</table>');
  }
  if (input.retrieval?.wrong?.length) {
    retrievalHtml.push(
      '<h2>Wrongly labelled picks</h2><p>Per DCD row, the picks whose weak label differs from the true class the pool records (weak label → true class; none = no object).</p>',
    );
    for (const w of input.retrieval.wrong) {
      const figs: string[] = [];
      for (const im of w.images) figs.push(fig(await thumb(im), `${im.id}${im.label ? ' · ' + im.label : ''}`));
      retrievalHtml.push(`<h3>${esc(w.title ?? w.method)}: ${esc(wrongCount(w))}</h3>${figs.length ? `<div class="row wrap">${figs.join('')}</div>` : ''}`);
    }
  }
  let slicesHtml = '';
  const sl = input.slices;
  if (sl) {
    const t = sl.table;
    slicesHtml = `<h2>Heldout accuracy per failure slice (${esc(t.scope)})</h2><table class="acc"><tr><th>method</th><th>n</th>${t.columns.map((c) => `<th>${esc(c.header)}</th>`).join('')}</tr>
${t.rows.map((r) => `<tr><td>${esc(r.name)}</td><td>${r.n}</td>${t.columns.map((c) => `<td>${esc(formatCell(r.cells[c.key] ?? null))}</td>`).join('')}</tr>`).join('\n')}
</table>`;
    if (t.picks?.length)
      slicesHtml += `<table class="acc"><tr><th>debug-train picks</th>${t.columns.map((_, i) => `<th>Slice ${i + 1}</th>`).join('')}</tr>
${t.picks.map((p) => `<tr><td>${esc(p.name)}</td>${p.counts.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n')}
</table>`;
    if (sl.gallery) {
      const g = sl.gallery;
      slicesHtml += `<h2>Failure slices</h2>${await sliceGalleryFragment({ ...g, thumbSize: size, thumb: (i) => (g.images[i] ? thumb({ id: String(i), path: g.images[i]! }) : Promise.resolve('')) })}`;
    }
    const classNames = sl.gallery?.classNames;
    if (sl.map) slicesHtml += `<h2>Map of the selection</h2>${mapFragment(sl.map, { ...(sl.mapTitle ? { title: sl.mapTitle } : {}), ...(classNames ? { classNames } : {}) })}`;
  }
  let retentionHtml = '';
  if (ret) {
    let plot = '';
    if (ret.plot) {
      try {
        await atomicWriteFile(path.join(imgDir, 'retention.png'), await readFile(ret.plot));
      } catch (e) {
        throw new DataError(`report: cannot copy the retention plot ${ret.plot} (${(e as Error).message}); rerun the retention stage, or leave out retention.plot`);
      }
      files.plots.push(path.relative(outDir, path.join(imgDir, 'retention.png')));
      plot = `<figure class="wide"><img src="images/retention.png" width="720" height="520" alt="retention plot"><figcaption>Class retention against context retention, one point per k.</figcaption></figure>`;
    }
    retentionHtml = `<h2>${esc(retentionHeading(ret))}</h2><div class="plots"><table class="acc"><tr><th>backbone</th><th>k</th><th>class retention (%)</th><th>context retention (%${ret.rule ? `, ${esc(ret.rule)}` : ''})</th><th>images with class</th><th>images with context</th></tr>
${ret.rows.map((r) => `<tr><td>${esc(r.backbone)}</td><td>${r.k}</td><td>${pctCell(r.classRetention)}</td><td>${pctCell(r.contextRetention)}</td><td>${r.classQueries}</td><td>${r.contextQueries}</td></tr>`).join('\n')}
</table>${plot}</div>`;
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font-family:sans-serif;margin:24px;color:#222}
table.acc{border-collapse:collapse}table.acc td,table.acc th{border:1px solid #bbb;padding:4px 8px;text-align:right;white-space:nowrap}
table.acc td:first-child,table.acc th:first-child{text-align:left}
table.nn{border-collapse:collapse}table.nn td,table.nn th{border:1px solid #ddd;padding:4px;vertical-align:top}
.row{display:flex;gap:4px}.wrap{flex-wrap:wrap}
figure{margin:0;text-align:center;font-size:11px}figure.missing div{width:${size}px;height:${size}px;background:#eee;line-height:${size}px}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.plots figure{font-size:13px;max-width:480px}.plots figure.wide{max-width:720px}
</style></head><body>
<h1>${esc(title)}</h1>
<p>Accuracy (%)${rows.some((r) => r.n > 1) ? '; mean ± std over n seeds' : ''}. “Incorrectly classified”: the debug-seed and debug-heldout sets.${input.seedNote ? ` ${esc(input.seedNote)}` : ''}</p>
<table class="acc">
<tr><th></th><th></th><th colspan="2">incorrectly classified</th><th colspan="3">subset classes</th><th colspan="3">all classes</th></tr>
<tr><th>method</th><th>n</th>${COLUMNS.map((c) => `<th>${esc(HEADERS[c])}</th>`).join('')}</tr>
${rows.map((r) => `<tr><td>${esc(r.name)}</td><td>${r.n}</td>${COLUMNS.map((c) => `<td>${esc(formatCell(r.cells[c]!))}</td>`).join('')}</tr>`).join('\n')}
</table>
${
  paired
    ? `<h3>Paired differences per seed</h3><table class="acc"><tr><th>difference</th>${paired.columns.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>
${paired.rows.map((r) => `<tr><td>${esc(r.name)}</td>${r.cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n')}
</table><p>${esc(paired.note)}</p>`
    : ''
}
${plots.length ? `<h2>Per-class analysis (Figure 10)</h2><div class="plots">${plots.map((p) => `<figure><img src="images/${p.name}.png" width="480" height="400" alt="${esc(p.name)}"><figcaption>${esc(p.caption)} (<a href="images/${p.name}.svg">SVG</a>)</figcaption></figure>`).join('')}</div>` : ''}
${slicesHtml}
${retentionHtml}
${retrievalHtml.join('\n')}
</body></html>
`;
  files.html = path.relative(outDir, path.join(htmlDir, 'report.html'));
  await atomicWriteFile(path.join(outDir, files.html), html);
  return files;
}

const Acc = z.number().min(0).max(1);
const SetAcc = z.object({ mfreq: Acc, compl: Acc, inet: Acc });
const Img = z.object({ id: z.string(), path: z.string(), distance: z.number().optional(), label: z.string().optional() });
const ClassResultSchema = z.object({ label: z.number().int(), name: z.string().optional(), acc: Acc, selected: z.number().min(0) });
const WrongPicksSchema = z.object({
  method: z.string().min(1),
  title: z.string().optional(),
  checked: z.number().int().min(0).optional(),
  wrong: z.number().int().min(0).optional(),
  images: z.array(Img),
});
const RetrievalSchema = z.object({
  seeds: z.array(z.object({ image: Img, neighbours: z.record(z.string(), z.array(Img)) })),
  wrong: z.array(WrongPicksSchema).optional(),
});
const RetentionRowSchema = z.object({
  backbone: z.string().min(1),
  k: z.number().int().min(1),
  classRetention: z.number().min(0).max(100).nullable(),
  contextRetention: z.number().min(0).max(100).nullable(),
  classQueries: z.number().int().min(0),
  contextQueries: z.number().int().min(0),
});
const RetentionSchema = z.object({
  set: z.string().optional(),
  rule: z.string().optional(),
  rows: z.array(RetentionRowSchema),
  plot: z.string().optional(),
});
/**
 * Run-time schema of the `dcd report --results` JSON file: runs with accuracies as fractions
 * (`seedAcc`, `heldoutAcc`, `subset` and `all` on MFreq / Compl. / INet), the rest as
 * {@link ReportInput}. {@link readReportInput} turns it into a ReportInput (percent).
 */
export const ReportInputSchema = z.object({
  title: z.string().optional(),
  seedNote: z.string().optional(),
  runs: z
    .array(
      z.object({
        method: z.string().min(1),
        seed: z.number().optional(),
        seedAcc: Acc,
        heldoutAcc: Acc,
        subset: SetAcc,
        all: SetAcc,
        perClass: z.array(ClassResultSchema).optional(),
      }),
    )
    .min(1),
  retrieval: RetrievalSchema.optional(),
  retention: RetentionSchema.optional(),
});

/** Reads and validates a results JSON file; errors name the file and the path of the bad key. */
export async function readReportInput(file: string): Promise<ReportInput> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new DataError(`${file}: not readable JSON (${(e as Error).message})`);
  }
  const r = ReportInputSchema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).slice(0, 10);
    throw new ConfigError(`${file}: not a valid report input:\n  ${issues.join('\n  ')}\nExpected {runs: [{method, seedAcc, heldoutAcc, subset: {mfreq, compl, inet}, all: {...}}], ...} with accuracies as fractions.`);
  }
  const { runs, ...rest } = r.data;
  const pc = (v: number) => 100 * v;
  // a run without a seed counts as the next seed of its method (0, 1, … in file order)
  const unseeded = new Map<string, number>();
  const input: ReportInput = {
    ...rest,
    results: runs.map((x) => ({
      method: x.method,
      seed: x.seed ?? unseeded.set(x.method, (unseeded.get(x.method) ?? -1) + 1).get(x.method)!,
      variant: '',
      metrics: {
        seed: pc(x.seedAcc),
        heldout: pc(x.heldoutAcc),
        mfreq_sub: pc(x.subset.mfreq),
        compl_sub: pc(x.subset.compl),
        test_sub: pc(x.subset.inet),
        mfreq_all: pc(x.all.mfreq),
        compl_all: pc(x.all.compl),
        test_all: pc(x.all.inet),
      },
      ...(x.perClass ? { perClass: x.perClass } : {}),
    })),
  };
  // relative image paths are relative to the results file
  const base = path.dirname(path.resolve(file));
  const fix = (im: RetrievedImage) => (im.path = path.resolve(base, im.path));
  input.retrieval?.seeds.forEach((s) => {
    fix(s.image);
    Object.values(s.neighbours).forEach((l) => l.forEach(fix));
  });
  input.retrieval?.wrong?.forEach((w) => w.images.forEach(fix));
  if (input.retention?.plot) input.retention.plot = path.resolve(base, input.retention.plot);
  return input;
}
