/**
 * The paper-layout report (Tables 1, 4, 5 and Figure 10): a table of accuracies per
 * method (mean ± std over seeds), written as Markdown, CSV, JSON and a terminal table;
 * SVG + PNG plots; and a static offline HTML page with the table, the plots, the backbones'
 * retention table and plot (Figure 7), the retrieved neighbours of each seed image per
 * backbone, and each DCD row's wrongly labelled picks.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { z } from 'zod';
import path from 'node:path';
import sharp from 'sharp';
import { ConfigError, DataError } from '../core/errors.js';
import { atomicWriteFile, atomicWriteJson } from '../core/fsutil.js';

/** Accuracies (fractions in [0, 1]) on the three evaluation sets. */
export interface SetAccuracies {
  mfreq: number;
  compl: number;
  inet: number;
}

/** Per-class result of one run (Figure 10). */
export interface ClassResult {
  label: number;
  name?: string;
  /** Accuracy on the class's evaluation images (fraction). */
  acc: number;
  /** Images selected for (added to) this class. */
  selected: number;
}

/** One trained model: a method and a seed. */
export interface MethodRun {
  /** `original`, `complete`, `random`, `dcd-<backbone>`. */
  method: string;
  /** Seed of the run (several seeds → mean ± std). */
  seed?: number;
  /** Accuracy on the debug-seed set S and debug-heldout set H. */
  seedAcc: number;
  heldoutAcc: number;
  /** MFreq / Compl. / INet restricted to the class subset. */
  subset: SetAccuracies;
  /** The same on all classes. */
  all: SetAccuracies;
  perClass?: ClassResult[];
}

/** One retrieved image. */
export interface RetrievedImage {
  id: string;
  /** Image file (copied as a thumbnail into the report's images folder). */
  path: string;
  distance?: number;
  label?: string;
}

/** The wrongly labelled picks of one DCD row: picks whose weak label differs from the true class the pool records. */
export interface WrongPicks {
  /** The row, e.g. `dcd-broad_cnn`. */
  method: string;
  /** Heading of this row's list (default: the method). */
  title?: string;
  /** Picks whose true class the pool knows (the denominator). */
  checked?: number;
  /** Of those, picks whose weak label is wrong (may exceed `images.length`, which is a sample). */
  wrong?: number;
  /** Some of them (a sample; the pipeline takes a few per weak class), labelled "weak → true". */
  images: RetrievedImage[];
}

/** Retrieval examples for the HTML report. */
export interface RetrievalExamples {
  /** Per seed image, its neighbours per backbone (backbone → nearest first). */
  seeds: { image: RetrievedImage; neighbours: Record<string, RetrievedImage[]> }[];
  /** Per DCD row, its wrongly labelled picks. */
  wrong?: WrongPicks[];
}

/** One row of the backbones' retention table (paper Fig. 7); retentions in percent, null where undefined. */
export interface RetentionRow {
  backbone: string;
  k: number;
  classRetention: number | null;
  contextRetention: number | null;
  /** Images with a known class / with an annotated context (the queries). */
  classQueries: number;
  contextQueries: number;
}

/** The report's retention section: class and context retention of each backbone's k nearest neighbours. */
export interface RetentionSection {
  /** The image set the neighbours were searched in (e.g. `mfreq`). */
  set?: string;
  /** The context rule (`lenient` | `strict`). */
  rule?: string;
  rows: RetentionRow[];
  /** PNG of the plot (copied into the report's images/ folder). */
  plot?: string;
}

/** Paired per-seed differences between rows, already formatted (src/pipeline/table.ts computes them). */
export interface PairedTable {
  /** Column headers after the first (e.g. `Seed`, `Heldout`, `INet (all)`). */
  columns: string[];
  rows: { name: string; cells: string[] }[];
  /** What the cells mean (printed under the table). */
  note: string;
}

/** A Markdown table whose first column is left-aligned and the others right-aligned (numbers). */
export function markdownGrid(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ':---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The paired table as Markdown, with its heading and note. */
export function pairedTableMarkdown(t: PairedTable): string {
  const grid = markdownGrid(['difference', ...t.columns], t.rows.map((r) => [r.name, ...r.cells]));
  return ['### Paired differences per seed', '', grid, '', t.note, ''].join('\n');
}

/** Everything the report shows. */
export interface ReportInput {
  title?: string;
  runs: MethodRun[];
  /** What the seeds vary (one sentence, shown under the table's caption), e.g. only training over one fixed world. */
  seedNote?: string;
  /** Paired per-seed differences (shown under the table). */
  paired?: PairedTable;
  retrieval?: RetrievalExamples;
  retention?: RetentionSection;
}

/** A cell: mean and sample std over seeds (std 0 when n = 1). */
export interface Cell {
  mean: number;
  std: number;
  n: number;
}

/** The aggregated table: one row per method, in the paper's order. */
export interface ReportTable {
  columns: string[];
  rows: { method: string; n: number; cells: Cell[] }[];
}

/** Column names, in the paper's order. */
export const REPORT_COLUMNS = ['Seed', 'Heldout', 'MFreq (subset)', 'Compl. (subset)', 'INet (subset)', 'MFreq (all)', 'Compl. (all)', 'INet (all)'];

function values(r: MethodRun): number[] {
  return [r.seedAcc, r.heldoutAcc, r.subset.mfreq, r.subset.compl, r.subset.inet, r.all.mfreq, r.all.compl, r.all.inet];
}

/** Method order: original, complete, random, then dcd-* in first-seen order, then others. */
function methodRank(m: string): number {
  if (m === 'original') return 0;
  if (m === 'complete') return 1;
  if (m === 'random') return 2;
  if (m.startsWith('dcd-')) return 3;
  return 4;
}

/** Aggregates runs into the table (mean ± sample std over the runs of each method). */
export function reportTable(runs: readonly MethodRun[]): ReportTable {
  if (runs.length === 0) throw new ConfigError('report: no runs given');
  const by = new Map<string, MethodRun[]>();
  for (const r of runs) {
    // NaN: a set the run did not evaluate (eval.sets leaves it out); shown as "–"
    for (const v of values(r)) if (!Number.isNaN(v) && (!Number.isFinite(v) || v < 0 || v > 1)) throw new ConfigError(`report: run ${r.method} (seed ${r.seed ?? '-'}) has accuracy ${v}; expected fractions in [0, 1]`);
    const l = by.get(r.method);
    if (l) l.push(r);
    else by.set(r.method, [r]);
  }
  const methods = [...by.keys()].map((m, i) => ({ m, i })).sort((a, b) => methodRank(a.m) - methodRank(b.m) || a.i - b.i).map((x) => x.m);
  return {
    columns: REPORT_COLUMNS,
    rows: methods.map((m) => {
      const rs = by.get(m)!;
      const cols = REPORT_COLUMNS.map((_, c) => rs.map((r) => values(r)[c]!));
      return { method: m, n: rs.length, cells: cols.map((xs) => meanStd(xs)) };
    }),
  };
}

/** Mean and sample (n − 1) standard deviation. */
export function meanStd(xs: readonly number[]): Cell {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

/** A cell as a percentage: `62.89` or `62.89 ± 0.41`. */
export function formatCell(c: Cell): string {
  if (Number.isNaN(c.mean)) return '–';
  const m = (100 * c.mean).toFixed(2);
  return c.n > 1 ? `${m} ± ${(100 * c.std).toFixed(2)}` : m;
}

/** Markdown table with the paper's two-level header. */
export function tableMarkdown(t: ReportTable): string {
  const multi = t.rows.some((r) => r.n > 1);
  const head = ['Method', ...(multi ? ['n'] : []), ...t.columns];
  const group = ['', ...(multi ? [''] : []), 'incorrectly classified', '', 'subset classes', '', '', 'all classes', '', ''];
  const lines = [
    `| ${group.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    `| ${head.map((h) => `**${h}**`).join(' | ')} |`,
    ...t.rows.map((r) => `| ${[r.method, ...(multi ? [String(r.n)] : []), ...r.cells.map(formatCell)].join(' | ')} |`),
  ];
  return lines.join('\n') + '\n';
}

/** CSV: one row per method, mean and std columns per set (percent), plus n. */
export function tableCsv(t: ReportTable): string {
  const key = (c: string) => c.toLowerCase().replace(/[^a-z]+/g, '_').replace(/^_|_$/g, '');
  const head = ['method', 'n', ...t.columns.flatMap((c) => [`${key(c)}_mean`, `${key(c)}_std`])];
  const rows = t.rows.map((r) => [r.method, String(r.n), ...r.cells.flatMap((c) => (Number.isNaN(c.mean) ? ['', ''] : [(100 * c.mean).toFixed(4), (100 * c.std).toFixed(4)]))].join(','));
  return [head.join(','), ...rows].join('\n') + '\n';
}

/** Fixed-width table for the terminal. */
export function tableText(t: ReportTable): string {
  const head = ['method', 'n', ...t.columns];
  const rows = t.rows.map((r) => [r.method, String(r.n), ...r.cells.map(formatCell)]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  // widen the columns under a group label so that the label fits above them
  const groups: [string, number[]][] = [['incorrectly classified', [2, 3]], ['subset classes', [4, 5, 6]], ['all classes', [7, 8, 9]]];
  for (const [label, cols] of groups) {
    const span = cols.reduce((a, c) => a + w[c]!, 0) + 2 * (cols.length - 1);
    if (span < label.length) w[cols[cols.length - 1]!] += label.length - span;
  }
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  const groupLine =
    ' '.repeat(w[0]! + w[1]! + 4) +
    groups.map(([label, cols]) => label.padStart(cols.reduce((a, c) => a + w[c]!, 0) + 2 * (cols.length - 1))).join('  ');
  return [groupLine.trimEnd(), fmt(head), fmt(head.map((_, i) => '-'.repeat(w[i]!))), ...rows.map(fmt)].join('\n') + '\n';
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
export function perClassMean(runs: readonly MethodRun[], method: string): Map<number, { acc: number; selected: number; name?: string }> {
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
export function plotDcdVsRandom(runs: readonly MethodRun[], dcd: string, random = 'random'): string | undefined {
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
export function plotAccVsSelected(runs: readonly MethodRun[], methods: readonly string[]): string | undefined {
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

/** Files written by {@link writeReport}. */
export interface ReportFiles {
  markdown: string;
  csv: string;
  json: string;
  html: string;
  plots: string[];
  /** The terminal table. */
  text: string;
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

/**
 * Writes `report.md`, `report.csv`, `report.json`, `report.html` and `images/` (plots
 * as SVG + PNG, thumbnails) into `outDir`. The HTML refers only to files in `images/`,
 * so the folder can be copied and viewed offline.
 */
export async function writeReport(input: ReportInput, outDir: string, opts: { thumbSize?: number } = {}): Promise<ReportFiles> {
  const table = reportTable(input.runs);
  const title = input.title ?? 'dcd report';
  const imgDir = path.join(outDir, 'images');
  await mkdir(imgDir, { recursive: true });
  const ret = input.retention?.rows.length ? input.retention : undefined;
  const md =
    `# ${title}\n\nAccuracy (%)${table.rows.some((r) => r.n > 1) ? ', mean ± std over n seeds' : ''}.${input.seedNote ? ` ${input.seedNote}` : ''}\n\n${tableMarkdown(table)}` +
    (input.paired ? `\n${pairedTableMarkdown(input.paired)}` : '') +
    (ret ? `\n## ${retentionHeading(ret)}\n\n${retentionTableMarkdown(ret)}` : '');
  const files: ReportFiles = {
    markdown: path.join(outDir, 'report.md'),
    csv: path.join(outDir, 'report.csv'),
    json: path.join(outDir, 'report.json'),
    html: path.join(outDir, 'report.html'),
    plots: [],
    text: tableText(table),
  };
  await atomicWriteFile(files.markdown, md);
  await atomicWriteFile(files.csv, tableCsv(table));
  await atomicWriteJson(files.json, { title, columns: table.columns, rows: table.rows, runs: input.runs });

  const methods = table.rows.map((r) => r.method);
  const dcds = methods.filter((m) => m.startsWith('dcd-'));
  const plots: { name: string; svg: string; caption: string }[] = [];
  for (const d of dcds) {
    const svg = plotDcdVsRandom(input.runs, d);
    if (svg) plots.push({ name: `fig10-${d}-vs-random`, svg, caption: `Per-class accuracy, ${d} against random; marker area ∝ images selected for the class.` });
  }
  const sel = plotAccVsSelected(input.runs, methods.filter((m) => m !== 'original'));
  if (sel) plots.push({ name: 'fig10-acc-vs-selected', svg: sel, caption: 'Per-class accuracy against the number of selected images, with a least-squares line per method.' });
  for (const p of plots) {
    const svgFile = path.join(imgDir, `${p.name}.svg`);
    await atomicWriteFile(svgFile, p.svg);
    await atomicWriteFile(path.join(imgDir, `${p.name}.png`), await sharp(Buffer.from(p.svg)).png().toBuffer());
    files.plots.push(svgFile, path.join(imgDir, `${p.name}.png`));
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
  let retentionHtml = '';
  if (ret) {
    let plot = '';
    if (ret.plot) {
      try {
        await atomicWriteFile(path.join(imgDir, 'retention.png'), await readFile(ret.plot));
      } catch (e) {
        throw new DataError(`report: cannot copy the retention plot ${ret.plot} (${(e as Error).message}); rerun the retention stage, or leave out retention.plot`);
      }
      files.plots.push(path.join(imgDir, 'retention.png'));
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
<p>Accuracy (%)${table.rows.some((r) => r.n > 1) ? '; mean ± std over n seeds' : ''}. “Incorrectly classified”: the debug-seed and debug-heldout sets.${input.seedNote ? ` ${esc(input.seedNote)}` : ''}</p>
<table class="acc">
<tr><th></th><th></th><th colspan="2">incorrectly classified</th><th colspan="3">subset classes</th><th colspan="3">all classes</th></tr>
<tr><th>Method</th><th>n</th>${table.columns.map((c) => `<th>${esc(c.replace(/ \((subset|all)\)/, ''))}</th>`).join('')}</tr>
${table.rows.map((r) => `<tr><td>${esc(r.method)}</td><td>${r.n}</td>${r.cells.map((c) => `<td>${esc(formatCell(c))}</td>`).join('')}</tr>`).join('\n')}
</table>
${
  input.paired
    ? `<h3>Paired differences per seed</h3><table class="acc"><tr><th>difference</th>${input.paired.columns.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>
${input.paired.rows.map((r) => `<tr><td>${esc(r.name)}</td>${r.cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n')}
</table><p>${esc(input.paired.note)}</p>`
    : ''
}
${plots.length ? `<h2>Per-class analysis (Figure 10)</h2><div class="plots">${plots.map((p) => `<figure><img src="images/${p.name}.png" width="480" height="400" alt="${esc(p.name)}"><figcaption>${esc(p.caption)} (<a href="images/${p.name}.svg">SVG</a>)</figcaption></figure>`).join('')}</div>` : ''}
${retentionHtml}
${retrievalHtml.join('\n')}
</body></html>
`;
  await atomicWriteFile(files.html, html);
  return files;
}

const Acc = z.number().min(0).max(1);
const SetAcc = z.object({ mfreq: Acc, compl: Acc, inet: Acc });
const Img = z.object({ id: z.string(), path: z.string(), distance: z.number().optional(), label: z.string().optional() });
/** Run-time schema of {@link ReportInput} (the `dcd report --results` JSON file). */
export const ReportInputSchema = z.object({
  title: z.string().optional(),
  seedNote: z.string().optional(),
  paired: z.object({ columns: z.array(z.string()), rows: z.array(z.object({ name: z.string(), cells: z.array(z.string()) })), note: z.string() }).optional(),
  runs: z
    .array(
      z.object({
        method: z.string().min(1),
        seed: z.number().optional(),
        seedAcc: Acc,
        heldoutAcc: Acc,
        subset: SetAcc,
        all: SetAcc,
        perClass: z.array(z.object({ label: z.number().int(), name: z.string().optional(), acc: Acc, selected: z.number().min(0) })).optional(),
      }),
    )
    .min(1),
  retrieval: z
    .object({
      seeds: z.array(z.object({ image: Img, neighbours: z.record(z.string(), z.array(Img)) })),
      wrong: z
        .array(z.object({ method: z.string().min(1), title: z.string().optional(), checked: z.number().int().min(0).optional(), wrong: z.number().int().min(0).optional(), images: z.array(Img) }))
        .optional(),
    })
    .optional(),
  retention: z
    .object({
      set: z.string().optional(),
      rule: z.string().optional(),
      rows: z.array(
        z.object({
          backbone: z.string().min(1),
          k: z.number().int().min(1),
          classRetention: z.number().min(0).max(100).nullable(),
          contextRetention: z.number().min(0).max(100).nullable(),
          classQueries: z.number().int().min(0),
          contextQueries: z.number().int().min(0),
        }),
      ),
      plot: z.string().optional(),
    })
    .optional(),
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
  const input = r.data as ReportInput;
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
